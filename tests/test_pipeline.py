"""End-to-end: the whole pipeline on a tiny generated dataset (4 identities, 16x16, 1-2 epochs), then resume."""

import json

import pytest

from atalaia.config import load_recipe
from atalaia.pipeline import run_recipe
from atalaia.pipeline.classification import STAGES


def run(recipe, out, **kw) -> dict:
    """The report.json form of a run (what these tests were written against)."""
    return run_recipe(recipe, out, **kw).to_dict()


@pytest.fixture
def tiny_recipe(tiny_faces):
    return load_recipe(None, {
        "data.root": str(tiny_faces), "data.image_size": [16, 16], "train.epochs": 2,
        "prune.magnitude.epochs": 1, "prune.channel.epochs": 1, "teacher.width": 0.25, "student.width": 0.25,
        "evaluate.latency_runs": 5, "quantize.representative_samples": 8,
    })


@pytest.mark.slow
def test_pipeline_end_to_end_and_resume(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    rep = run(tiny_recipe, out, log=lambda m: None)
    stages = [s["stage"] for s in rep["stages"]]
    assert stages == list(STAGES)
    by = {s["stage"]: s for s in rep["stages"]}
    # channel pruning really shrinks; magnitude pruning does not change flash (no sparse kernels in TFLM)
    assert by["pruned_channel"]["params"] < by["distilled"]["params"]
    assert by["pruned_channel"]["macs"] < by["distilled"]["macs"]
    assert by["pruned_magnitude"]["flash_bytes"] == by["distilled"]["flash_bytes"]
    assert by["pruned_magnitude"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    # int8 row: measured in TFLM, int8 flash is the .tflite file as written
    assert by["int8"]["dtype"] == "int8" and by["int8"]["arena_bytes"] > 0
    assert by["int8"]["flash_bytes"] == (out / "int8" / "model.tflite").stat().st_size
    assert rep["int8"]["tflm"]["parity_max_abs_diff_steps"] <= 1
    for s in rep["stages"]:
        mcu_model = s["model"] != "dlib_head"  # the dlib teacher is not an MCU model: no est. latency
        assert set(s["est_latency_ms"]) == ({"esp32", "esp32s3"} if mcu_model else set()) and s["host_latency_ms"] > 0
    assert rep["kd"]["gain_accuracy"] == pytest.approx(by["distilled"]["accuracy"] - by["baseline"]["accuracy"])
    # the default teacher: frozen dlib embedding + trained head, its KD table one row per training image
    assert by["teacher"]["model"] == "dlib_head" and (out / "teacher" / "train_logits.npz").is_file()
    # every accuracy has a 95% interval; the KD gain and each stage - parent delta a paired one
    iv = rep["intervals"]
    n_test = iv["n_test"]
    assert set(iv["stages"]) == set(STAGES) and n_test == len(json.loads((out / "int8" / "metrics.json").read_text())
                                                                ["extra"]["test_predictions"])
    for st in iv["stages"].values():
        assert st["accuracy"]["low"] <= st["accuracy"]["value"] <= st["accuracy"]["high"]
    g = rep["kd"]["gain_interval"]["accuracy"]
    assert g["n"] == n_test and g["diff"]["value"] == pytest.approx(rep["kd"]["gain_accuracy"])
    assert g["significant"] == (g["diff"]["low"] > 0 or g["diff"]["high"] < 0)
    assert "95% paired interval" in (out / "report.md").read_text()
    for f in ("report.json", "report.md", "report.html", "recipe.yaml"):
        assert (out / f).is_file()
    assert json.loads((out / "report.json").read_text())["stages"] == rep["stages"]
    for stage in STAGES:
        assert (out / stage / "DONE.json").is_file()

    # export: C array + ESP-IDF project whose resolver registers exactly the model's ops
    import subprocess
    import sys

    from atalaia.deploy.tflite import op_names

    p = subprocess.run([sys.executable, "-m", "atalaia.cli", "export", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    main_cc = (out / "export" / "esp-idf-esp32s3" / "main" / "atalaia_core.cc").read_text()  # the shared core
    ops = set(op_names((out / "int8" / "model.tflite").read_bytes()))
    assert f"MicroMutableOpResolver<{len(ops)}>" in main_cc and "AddDepthwiseConv2D" in main_cc
    assert (out / "export" / "model_data.cc").is_file()

    # resume: nothing re-runs; the same numbers come back
    logs = []
    rep2 = run(tiny_recipe, out, log=logs.append)
    assert sum("skipped" in m for m in logs) == len(STAGES)
    assert rep2["stages"] == rep["stages"]


@pytest.mark.slow
def test_changed_recipe_reruns_only_downstream(tiny_recipe, tmp_path):
    from dataclasses import replace

    tiny_recipe = replace(tiny_recipe, teacher=replace(tiny_recipe.teacher, name="teacher_resnet"))  # trained here
    out = tmp_path / "run"
    run(tiny_recipe, out, log=lambda m: None)
    # a killed int8 stage: marker missing -> only int8 re-runs
    (out / "int8" / "DONE.json").unlink()
    logs = []
    run(tiny_recipe, out, log=logs.append)
    assert [m for m in logs if "running" in m] == ["[int8] running"]
    # a new KD temperature re-runs distillation and everything after it, not the teacher or baseline
    r2 = replace(tiny_recipe, distill=replace(tiny_recipe.distill, temperature=3.0))
    logs = []
    run(r2, out, log=logs.append)
    ran = [m.split("]")[0][1:] for m in logs if "running" in m]
    assert ran == ["distilled", "pruned_magnitude", "pruned_channel", "int8"]


@pytest.mark.slow
def test_kill_9_mid_run_loses_only_the_running_stage(tiny_faces, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"data: {{root: {tiny_faces}, image_size: [16, 16]}}\n"
        "train: {epochs: 2}\nteacher: {width: 0.25}\nstudent: {width: 0.25}\n"
        "prune: {magnitude: {epochs: 1}, channel: {epochs: 1}}\n"
        "evaluate: {latency_runs: 5}\nquantize: {representative_samples: 8}\n")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "atalaia.cli", "run", str(recipe), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / "baseline" / "DONE.json").exists():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in out.glob("*/DONE.json")}
    assert {"teacher", "baseline"} <= finished and "int8" not in finished
    logs = []
    from atalaia.config import load_recipe

    rep = run(load_recipe(recipe), out, log=logs.append)
    skipped = {m.split("]")[0][1:] for m in logs if "skipped" in m}
    assert finished <= skipped
    assert [s["stage"] for s in rep["stages"]] == list(STAGES)
