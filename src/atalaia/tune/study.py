"""Bayesian optimisation of the distillation (and, on request, compression) knobs with Optuna.

The thesis tuned the KD weight `alpha` and temperature `T` by Bayesian optimisation; this module makes that
a resumable, optionally multi-objective and distributed stage:

* **Objective = validation accuracy** of the distilled student (the epoch `train_classifier` keeps). The test
  split is never looked at while searching: it stays an unbiased estimate for the pipeline's report.
* **Search space** (`SearchSpace`): continuous ranges for alpha and T by default; `SearchSpace.thesis()` is
  the thesis' grid (alpha in {0.01, 0.1, 0.25, 0.5} x T in {2, 5, ..., 20}); learning rate, width multiplier
  and channel-pruning ratio are opt-in. The space is stored on the study (user attr) and a study that was
  created with another space refuses to be reused, so two searches never silently mix.
* **Multi-objective** (`multi_objective=True`): maximise val accuracy, minimise int8 flash bytes and the
  ESTIMATED latency on the recipe's first target -> a Pareto front. (Optuna cannot prune multi-objective
  trials, so per-epoch pruning is only active in single-objective mode.)
* **Pruning of hopeless trials**: per-epoch val accuracy is reported; Optuna's median (default) or Hyperband
  pruner stops a trial early.
* **Storage**: by default `sqlite:///<out>/tune/study.db`, so a killed search resumes with the same command;
  `postgresql+psycopg2://...` lets many workers on many machines join one study. RDB storages run with a
  heartbeat: a trial whose worker died (SIGKILL, lost machine) is marked FAIL after `grace_period` seconds
  and re-queued once with the same parameters (`RetryHeartbeatStaleTrialCallback`).
* **Budget**: `trials` is the study's TOTAL number of finished (COMPLETE or PRUNED) trials, not "N more".
  Running the same command again after a kill finishes the remaining ones; N workers given `--trials 40`
  finish 40 trials between them. A worker that loses the race for the last slot records its trial as FAIL
  with user attr `surplus=True` (never trained) instead of over-running the budget.

Example::

    from atalaia.tune import SearchSpace, apply_study, tune
    result = tune(recipe, trials=30, out_dir="runs/default")            # TPE over continuous alpha, T
    result = tune(recipe, trials=32, sampler="grid", search_space=SearchSpace.thesis())
    result.save("runs/default/tune")                                    # report.json/.md + plots
    recipe2 = apply_study(recipe, "runs/default", result.study_name)    # alpha/T of the best trial
"""


from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atalaia.config import Recipe
from atalaia.errors import RecipeError
from atalaia.tune.objective import (
    _fail_dead_local_trials,
    _finished,
    _load_data,
    _make_objective,
    _recipe_key,
    _Surplus,
    _teacher,
)
from atalaia.tune.report import TuneResult, _collect
from atalaia.tune.space import (
    KEY_ATTR,
    MODE_ATTR,
    OBJECTIVES_MULTI,
    OBJECTIVES_SINGLE,
    PRUNERS,
    SAMPLERS,
    SPACE_ATTR,
    SearchSpace,
    TuneError,
)
from atalaia.tune.storage import _open_storage, _redact, default_storage, default_study_name


