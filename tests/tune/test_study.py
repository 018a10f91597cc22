"""atalaia.tune: search space, errors, grid, resume, budget, val-not-test, reports, apply_study.

Most tests replace the trainer (`train_fn`) with a deterministic function of (alpha, T) and skip the teacher,
so they check the search machinery in milliseconds; two tests train for real on the tiny synthetic faces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import atalaia.tune as T
from atalaia.compress.distill import TrainHistory
from atalaia.config import load_recipe
from atalaia.tune import objective, study
from atalaia.tune.space import OBJECTIVES_MULTI

REPO = Path(__file__).resolve().parents[2]


def _recipe(tmp_path: Path, faces: Path, epochs: int = 1):
    y = tmp_path / "r.yaml"
    y.write_text(
        f"name: tiny\nseed: 0\n"
        f"data: {{root: {faces}, image_size: [16, 16], channels: 1, split: [0.5, 0.25, 0.25]}}\n"
        f"train: {{epochs: {epochs}, batch_size: 8, learning_rate: 0.01}}\n"
        "teacher: {name: ds_cnn, width: 0.25}\nstudent: {name: ds_cnn, width: 0.25}\n"
        "quantize: {representative_samples: 8}\nevaluate: {targets: [esp32]}\n")
    return load_recipe(y)


def _score(alpha: float, temperature: float) -> float:
    return round(0.9 - (alpha - 0.25) ** 2 - ((temperature - 10.0) / 40.0) ** 2, 6)


def fake_train(calls: list | None = None):
    """A trainer whose val accuracy is a known function of (alpha, T); it reports every epoch like the real one."""

    def train(student, split, cfg, *, augment=None, teacher=None, alpha=1.0, temperature=1.0, epochs=None,
              learning_rate=None, seed=0, on_epoch=None, **kw):
        h = TrainHistory()
        for e in range(epochs):
            acc = _score(alpha, temperature) * (e + 1) / epochs
            h.val_accuracy.append(acc)
            if on_epoch:
                on_epoch(e, acc)
        if calls is not None:
            calls.append((alpha, temperature))
        return h

    return train


@pytest.fixture
def fast(monkeypatch):
    """No teacher training: the fake trainer does not need one."""
    monkeypatch.setattr(study, "_teacher", lambda recipe, data, out, log: (None, {"source": "none (test)"}))
    monkeypatch.setattr("atalaia.models.create_model", lambda *a, **kw: None)  # the fake trainer needs none
    monkeypatch.setattr("keras.backend.clear_session", lambda *a, **kw: None)  # (its gc.collect costs ~1 s)


def _run(recipe, tmp_path, **kw):
    kw.setdefault("train_fn", fake_train())
    kw.setdefault("epochs", 2)
    kw.setdefault("log", lambda m: None)
    kw.setdefault("out_dir", tmp_path / "run")
    return T.tune(recipe, **kw)


# ------------------------------------------------------------------------------------------- search space
def test_thesis_grid_is_the_thesis_grid():
    pts = T.SearchSpace.thesis().grid_points()
    assert len(pts) == 32
    assert {p["alpha"] for p in pts} == {0.01, 0.1, 0.25, 0.5}
    assert {p["temperature"] for p in pts} == {2, 5, 7, 10, 12, 15, 17, 20}


def test_space_round_trips_and_knobs():
    s = T.SearchSpace.with_knobs(learning_rate=True, width=True, prune=True)
    assert s.names() == ("alpha", "temperature", "learning_rate", "width", "prune_ratio")
    assert T.SearchSpace.from_dict(s.to_dict()) == s
    assert T.SearchSpace.from_dict(T.SearchSpace.thesis().to_dict()) == T.SearchSpace.thesis()


@pytest.mark.parametrize("space, msg", [
    (T.SearchSpace(alpha=None, temperature=None), "empty search space"),
    (T.SearchSpace(alpha=(0.5, 0.1)), "low < high"),
    (T.SearchSpace(alpha=(0.0, 1.5)), "outside"),
    (T.SearchSpace(temperature=(0.0, 5.0)), "outside"),
    (T.SearchSpace(alpha=None, temperature=None, grid=(("alpha", ()),)), "empty search space"),
    (T.SearchSpace(grid=(("alpha", (0.1,)),)), "both a range and a grid"),
])
def test_bad_spaces_are_one_line_errors(space, msg):
    with pytest.raises(T.TuneError, match=msg) as e:
        space.validate()
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("trials", [0, -3, 2.5, True])
def test_non_positive_trials(tiny_faces, tmp_path, trials):
    r = _recipe(tmp_path, tiny_faces)
    with pytest.raises(T.TuneError, match="positive integer"):
        T.tune(r, trials=trials, out_dir=tmp_path)


def test_empty_space_error(tiny_faces, tmp_path):
    r = _recipe(tmp_path, tiny_faces)
    with pytest.raises(T.TuneError, match="empty search space"):
        T.tune(r, trials=2, out_dir=tmp_path, search_space=T.SearchSpace(alpha=None, temperature=None))


def test_unreachable_storage_is_one_line(tiny_faces, tmp_path):
    r = _recipe(tmp_path, tiny_faces)
    url = "postgresql+psycopg2://u:secret@127.0.0.1:1/nodb"
    with pytest.raises(T.TuneError, match="cannot open study storage") as e:
        T.tune(r, trials=1, out_dir=tmp_path, storage=url)
    assert "\n" not in str(e.value) and "secret" not in str(e.value)


def test_grid_sampler_needs_grid_for_every_knob(tiny_faces, tmp_path):
    r = _recipe(tmp_path, tiny_faces)
    with pytest.raises(T.TuneError, match="grid sampler"):
        T.tune(r, trials=2, out_dir=tmp_path, sampler="grid", search_space=T.SearchSpace())


def test_same_study_other_space_is_refused(tiny_faces, tmp_path, fast):
    r = _recipe(tmp_path, tiny_faces)
    _run(r, tmp_path, trials=2, study_name="s")
    with pytest.raises(T.TuneError, match="another search space"):
        _run(r, tmp_path, trials=3, study_name="s", search_space=T.SearchSpace(alpha=(0.1, 0.5)))
    with pytest.raises(T.TuneError, match="objectives"):
        _run(r, tmp_path, trials=3, study_name="s", multi_objective=True)


def test_cli_prints_one_line_error(tiny_faces, tmp_path):
    r_yaml = tmp_path / "r.yaml"
    _recipe(tmp_path, tiny_faces)
    p = subprocess.run([sys.executable, "-m", "atalaia.tune.cli", str(r_yaml), "--trials", "0",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: --trials must be a positive integer")


# ------------------------------------------------------------------------------------------- search behaviour
def test_grid_sampler_enumerates_thesis_grid(tiny_faces, tmp_path, fast):
    calls: list = []
    r = _recipe(tmp_path, tiny_faces)
    res = _run(r, tmp_path, trials=40, sampler="grid", seed=0, train_fn=fake_train(calls), pruner="none")
    assert len(calls) == 32  # stops when the grid is exhausted, even with a larger budget
    assert set(calls) == {(a, t) for a in T.THESIS_ALPHAS for t in T.THESIS_TEMPERATURES}
    assert res.best_params == {"alpha": 0.25, "temperature": 10.0}


def test_tpe_finds_better_than_first_trial_and_budget_is_total(tiny_faces, tmp_path, fast):
    r = _recipe(tmp_path, tiny_faces)
    res = _run(r, tmp_path, trials=6, seed=1, pruner="none")
    assert res.counts() == {"COMPLETE": 6}
    vals = [t["values"][0] for t in res.trials]
    assert res.best_value == max(vals)
    res2 = _run(r, tmp_path, trials=6, seed=1)  # budget already met: nothing runs
    assert res2.counts() == {"COMPLETE": 6} and res2.seconds_per_trial is None


def test_median_pruner_stops_hopeless_trials(tiny_faces, tmp_path, fast):
    r = _recipe(tmp_path, tiny_faces)
    res = _run(r, tmp_path, trials=12, seed=0, epochs=6, sampler="random")
    c = res.counts()
    assert c.get("PRUNED", 0) >= 1 and c["COMPLETE"] + c["PRUNED"] == 12
    pruned = [t for t in res.trials if t["state"] == "PRUNED"]
    assert all(len(t["intermediate"]) < 6 for t in pruned)


def test_sqlite_resume_after_interruption_adds_to_same_study(tiny_faces, tmp_path, fast):
    r = _recipe(tmp_path, tiny_faces)
    inner = fake_train()
    n = [0]

    def dies_on_third(*a, **kw):
        n[0] += 1
        if n[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C / kill in the middle of trial 2
        return inner(*a, **kw)

    with pytest.raises(KeyboardInterrupt):
        _run(r, tmp_path, trials=5, seed=0, train_fn=dies_on_third)
    db = tmp_path / "run" / "tune" / "study.db"
    assert db.is_file()
    study = optuna.load_study(study_name="tiny-accuracy", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    res = _run(r, tmp_path, trials=5, seed=0)  # the same command again
    states = [t["state"] for t in res.trials]
    assert states.count("COMPLETE") == 5 and len(states) == 6
    nums = [t["number"] for t in res.trials]
    assert nums == sorted(set(nums)) == list(range(6))
    study = optuna.load_study(study_name="tiny-accuracy", storage=f"sqlite:///{db}")
    assert len(study.trials) == 6  # one study: the first two trials are still there


def test_dead_local_worker_trial_is_failed_and_retried(tiny_faces, tmp_path, fast):
    r = _recipe(tmp_path, tiny_faces)
    _run(r, tmp_path, trials=1, seed=0)
    url = T.default_storage(tmp_path / "run")
    study = optuna.load_study(study_name="tiny-accuracy", storage=url)
    ghost = study.ask({"alpha": optuna.distributions.FloatDistribution(0.01, 0.9),
                       "temperature": optuna.distributions.FloatDistribution(1.0, 20.0)})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost.set_user_attr("worker", f"{objective._worker_label().rsplit(':', 1)[0]}:{dead.pid}")
    res = _run(r, tmp_path, trials=3, seed=0)
    st = {t["number"]: t["state"] for t in res.trials}
    assert st[ghost.number] == "FAIL"
    assert list(st.values()).count("COMPLETE") == 3
    retried = [t for t in res.trials if t["number"] > ghost.number and t["params"] == ghost.params]
    assert retried, "the dead worker's parameters are re-queued once"


# ------------------------------------------------------------------------------------------- real training
class _Poison:
    """Stands in for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the tuner touched the TEST split ({name})")


