"""The detection plan end to end on the committed fixture frames: detector -> pruned_channel -> int8 (TFLM check)
-> report with the detection section and its plots; a second run resumes every stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atalaia.config import load_recipe
from atalaia.pipeline import run_recipe

REPO = Path(__file__).resolve().parents[2]
FRAMES = REPO / "tests" / "fixtures" / "frames"


@pytest.mark.slow
def test_detection_plan_end_to_end(tmp_path):
    r = load_recipe(REPO / "src" / "atalaia" / "recipes" / "detection.yaml", {
        "detection.frames_root": str(FRAMES), "data.image_size": [64, 64], "train.epochs": 2,
        "train.batch_size": 4, "quantize.representative_samples": 4, "evaluate.latency_runs": 2,
        "detection.example_frames": 2, "prune.channel.enabled": True, "prune.channel.epochs": 1})
    logs: list[str] = []
    rep = run_recipe(r, tmp_path / "run", log=logs.append)
    assert [s.stage for s in rep.stages] == ["detector", "pruned_channel", "int8"]
    assert rep.stage("pruned_channel").params < rep.stage("detector").params
    assert rep.section("detection")["channel_pruning"]["macs_after"] < rep.stage("detector").macs
    q = rep.stage("int8")
    assert q.dtype == "int8" and q.arena_bytes > 0 and q.macs > 0 and q.flash_bytes < rep.stage("pruned_channel").flash_bytes
    assert 0.0 <= q.accuracy <= 1.0 and np.isnan(q.macro_f1)
    assert q.params == rep.stage("pruned_channel").params  # the int8 model is the pruned one
    sec = rep.section("detection")
    assert set(sec["per_stage"]) == {"detector", "pruned_channel", "int8"}
    m = sec["per_stage"]["int8"]
    assert m["faces"] == 1 and m["empty_frames"] == 1 and "pseudo-labels" in m["label_note"]
    assert sec["int8"]["tflm"]["parity_max_abs_diff_steps"] <= 1
    assert sec["int8"]["budgets"]["arena_bytes"]["ok"]
    for p in sec["plots"]:
        assert (tmp_path / "run" / p).stat().st_size > 1000
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["detection"]["input_hw"] == [64, 64]
    logs.clear()
    run_recipe(r, tmp_path / "run", log=logs.append)
    assert not any("done in" in line for line in logs)  # both stages reused