def _n_startup(trials: int) -> int:
    """Random trials before TPE/GP model the objective: a quarter of the budget, 2..10."""
    return max(2, min(10, trials // 4))


def _sampler(name: str, space: SearchSpace, seed: int | None, multi: bool, trials: int = 20):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=_n_startup(trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        # Optuna's GP sampler runs on PyTorch, which is not part of AtalaIA's stack: usable only if the user
        # installed torch and scipy themselves. Checked without importing them.
        import importlib.util

        missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
        if missing:
            raise TuneError(f"the GP sampler needs {' and '.join(missing)} (Optuna's GPSampler runs on PyTorch, "
                            "which AtalaIA does not depend on); install them yourself or use --sampler tpe")
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_n_startup(trials))
    if name == "grid":
        g = space.grid_dict()
        extra = [k for k in space.names() if k not in g]
        if extra:
            raise TuneError(f"the grid sampler needs a grid for every searched knob; "
                            f"'{', '.join(extra)}' only has a range (use SearchSpace.thesis() or add a grid)")
        return optuna.samplers.GridSampler({k: list(v) for k, v in g.items()}, seed=seed)
    raise TuneError(f"unknown sampler '{name}'; choose one of {', '.join(SAMPLERS)}")


def _pruner(name: str, epochs: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 8), max_resource=max(2, epochs),
                                              reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"unknown pruner '{name}'; choose one of {', '.join(PRUNERS)}")


def _open_study(url: str, name: str, *, space: SearchSpace, multi: bool, recipe_key: str, sampler: Any,
                pruner: Any, create: bool = True, grace_period: int = 120):
    import optuna

    storage = _open_storage(url, grace_period=grace_period)
    objectives = OBJECTIVES_MULTI if multi else OBJECTIVES_SINGLE
    directions = ["maximize", "minimize", "minimize"] if multi else ["maximize"]
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        have_space = study.user_attrs.get(SPACE_ATTR)
        if have_space is not None and have_space != space.to_dict():
            raise TuneError(f"study '{name}' already exists with another search space "
                            f"({_space_str(have_space)} vs requested {_space_str(space.to_dict())}); "
                            f"use a new --study name")
        have_obj = tuple(study.user_attrs.get(MODE_ATTR, ()))
        if have_obj and have_obj != objectives:
            raise TuneError(f"study '{name}' already exists with objectives {', '.join(have_obj)}; "
                            f"requested {', '.join(objectives)}: use a new --study name")
        have_key = study.user_attrs.get(KEY_ATTR)
        if have_key is not None and have_key != recipe_key:
            raise TuneError(f"study '{name}' was made with a different recipe (data/train/model/epochs); "
                            f"use a new --study name")
        return study, storage
    if not create:
        raise TuneError(f"no study '{name}' in {_redact(url)} (studies there: {', '.join(sorted(existing)) or 'none'})")
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=directions, load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # pragma: no cover - load_if_exists covers the race
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if SPACE_ATTR not in study.user_attrs:  # the first worker writes them; a racing one writes the same
        study.set_user_attr(SPACE_ATTR, space.to_dict())
        study.set_user_attr(MODE_ATTR, list(objectives))
        study.set_user_attr(KEY_ATTR, recipe_key)
    return study, storage


def _space_str(d: dict) -> str:
    parts = [f"{k}={v}" for k, v in d.items() if k != "grid" and v is not None]
    if d.get("grid"):
        parts.append("grid " + " x ".join(f"{k}{{{','.join(f'{x:g}' for x in v)}}}" for k, v in d["grid"].items()))
    return "; ".join(parts) or "empty"


# ---------------------------------------------------------------------------------------------- public verbs
def tune(
    recipe: Recipe,
    *,
    trials: int,
    study_name: str | None = None,
    storage: str | Path | None = None,
    sampler: str = "tpe",
    multi_objective: bool = False,
    out_dir: str | Path | None = None,
    search_space: SearchSpace | None = None,
    pruner: str = "median",
    epochs: int | None = None,
    seed: int | None = None,
    save: bool = True,
    heartbeat_grace_s: int = 120,
    log: Callable[[str], None] = print,
    train_fn: Callable[..., Any] | None = None,
) -> TuneResult:
    """Search KD (and optional compression) hyper-parameters; return the study's result (saved in out/tune/).

    `trials` is the study's total budget of finished trials (a resumed or shared study only runs what is
    missing). `storage` None -> `sqlite:///<out_dir>/tune/study.db`. `epochs` overrides `train.epochs` for the
    trials only (the teacher always trains with the recipe's epochs, so the pipeline's teacher is reused).
    `seed` seeds the sampler (None: random, which is what independent distributed workers want).
    `heartbeat_grace_s`: a RUNNING trial whose worker sent no heartbeat for that long is failed and retried
    once (a dead worker on this same host is detected at once, by its pid). `train_fn` replaces
    `train_classifier` (tests).
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise TuneError(f"--trials must be a positive integer, got {trials!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise TuneError(f"--epochs must be a positive integer, got {epochs!r}")
    if recipe.task != "classification":
        raise TuneError(f"tuning supports closed-set classification recipes; '{recipe.name}' has task "
                        f"'{recipe.task}' (face-verification tuning is not implemented yet)")
    if sampler not in SAMPLERS:
        raise TuneError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise TuneError(f"unknown pruner '{pruner}'; choose one of {', '.join(PRUNERS)}")
    space = search_space if search_space is not None else (SearchSpace.thesis() if sampler == "grid"
                                                           else SearchSpace())
    space.validate()
    target = recipe.evaluate.targets[0] if recipe.evaluate.targets else None
    if multi_objective and target is None:
        raise TuneError("multi-objective tuning needs a target: set evaluate.targets in the recipe")
    if multi_objective:
        from atalaia.deploy.targets import get_target

        try:
            get_target(target)
        except RecipeError as e:
            raise TuneError(str(e)) from None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(out_dir) if out_dir is not None else Path("runs") / recipe.name
    epochs = recipe.train.epochs if epochs is None else epochs
    if storage is None:
        url = default_storage(out)
    elif "://" in str(storage):
        url = str(storage)
    else:  # a path: a .db file, or a folder that holds (or will hold) study.db
        p = Path(storage)
        url = f"sqlite:///{(p if p.suffix == '.db' else p / 'study.db').resolve()}"
    name = study_name or default_study_name(recipe, multi_objective)
    objectives = OBJECTIVES_MULTI if multi_objective else OBJECTIVES_SINGLE
    with warnings.catch_warnings():  # multivariate TPE / GP are flagged experimental by optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        samp = _sampler(sampler, space, seed, multi_objective, trials)
    prun = _pruner(pruner, epochs) if not multi_objective else optuna.pruners.NopPruner()
    study, _ = _open_study(url, name, space=space, multi=multi_objective,
                           recipe_key=_recipe_key(recipe, epochs, objectives), sampler=samp, pruner=prun,
                           grace_period=heartbeat_grace_s)
    _fail_dead_local_trials(study)
    t0 = time.perf_counter()
    teacher_info: dict[str, Any] = {}
    done_before = _finished(study)
    ran = 0
    if done_before < trials:
        data = _load_data(recipe)
        teacher, teacher_info = _teacher(recipe, data, out, log)
        if train_fn is None:
            from atalaia.compress.distill import train_classifier as train_fn
        objective = _make_objective(recipe, space, data, teacher, epochs=epochs, trials=trials,
                                    multi=multi_objective, target=target, log=log, train_fn=train_fn)
        log(f"[tune] study '{name}' in {_redact(url)}: {done_before}/{trials} trials finished, sampler {sampler}")
        t_trials = time.perf_counter()
        surplus: list[bool] = []

        def note_surplus(_study: Any, t: Any) -> None:
            surplus.append(bool(t.user_attrs.get("surplus")))

        while _finished(study) < trials:
            surplus.clear()
            study.optimize(objective, n_trials=1, catch=(_Surplus,), callbacks=[note_surplus])
            if any(surplus):
                break  # another worker claimed the last slot
            if sampler == "grid" and _grid_exhausted(study, space):
                break
            ran += 1
        trial_seconds = (time.perf_counter() - t_trials) / ran if ran else None
    else:
        trial_seconds = None
        log(f"[tune] study '{name}' already has {done_before} finished trials (budget {trials}): nothing to run")
    res = _collect(study, sampler=sampler, pruner=pruner if not multi_objective else "none", space=space,
                   target=target, epochs=epochs, wall=time.perf_counter() - t0, seconds_per_trial=trial_seconds,
                   teacher=teacher_info)
    res.storage = _redact(url)
    if save:
        res.save(out / "tune")
    return res


def _grid_exhausted(study: Any, space: SearchSpace) -> bool:
    import optuna

    S = optuna.trial.TrialState
    seen = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED))}
    return len(seen) >= len(space.grid_points())