@pytest.mark.slow
def test_real_multi_objective_uses_val_never_test(tiny_faces, tmp_path, monkeypatch):
    real = T._load_data

    def poisoned(recipe):
        d = real(recipe)
        d.split = type(d.split)(train=d.split.train, val=d.split.val, test=_Poison())
        return d

    monkeypatch.setattr(study, "_load_data", poisoned)
    r = _recipe(tmp_path, tiny_faces, epochs=1)
    res = T.tune(r, trials=2, out_dir=tmp_path / "run", multi_objective=True, seed=0, log=lambda m: None)
    assert res.objectives == OBJECTIVES_MULTI and res.counts() == {"COMPLETE": 2}
    for t in res.trials:
        acc, flash, lat = t["values"]
        assert acc == t["user_attrs"]["val_accuracy"] and 0 <= acc <= 1
        assert flash > 1000 and lat > 0
    assert res.pareto and all(p["number"] in (0, 1) for p in res.pareto)
    folder = tmp_path / "run" / "tune"
    rep = json.loads((folder / "report.json").read_text())
    assert rep["counts"] == {"COMPLETE": 2} and rep["plots"]["pareto"] == "pareto.png"
    assert (folder / "pareto.png").stat().st_size > 1000 and "Pareto front" in (folder / "report.md").read_text()
    assert (folder / "teacher" / "model.keras").is_file()  # trained once, cached for the next search


