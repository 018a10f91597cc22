"""End to end: the verification plan on the tiny generated chip set and LFW-style folder (all five stages, resume)."""

from __future__ import annotations

import json
import math

import pytest

from atalaia.config import load_recipe
from atalaia.errors import RecipeError
from atalaia.pipeline import make_plan, run_recipe
from atalaia.pipeline.plan import execute
from atalaia.pipeline.runfolder import StagedRun
from atalaia.pipeline.verification import STAGES, VerificationPlan


def run(recipe, out, **kw) -> dict:
    return run_recipe(recipe, out, **kw).to_dict()


def _recipe(face_data, tmp_path, **over):
    over = {"task": "verification", "data.image_size": [32, 32], "data.channels": 1, "train.epochs": 2,
            "train.batch_size": 8, "student.width": 0.25, "prune.channel.ratio": 0.5, "prune.channel.epochs": 1,
            "quantize.representative_samples": 8, "evaluate.latency_runs": 2,
            "face.train_sets": [str(face_data["chipset"])], "face.lfw_root": str(face_data["lfw"]),
            "face.embedding_dim": 16, "face.enrol_per_identity": 1, "face.open_set_min_images": 3,
            "face.cache_dir": str(tmp_path / "cache"), **over}
    return load_recipe(None, over)


def test_recipe_validation_for_verification(face_data, tmp_path):
    with pytest.raises(RecipeError, match="channels 1"):
        _recipe(face_data, tmp_path, **{"data.channels": 3})
    with pytest.raises(RecipeError, match="margin"):
        _recipe(face_data, tmp_path, **{"face.margin": "sphereface"})
    with pytest.raises(RecipeError, match="train_sets"):
        _recipe(face_data, tmp_path, **{"face.train_sets": []})
    with pytest.raises(RecipeError, match="did you mean 'kd_weight'"):
        _recipe(face_data, tmp_path, **{"face.kd_weigth": 1.0})
    with pytest.raises(RecipeError, match="task: verification"):
        VerificationPlan(load_recipe(None), StagedRun(tmp_path))
    assert isinstance(make_plan(_recipe(face_data, tmp_path), tmp_path), VerificationPlan)
    assert execute is not None


def test_bundled_lfw_recipe_loads():
    from atalaia.config import PACKAGE_DIR

    r = load_recipe(PACKAGE_DIR / "recipes" / "lfw.yaml")
    assert r.task == "verification" and r.data.channels == 1 and len(r.face.train_sets) == 3
    assert r.face.tier == "S" and r.face.exclude_lfw_overlap and r.face.loss.consistent_views == 0


