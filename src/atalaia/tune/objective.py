"""The objective: train a (distilled) student with a trial's knobs and score it on the validation split."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.config import Recipe
from atalaia.data.dataset import to_float
from atalaia.ioutil import atomic_write_json, file_lock
from atalaia.pipeline.classification import DLIB_HEAD, ClosedSetData, load_closed_set, teacher_stage_key
from atalaia.pipeline.runfolder import RunFolder, save_keras, write_marker
from atalaia.tune.report import _fmt_params
from atalaia.tune.space import SearchSpace
from atalaia.tune.storage import _retry_callback

# ---------------------------------------------------------------------------------------------- data, teacher
_Data = ClosedSetData


def _load_data(recipe: Recipe) -> ClosedSetData:
    return load_closed_set(recipe)  # the pipeline's split: same seed, same val set


def _teacher_key(recipe: Recipe, data_key: str) -> str:
    """The pipeline's teacher stage key, so a teacher the pipeline already trained is reused as is."""
    return teacher_stage_key(recipe, data_key)


def _teacher(recipe: Recipe, data: _Data, out_dir: Path, log: Callable[[str], None]) -> tuple[Any, dict]:
    """Load the run's teacher stage (same key, files intact) or the tune cache (`tune/teacher/`, the same
    stage-folder format); else train once and cache it. A file lock makes concurrent workers sharing the folder
    wait for the first one's teacher."""
    from atalaia.compress.distill import accuracy_of, train_classifier
    from atalaia.models import create_model

    key = _teacher_key(recipe, data.key)
    if recipe.teacher.name == DLIB_HEAD:
        return _dlib_head_table(recipe, data, out_dir, key, log)
    candidates = [("pipeline", RunFolder(out_dir)), ("tune cache", RunFolder(out_dir / "tune"))]

    def _try_load() -> tuple[Any, dict] | None:
        for source, run in candidates:
            if run.problem("teacher", key) is None:
                return run.model("teacher"), {"source": source, "path": str(run.stage_dir("teacher")), "key": key}
        return None

    if (got := _try_load()) is not None:
        return got
    cache = out_dir / "tune" / "teacher"
    with file_lock(out_dir / "tune" / ".teacher.lock"):
        if (got := _try_load()) is not None:
            return got
        log(f"[tune] training the teacher once ({recipe.teacher.name}, {recipe.train.epochs} epochs)")
        t0 = time.perf_counter()
        m = create_model(recipe.teacher.name, num_classes=data.num_classes, input_shape=data.input_shape,
                         width=recipe.teacher.width)
        train_classifier(m, data.split, recipe.train, augment=recipe.data.augment, seed=recipe.seed + 1)
        if cache.exists():
            shutil.rmtree(cache)
        cache.mkdir(parents=True)
        save_keras(m, cache / "model.keras")
        val = accuracy_of(m, to_float(data.split.val.images), data.split.val.labels)
        atomic_write_json(cache / "metrics.json", {"val_accuracy": val, "seconds": round(time.perf_counter() - t0, 1)})
        write_marker(cache, key)
        return m, {"source": "trained", "path": str(cache), "key": key, "val_accuracy": val}


def _dlib_head_table(recipe: Recipe, data: _Data, out_dir: Path, key: str,
                     log: Callable[[str], None]) -> tuple[np.ndarray, dict]:
    """The dlib_head teacher's KD table (logits per training image): the run's, or fitted here (embeddings cached)."""
    from atalaia.models.dlib_head import fit_dlib_head, load_originals

    run = RunFolder(out_dir)
    if run.problem("teacher", key) is None:
        with np.load(run.path("teacher", "train_logits.npz")) as z:
            return z["logits"], {"source": "pipeline", "path": str(run.stage_dir("teacher")), "key": key}
    log("[tune] fitting the dlib_head teacher once (dlib embeddings cached)")
    cache = out_dir / "tune" / "dlib_head_embeddings.npz"
    images = load_originals(data.split.train.paths)
    head = fit_dlib_head(images, data.split.train.labels, num_classes=data.num_classes, cache=cache)
    return head.logits(images, cache=cache), {"source": "fitted", "key": key}


# ---------------------------------------------------------------------------------------------- objective
def _recipe_key(recipe: Recipe, epochs: int, objectives: tuple[str, ...]) -> str:
    d = recipe.to_dict()
    keep = {k: d[k] for k in ("data", "train", "seed", "teacher", "student")}
    keep["channel_criterion"] = d["prune"]["channel"]["criterion"]
    keep["target"] = list(recipe.evaluate.targets[:1])
    keep["epochs"] = epochs
    keep["objectives"] = list(objectives)
    import hashlib

    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


class _Surplus(Exception):
    """This trial would exceed the study's budget: it is recorded as FAIL (user attr surplus) and not trained."""