@pytest.mark.slow
def test_real_single_objective_report_and_apply_study(tiny_faces, tmp_path):
    r = _recipe(tmp_path, tiny_faces, epochs=1)
    space = T.SearchSpace.with_knobs(width=True, prune=True)
    res = T.tune(r, trials=2, out_dir=tmp_path / "run", search_space=space, seed=0, log=lambda m: None)
    assert res.counts() == {"COMPLETE": 2}
    assert set(res.best_params) == {"alpha", "temperature", "width", "prune_ratio"}
    assert "parameter importances need" in res.importance_note  # too few trials: said, not crashed
    folder = tmp_path / "run" / "tune"
    assert (folder / "history.png").is_file() and (folder / "report.md").is_file()
    r2 = T.apply_study(r, tmp_path / "run", res.study_name)
    bp = res.best_params
    assert r2.distill.alpha == pytest.approx(bp["alpha"]) and r2.distill.temperature == pytest.approx(bp["temperature"])
    assert r2.student.width == pytest.approx(bp["width"]) and r2.prune.channel.ratio == pytest.approx(bp["prune_ratio"])
    other = 1 - res.best["number"]
    r3 = T.apply_study(r, T.default_storage(tmp_path / "run"), res.study_name, trial_number=other)
    assert r3.distill.alpha == pytest.approx(res.trials[other]["params"]["alpha"])
    assert T.tuned_recipe(r, tmp_path / "run").distill.alpha == pytest.approx(bp["alpha"])
    with pytest.raises(T.TuneError, match="no trial 99"):
        T.best_params(tmp_path / "run", res.study_name, trial=99)
    with pytest.raises(T.TuneError, match="no study 'nope'"):
        T.best_params(tmp_path / "run", "nope")
    with pytest.raises(T.TuneError, match="run `atalaia tune"):
        T.tuned_recipe(r, tmp_path / "elsewhere")


def test_gp_sampler_without_torch_names_the_missing_package(monkeypatch):
    import importlib.util

    from atalaia.tune import study as tune_mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    with pytest.raises(tune_mod.TuneError, match="needs torch"):
        tune_mod._sampler("gp", tune_mod.SearchSpace(), 0, False)