@pytest.mark.slow
def test_face_pipeline_end_to_end_and_resume(face_data, tmp_path):
    r = _recipe(face_data, tmp_path, **{"face.crop": 0.8, "student.name": "ds_cnn_deep"})
    logs: list[str] = []
    rep = run(r, tmp_path / "run", log=logs.append)
    assert [s["stage"] for s in rep["stages"]] == list(STAGES)
    ver = rep["verification"]
    assert set(ver["models"]) == set(STAGES) and (tmp_path / "run" / ver["roc_plot"]).is_file()
    assert ver["pairs_missing"] == 1 and ver["pairs_used"] == 7  # the corrupt image's pair, counted
    for s in rep["stages"]:
        assert 0.0 <= s["accuracy"] <= 1.0 and s["macro_f1"] is None or math.isnan(s["macro_f1"])
        assert {"auc", "tar_at_far_0.01", "tar_at_far_0.001", "acc_std", "open_set"} <= set(s["extra"])
    by = {s["stage"]: s for s in rep["stages"]}
    assert by["int8_tflm"]["arena_bytes"] > 0 and by["int8_litert"]["flash_bytes"] < by["student"]["flash_bytes"]
    assert by["pruned_channel"]["params"] < by["student"]["params"]
    assert by["teacher"]["flash_bytes"] > 20_000_000  # dlib's ResNet weight file (dlib-bin is a dependency)
    assert by["teacher"]["accuracy"] == ver["models"]["teacher"]["acc_mean"]
    parity = rep["int8"]["tflm_lfw_parity"]
    assert parity["images"] == parity["of"] > 0  # every evaluation image ran in TFLM
    assert parity["max_abs_diff_steps"] <= 1 and parity["exact_fraction"] >= 0.9  # MEAN rounding, see tflm.py
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["verification"]["models"]["int8_tflm"]["acc_mean"] == ver["models"]["int8_tflm"]["acc_mean"]
    assert (tmp_path / "run" / "report.md").read_text().count("|") > 20
    # resume: everything is skipped, same numbers, even with the training folder spelled another way (the
    # student stage is keyed by the chips' content, not by the path string)
    logs.clear()
    cs = face_data["chipset"]
    r2 = _recipe(face_data, tmp_path, **{"face.crop": 0.8, "student.name": "ds_cnn_deep",
                                         "face.train_sets": [str(cs / ".." / cs.name)]})
    assert r2.face.train_sets != r.face.train_sets
    rep2 = run(r2, tmp_path / "run", log=logs.append)
    assert sum("already done" in m for m in logs) == len(STAGES)
    assert rep2["verification"]["models"]["student"]["acc_mean"] == ver["models"]["student"]["acc_mean"]

    # every float and int8 row scores both modes; switching face.mirror_tta on re-scores the student from its
    # stored embeddings (no retraining) and re-runs only the int8 stages, mirrors through TFLM too
    tta0 = ver["models"]["student"]["mirror_tta"]
    assert tta0["used"] is False and tta0["acc_plain"] == ver["models"]["student"]["acc_mean"]
    assert ver["models"]["int8_litert"]["mirror_tta"]["acc_plain"] == ver["models"]["int8_litert"]["acc_mean"]
    logs.clear()
    r3 = _recipe(face_data, tmp_path, **{"face.crop": 0.8, "student.name": "ds_cnn_deep", "face.mirror_tta": True})
    rep3 = run(r3, tmp_path / "run", log=logs.append)
    assert any(m.startswith("[student] re-scored with face.mirror_tta=True (not retrained)") for m in logs)
    assert any(m.startswith("[pruned_channel] re-scored") for m in logs)
    assert not any(m.startswith("[student] running") for m in logs)
    assert any(m.startswith("[int8_litert] running") for m in logs)
    m3 = rep3["verification"]["models"]
    assert m3["student"]["mirror_tta"]["used"] is True
    assert m3["student"]["acc_mean"] == pytest.approx(tta0["acc_mirror"])
    assert m3["int8_litert"]["acc_mean"] == pytest.approx(ver["models"]["int8_litert"]["mirror_tta"]["acc_mirror"])
    assert m3["int8_tflm"]["mirror_tta"]["used"] is True
    assert rep3["int8"]["tflm_lfw_parity"]["mirrored_too"] is True
    assert rep3["int8"]["tflm_lfw_parity"]["max_abs_diff_steps"] <= 1
    assert json.loads((tmp_path / "run" / "int8_litert" / "face_model.json").read_text())["mirror_tta"] is True
    assert "plain / mirror TTA" in (tmp_path / "run" / "report.md").read_text()

    # export: C array + face constants + firmware project, from the face run's int8 stage
    from typer.testing import CliRunner

    from atalaia.cli import app

    res = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "exp" / "face_model.h").read_text()
    facts = json.loads((tmp_path / "run" / "int8_litert" / "face_model.json").read_text())
    assert facts["crop"] == 0.8 and facts["input_size"] == 32
    assert "#define ATALAIA_FACE_INPUT_SIZE 32" in header and "#define ATALAIA_FACE_CROP 0.8f" in header
    assert f"{facts['threshold_far_1e-3']:.9g}f" in header and "#define ATALAIA_FACE_MIRROR_TTA 1" in header
    assert (tmp_path / "exp" / "model_data.cc").is_file() and (tmp_path / "exp" / "esp-idf-esp32s3").is_dir()


def test_consistent_views_are_made_once_for_the_training_chips(face_data, tmp_path, monkeypatch):
    """face.loss.consistent_views = K: the plan asks atalaia.face.views for K views of exactly its training chip
    files (after the LFW-overlap exclusion and subsampling), once, and hands them to every training stage."""
    import numpy as np

    import atalaia.pipeline.verification as V
    from atalaia.face.views import ConsistentViews

    calls = []

    def fake(files, size, *, k, cache_dir, crop, workers, progress, log):
        calls.append((tuple(files), size, k, crop))
        return ConsistentViews(np.zeros((len(files), k, size, size, 1), np.uint8),
                               np.ones((len(files), k, 128), np.float32), 0, ())

    monkeypatch.setattr(V, "consistent_views", fake)
    r = _recipe(face_data, tmp_path, **{"face.consistent_views": 2, "face.crop": 0.8, "face.max_train_chips": 20})
    plan = make_plan(r, tmp_path / "run")
    plan.prepare()
    first, again = plan._views(), plan._views()
    assert len(calls) == 1 and calls[0][1:] == (32, 2, 0.8)
    assert calls[0][0] == plan.chips.files and len(plan.chips.files) == 20 == len(plan.chips.images)
    assert first["views"].shape == (20, 2, 32, 32, 1) and again["view_targets"] is first["view_targets"]
    plan_off = make_plan(_recipe(face_data, tmp_path), tmp_path / "run_off")
    plan_off.prepare()
    assert plan_off._views() == {} and len(calls) == 1