def _worker_label() -> str:
    """`host:pid` of this worker; ATALAIA_TUNE_HOST overrides the host (containers, tests simulating machines)."""
    import socket

    return f"{os.environ.get('ATALAIA_TUNE_HOST') or socket.gethostname()}:{os.getpid()}"


def _fail_dead_local_trials(study: Any) -> list[int]:
    """Fail RUNNING trials whose worker ran on this host and whose process is gone, and queue their retry.

    The heartbeat does the same for any host, but only after its grace period; a worker restarted on the
    same machine (the usual "killed SQLite search resumes") needs not wait.
    """
    import optuna

    host = _worker_label().rsplit(":", 1)[0]
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        w = str(t.user_attrs.get("worker", ""))
        if ":" not in w or w.rsplit(":", 1)[0] != host:
            continue
        pid = int(w.rsplit(":", 1)[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
                failed.append(t.number)
                _retry_callback()(study, study._storage.get_trial(t._trial_id))
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
    return failed


def _finished(study: Any) -> int:
    import optuna

    S = optuna.trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)))


def _make_objective(recipe: Recipe, space: SearchSpace, data: _Data, teacher: Any, *, epochs: int,
                    trials: int, multi: bool, target: str | None, log: Callable[[str], None],
                    train_fn: Callable[..., Any]):
    import keras
    import optuna

    from atalaia.data.dataset import to_float
    from atalaia.models import create_model

    S = optuna.trial.TrialState

    # a Keras teacher, or the dlib_head teacher's fixed logit table (one row per training image)
    kd = {"teacher_logits": teacher} if isinstance(teacher, np.ndarray) else {"teacher": teacher}

    def objective(trial: optuna.Trial):
        # budget claim: trials numbered before this one that are finished or still running hold a slot
        trial.set_user_attr("worker", _worker_label())
        _fail_dead_local_trials(trial.study)
        others = trial.study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING))
        if sum(1 for t in others if t.number < trial.number) >= trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus()
        p = space.suggest(trial)
        alpha = p.get("alpha", recipe.distill.alpha)
        temperature = p.get("temperature", recipe.distill.temperature)
        lr = p.get("learning_rate", recipe.train.learning_rate)
        width = p.get("width", recipe.student.width)
        ratio = p.get("prune_ratio", 0.0)
        keras.backend.clear_session()
        student = create_model(recipe.student.name, num_classes=data.num_classes, input_shape=data.input_shape,
                               width=width)
        step = [0]

        def on_epoch(epoch: int, val_acc: float) -> None:
            s = step[0]
            step[0] += 1
            if multi:  # optuna has no pruning for multi-objective studies
                return
            trial.report(val_acc, s)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", s)
                raise optuna.TrialPruned(f"pruned at step {s} (val accuracy {val_acc:.3f})")

        t0 = time.perf_counter()
        h = train_fn(student, data.split, recipe.train, augment=recipe.data.augment, **kd,
                     alpha=alpha, temperature=temperature, epochs=epochs, learning_rate=lr,
                     seed=recipe.seed, on_epoch=on_epoch)
        val = float(max(h.val_accuracy))
        trial.set_user_attr("kd_val_accuracy", val)
        if ratio > 0:
            from atalaia.compress.prune import channel_prune

            student, summary = channel_prune(student, ratio, recipe.prune.channel.criterion)
            ft_epochs = max(1, min(recipe.prune.channel.epochs, epochs))
            h2 = train_fn(student, data.split, recipe.train, augment=recipe.data.augment, **kd,
                          alpha=alpha, temperature=temperature, epochs=ft_epochs, learning_rate=lr,
                          seed=recipe.seed + 4, on_epoch=on_epoch)
            val = float(max(h2.val_accuracy))
            trial.set_user_attr("params_after_prune", int(summary.get("params_after", 0)))
        trial.set_user_attr("train_seconds", round(time.perf_counter() - t0, 2))
        trial.set_user_attr("val_accuracy", val)
        log(f"[tune] trial {trial.number}: val accuracy {100 * val:.2f}% ({_fmt_params(p)})")
        if not multi:
            return val
        from atalaia.deploy.targets import estimate_latency_ms
        from atalaia.deploy.tflite import convert_int8
        from atalaia.evaluate.profile import count_macs

        x = to_float(data.split.train.images)
        rep = x[np.random.default_rng(recipe.seed).permutation(len(x))[: recipe.quantize.representative_samples]]
        blob = convert_int8(student, rep, per_channel=recipe.quantize.per_channel,
                            strip=recipe.quantize.strip_strings)
        macs = count_macs(blob)
        lat = float(estimate_latency_ms(macs["by_op"], macs["n_ops"], target))
        trial.set_user_attr("macs", int(macs["total"]))
        return val, float(len(blob)), lat

    return objective
