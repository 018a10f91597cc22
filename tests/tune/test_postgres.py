"""Distributed tuning on a real PostgreSQL: two worker processes on one study, then a worker killed mid-trial.

Skipped unless ATALAIA_PG_URL is set (`eval "$(bash .ci/postgres.sh)"` starts a server on loopback and prints
it; `.ci/run` does that). Each test run uses a fresh study name, so the database can be reused.

What a killed worker leaves behind: its trial stays RUNNING in the database (nothing can mark it from the dead
process). Workers run with Optuna's heartbeat, so another worker fails that trial once its heartbeat is older
than `--heartbeat-grace` seconds and re-queues it once with the same parameters; the budget (`--trials`, a
total over the study) is then finished by whoever is still working.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

PG_URL = os.environ.get("ATALAIA_PG_URL")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not PG_URL, reason="ATALAIA_PG_URL not set (run: eval \"$(bash .ci/postgres.sh)\")")]

REPO = Path(__file__).resolve().parents[2]


def _recipe(tmp_path: Path, faces: Path) -> Path:
    y = tmp_path / "r.yaml"
    y.write_text(
        f"name: pgtiny\nseed: 0\n"
        f"data: {{root: {faces}, image_size: [16, 16], channels: 1, split: [0.5, 0.25, 0.25]}}\n"
        "train: {epochs: 1, batch_size: 8, learning_rate: 0.01}\n"
        "teacher: {name: ds_cnn, width: 0.25}\nstudent: {name: ds_cnn, width: 0.25}\n"
        "evaluate: {targets: [esp32]}\n")
    return y


def _worker(recipe: Path, out: Path, study: str, trials: int, epochs: int, *, host: str | None = None,
            log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    if host:
        env["ATALAIA_TUNE_HOST"] = host  # pretend to be another machine: only the heartbeat can find it dead
    cmd = [sys.executable, "-m", "atalaia.tune", str(recipe), "--trials", str(trials), "--study", study,
           "--storage", PG_URL, "--out", str(out), "--epochs", str(epochs), "--sampler", "tpe",
           "--heartbeat-grace", "4"]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO)


def _trials(study: str):
    import optuna

    return optuna.load_study(study_name=study, storage=PG_URL).get_trials(deepcopy=False)


def _check_ledger(trials, budget: int) -> None:
    nums = [t.number for t in trials]
    assert len(nums) == len(set(nums)) and sorted(nums) == list(range(len(nums))), nums  # none lost or doubled
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == budget, states
    for t in trials:
        if t.state.name not in ("COMPLETE", "PRUNED"):
            # only a surplus claim (never trained) or a dead worker's trial may be anything else
            assert t.state.name == "FAIL" and (t.user_attrs.get("surplus") or "worker" in t.user_attrs), t


def test_two_workers_then_a_killed_worker(tmp_path):
    import optuna

    from atalaia.tune import TuneError, best_params

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_identity_folder

    recipe = _recipe(tmp_path, make_identity_folder(tmp_path / "faces"))
    out = tmp_path / "run"
    study = f"pgtest-{uuid.uuid4().hex[:8]}"

    # 1. two workers at once, one study, a total budget of 6 finished trials
    procs = [_worker(recipe, out, study, 6, 1, log=tmp_path / f"w{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=900) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    trials = _trials(study)
    _check_ledger(trials, 6)
    workers = {t.user_attrs.get("worker") for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(workers) == 2, f"both workers should have run trials: {workers}"

    # 2. a worker (on "another machine") is SIGKILLed in the middle of a trial ...
    killed = _worker(recipe, out, study, 9, 1, host="machine-a", log=tmp_path / "killed.log")
    deadline = time.time() + 600
    victim = None
    while time.time() < deadline and victim is None:
        time.sleep(0.2)
        running = [t for t in _trials(study) if t.state.name == "RUNNING"
                   and str(t.user_attrs.get("worker", "")).startswith("machine-a:")]
        if running and running[0].params:  # parameters drawn: the student is being trained
            victim = running[0]
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    assert victim is not None, "the worker never started a trial"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    left = {t.number: t for t in _trials(study)}[victim.number]
    assert left.state.name == "RUNNING"  # a dead process cannot close its trial: left RUNNING ...

    # ... and the study stays usable: a new worker finishes the budget, failing + retrying the stale trial
    follower = _worker(recipe, out, study, 9, 1, log=tmp_path / "follower.log")
    assert follower.wait(timeout=900) == 0, (tmp_path / "follower.log").read_text()[-3000:]
    trials = _trials(study)
    by_num = {t.number: t for t in trials}
    assert by_num[victim.number].state == optuna.trial.TrialState.FAIL  # heartbeat found it stale
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    # re-queued once, with the parameters the dead trial had drawn (if it got that far before the kill)
    assert len(retry) == 1 and by_num[victim.number].params.items() <= retry[0].params.items()
    assert retry[0].state.name in ("COMPLETE", "PRUNED")
    _check_ledger(trials, 9)
    assert best_params(PG_URL, study)  # the study answers queries as usual
    with pytest.raises(TuneError, match="another search space"):
        from atalaia.config import load_recipe
        from atalaia.tune import SearchSpace, tune

        tune(load_recipe(recipe), trials=10, study_name=study, storage=PG_URL, out_dir=out, epochs=1,
             search_space=SearchSpace(alpha=(0.1, 0.2)), log=lambda m: None)
