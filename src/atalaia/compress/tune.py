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

    from atalaia.compress.tune import SearchSpace, tune
    result = tune(recipe, trials=30, out_dir="runs/default")            # TPE over continuous alpha, T
    result = tune(recipe, trials=32, sampler="grid", search_space=SearchSpace.thesis())
    result.save("runs/default/tune")                                    # report.json/.md + plots
    recipe2 = apply_study(recipe, "runs/default", result.study_name)    # alpha/T of the best trial
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.config import Recipe
from atalaia.errors import AtalaiaError, RecipeError

__all__ = [
    "THESIS_ALPHAS", "THESIS_TEMPERATURES", "SAMPLERS", "PRUNERS", "SearchSpace", "TuneResult", "TuneError",
    "tune", "best_params", "apply_study", "tuned_recipe", "default_storage", "default_study_name",
]

THESIS_ALPHAS: tuple[float, ...] = (0.01, 0.1, 0.25, 0.5)
THESIS_TEMPERATURES: tuple[float, ...] = (2.0, 5.0, 7.0, 10.0, 12.0, 15.0, 17.0, 20.0)
SAMPLERS: tuple[str, ...] = ("tpe", "gp", "random", "grid")
PRUNERS: tuple[str, ...] = ("median", "hyperband", "none")
SPACE_ATTR = "atalaia_search_space"
KEY_ATTR = "atalaia_recipe_key"
MODE_ATTR = "atalaia_objectives"
OBJECTIVES_SINGLE = ("val_accuracy",)
OBJECTIVES_MULTI = ("val_accuracy", "int8_flash_bytes", "est_latency_ms")
KNOBS = ("alpha", "temperature", "learning_rate", "width", "prune_ratio")


class TuneError(AtalaiaError):
    """A tuning request cannot be served: bad budget, empty space, unreachable storage, mismatched study."""


# ---------------------------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class SearchSpace:
    """What a study searches. A knob is a `(low, high)` range (log-scaled for the learning rate) or None (fixed
    at the recipe's value); `grid` (pairs `(knob, values)`) replaces ranges by discrete choices.

    >>> SearchSpace().names()
    ('alpha', 'temperature')
    >>> len(SearchSpace.thesis().grid_points())
    32
    """

    alpha: tuple[float, float] | None = (0.01, 0.9)
    temperature: tuple[float, float] | None = (1.0, 20.0)
    learning_rate: tuple[float, float] | None = None
    width: tuple[float, float] | None = None
    prune_ratio: tuple[float, float] | None = None
    grid: tuple[tuple[str, tuple[float, ...]], ...] | None = None

    @classmethod
    def thesis(cls) -> SearchSpace:
        """The thesis' discrete grid: alpha in {0.01, 0.1, 0.25, 0.5} x T in {2, 5, 7, 10, 12, 15, 17, 20}."""
        return cls(alpha=None, temperature=None,
                   grid=(("alpha", THESIS_ALPHAS), ("temperature", THESIS_TEMPERATURES)))

    @classmethod
    def with_knobs(cls, *, learning_rate: bool = False, width: bool = False, prune: bool = False,
                   base: SearchSpace | None = None) -> SearchSpace:
        """`base` (default: continuous alpha/T) plus the opt-in compression knobs with their default ranges."""
        base = base or cls()
        return dataclasses.replace(
            base,
            learning_rate=(3e-4, 3e-2) if learning_rate else base.learning_rate,
            width=(0.25, 1.0) if width else base.width,
            prune_ratio=(0.0, 0.75) if prune else base.prune_ratio)

    def grid_dict(self) -> dict[str, tuple[float, ...]]:
        return {k: tuple(float(v) for v in vals) for k, vals in (self.grid or ())}

    def names(self) -> tuple[str, ...]:
        g = self.grid_dict()
        return tuple(k for k in KNOBS if k in g or getattr(self, k) is not None)

    def grid_points(self) -> list[dict[str, float]]:
        import itertools

        g = self.grid_dict()
        return [dict(zip(g, combo, strict=True)) for combo in itertools.product(*g.values())]

    def validate(self) -> None:
        """Raise TuneError (one line) when the space is empty or a range is outside what the knob allows."""
        if not self.names():
            raise TuneError("empty search space: enable at least one of alpha, temperature, learning_rate, "
                            "width, prune_ratio (or give a grid)")
        limits = {"alpha": (0.0, 1.0, True), "temperature": (0.0, math.inf, False),
                  "learning_rate": (0.0, 1.0, False), "width": (0.0, 4.0, False),
                  "prune_ratio": (0.0, 0.95, True)}
        g = self.grid_dict()
        for k in g:
            if k not in KNOBS:
                raise TuneError(f"grid knob '{k}' is unknown; valid knobs: {', '.join(KNOBS)}")
            if getattr(self, k) is not None:
                raise TuneError(f"knob '{k}' has both a range and a grid; give one")
            if not g[k]:
                raise TuneError(f"empty search space: grid for '{k}' has no values")
        for k in KNOBS:
            lo_ok, hi_ok, closed = limits[k]
            values = list(g.get(k, ()))
            rng = getattr(self, k)
            if rng is not None:
                if len(rng) != 2 or not rng[0] < rng[1]:
                    raise TuneError(f"search range for '{k}' must be (low, high) with low < high, got {rng}")
                values += list(rng)
            for v in values:
                ok = (lo_ok <= v <= hi_ok) if closed else (lo_ok < v <= hi_ok)
                if not ok:
                    raise TuneError(f"search value {v} for '{k}' is outside "
                                    f"{'[' if closed else '('}{lo_ok}, {hi_ok}]")

    def suggest(self, trial: Any) -> dict[str, float]:
        g = self.grid_dict()
        out: dict[str, float] = {}
        for k in KNOBS:
            if k in g:
                out[k] = float(trial.suggest_categorical(k, list(g[k])))
            elif (rng := getattr(self, k)) is not None:
                out[k] = float(trial.suggest_float(k, rng[0], rng[1], log=(k == "learning_rate")))
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: (list(getattr(self, k)) if getattr(self, k) is not None else None) for k in KNOBS}
        d["grid"] = {k: list(v) for k, v in self.grid_dict().items()} or None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        unknown = set(d) - {*KNOBS, "grid"}
        if unknown:
            raise TuneError(f"unknown search-space key(s): {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {k: (tuple(float(x) for x in d[k]) if d.get(k) is not None else None) for k in KNOBS}
        grid = d.get("grid")
        kw["grid"] = tuple((k, tuple(float(x) for x in v)) for k, v in grid.items()) if grid else None
        return cls(**kw)


# ---------------------------------------------------------------------------------------------- storage
def default_storage(out_dir: str | Path) -> str:
    """The default study storage: a SQLite file in the run folder's `tune/`."""
    return f"sqlite:///{(Path(out_dir) / 'tune' / 'study.db').resolve()}"


def default_study_name(recipe: Recipe, multi_objective: bool = False) -> str:
    return f"{recipe.name}-{'pareto' if multi_objective else 'accuracy'}"


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):([^@]+)@", r"://\1:***@", url)


def _resolve_storage(storage: str | Path | None, out_dir: str | Path | None) -> str:
    """A URL stays a URL; a folder (run folder or its tune/) or a .db file becomes a SQLite URL."""
    if storage is None:
        if out_dir is None:
            raise TuneError("no storage: give a storage URL or a run folder")
        return default_storage(out_dir)
    s = str(storage)
    if "://" in s:
        return s
    p = Path(s)
    if p.suffix == ".db":
        return f"sqlite:///{p.resolve()}"
    for cand in (p / "study.db", p / "tune" / "study.db"):
        if cand.is_file():
            return f"sqlite:///{cand.resolve()}"
    raise TuneError(f"no study database under '{s}' (looked for study.db and tune/study.db); "
                    f"run `atalaia tune` first or pass a storage URL")


def _retry_callback():
    """Re-queue a trial whose worker died, once, with the same parameters (optuna's stale-trial retry)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=1)


def _open_storage(url: str, *, heartbeat: bool = True, grace_period: int = 120):
    """An optuna RDBStorage with heartbeat + one retry of trials whose worker died; one-line errors."""
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {}
    if heartbeat:
        kw = {"heartbeat_interval": max(1, grace_period // 4), "grace_period": grace_period,
              "heartbeat_stale_trial_callback": _retry_callback()}
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        for attempt in range(6):
            try:
                with warnings.catch_warnings():  # heartbeat is "experimental" in optuna since 2.9; we rely on it
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers starting together on an empty database race to create optuna's schema: the loser
                # sees "duplicate key"/"already exists"; once the winner has committed, opening just works
                if attempt == 5:
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ModuleNotFoundError,
            sqlalchemy.exc.NoSuchModuleError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TuneError(f"cannot open study storage {_redact(url)}: {first[:200]}") from None
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DatabaseError) as e:
        raise TuneError(f"cannot open study storage {_redact(url)}: {str(e).splitlines()[0][:200]}") from None


# ---------------------------------------------------------------------------------------------- result
@dataclass
class TuneResult:
    """What a search found; `save(folder)` writes report.json, report.md and PNG plots there."""

    study_name: str
    storage: str
    objectives: tuple[str, ...]
    sampler: str
    pruner: str
    search_space: dict[str, Any]
    target: str | None
    epochs: int
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    importances: dict[str, float] | None = None
    importance_note: str = ""
    wall_time_s: float = 0.0
    seconds_per_trial: float | None = None
    teacher: dict[str, Any] = field(default_factory=dict)
    _study: Any = field(default=None, repr=False, compare=False)

    @property
    def best_params(self) -> dict[str, float]:
        return dict(self.best["params"]) if self.best else {}

    @property
    def best_value(self) -> float | None:
        return None if not self.best else float(self.best["values"][0])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        d["counts"] = self.counts()
        d["objectives"] = list(self.objectives)
        return d

    def save(self, folder: str | Path) -> Path:
        """Write `report.json`, `report.md` and plots (`history.png`, `importance.png`, `pareto.png`)."""
        from atalaia.ioutil import atomic_write_json, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        plots = _plots(self, folder)
        d = self.to_dict()
        d["plots"] = plots
        atomic_write_json(folder / "report.json", d)
        atomic_write_text(folder / "report.md", _markdown(self, plots))
        return folder / "report.json"


def _trial_row(t: Any, objectives: tuple[str, ...]) -> dict[str, Any]:
    dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
        else None
    return {"number": t.number, "state": t.state.name, "params": dict(t.params),
            "values": list(t.values) if t.values is not None else None,
            "objectives": list(objectives), "duration_s": dur,
            "intermediate": {int(k): float(v) for k, v in t.intermediate_values.items()},
            "user_attrs": dict(t.user_attrs)}


def _collect(study: Any, *, sampler: str, pruner: str, space: SearchSpace, target: str | None, epochs: int,
             wall: float, seconds_per_trial: float | None, teacher: dict) -> TuneResult:
    import optuna

    objectives = tuple(study.user_attrs.get(MODE_ATTR, OBJECTIVES_SINGLE))
    trials = study.get_trials(deepcopy=False)
    rows = [_trial_row(t, objectives) for t in trials]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best, pareto = None, []
    if complete:
        if len(objectives) == 1:
            best = _trial_row(study.best_trial, objectives)
        else:
            front = study.best_trials
            pareto = sorted((_trial_row(t, objectives) for t in front), key=lambda r: -r["values"][0])
            best = pareto[0]
    importances, note = _importances(study, complete)
    return TuneResult(study_name=study.study_name, storage="", objectives=objectives, sampler=sampler,
                      pruner=pruner, search_space=space.to_dict(), target=target, epochs=epochs, trials=rows,
                      best=best, pareto=pareto, importances=importances, importance_note=note,
                      wall_time_s=round(wall, 2), seconds_per_trial=seconds_per_trial, teacher=teacher,
                      _study=study)


def _importances(study: Any, complete: list) -> tuple[dict[str, float] | None, str]:
    import optuna

    names = {k for t in complete for k in t.params}
    if len(complete) < 4 or len(names) < 2:
        return None, (f"parameter importances need >= 4 complete trials and >= 2 searched parameters "
                      f"(have {len(complete)} trials, {len(names)} parameters)")
    try:
        ev = optuna.importance.PedAnovaImportanceEvaluator()
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes", category=UserWarning)
        imp = optuna.importance.get_param_importances(study, evaluator=ev, target=lambda t: -t.values[0])
        # (PED-ANOVA ranks parameters by how they reach LOW target values: negate the accuracy)
        return {k: float(v) for k, v in imp.items()}, "PED-ANOVA on the validation accuracy"
    except Exception as e:  # importance is a nice-to-have: never fail a finished search on it
        return None, f"parameter importances unavailable: {type(e).__name__}: {str(e)[:120]}"


def _plots(res: TuneResult, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    rows = [r for r in res.trials if r["state"] == "COMPLETE"]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r["number"] for r in rows]
        ys = [100 * r["values"][0] for r in rows]
        ax.scatter(xs, ys, s=18, label="trial (complete)")
        pr = [r for r in res.trials if r["state"] == "PRUNED" and r["intermediate"]]
        if pr:
            ax.scatter([r["number"] for r in pr], [100 * max(r["intermediate"].values()) for r in pr], s=14,
                       marker="x", color="grey", label="pruned (last report)")
        order = np.argsort(xs)
        ax.plot(np.asarray(xs)[order], np.maximum.accumulate(np.asarray(ys)[order]), color="C1", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"optimisation history ({res.sampler})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "history.png", dpi=110)
        plt.close(fig)
        out["history"] = "history.png"
    if res.importances:
        fig, ax = plt.subplots(figsize=(5, 0.5 + 0.5 * len(res.importances)))
        items = sorted(res.importances.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items])
        ax.set_xlabel("importance (PED-ANOVA)")
        ax.set_title("parameter importances")
        fig.tight_layout()
        fig.savefig(folder / "importance.png", dpi=110)
        plt.close(fig)
        out["importance"] = "importance.png"
    if len(res.objectives) > 1 and rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        acc = [100 * r["values"][0] for r in rows]
        flash = [r["values"][1] / 1024 for r in rows]
        lat = [r["values"][2] for r in rows]
        sc = ax.scatter(flash, acc, c=lat, cmap="viridis", s=20)
        fig.colorbar(sc, ax=ax, label=f"est. latency on {res.target} (ms)")
        front = sorted(res.pareto, key=lambda r: r["values"][1])
        ax.plot([r["values"][1] / 1024 for r in front], [100 * r["values"][0] for r in front], "r-o", ms=4,
                mfc="none", label="Pareto front")
        ax.set_xlabel("int8 flash (KB)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("accuracy vs flash (colour: est. latency)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "pareto.png", dpi=110)
        plt.close(fig)
        out["pareto"] = "pareto.png"
    return out


def _fmt_params(p: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in p.items())


def _markdown(res: TuneResult, plots: dict[str, str]) -> str:
    c = res.counts()
    lines = [f"# Tuning study `{res.study_name}`", "",
             f"- storage: `{res.storage}`; sampler: {res.sampler}; pruner: {res.pruner}; "
             f"epochs per trial: {res.epochs}",
             f"- objectives: {', '.join(res.objectives)} (validation split; the test split is never used here)",
             "- trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(c.items())),
             f"- wall time: {res.wall_time_s:.0f} s"
             + (f" ({res.seconds_per_trial:.1f} s per trial)" if res.seconds_per_trial else ""), ""]
    if res.best:
        v = res.best["values"]
        lines += ["## Best trial", "",
                  f"trial {res.best['number']}: val accuracy {100 * v[0]:.2f}% with {_fmt_params(res.best['params'])}",
                  ""]
    if res.pareto:
        lines += [f"## Pareto front (latency is an ESTIMATE on {res.target})", "",
                  "| trial | val acc % | int8 flash KB | est. latency ms | params |", "|---|---|---|---|---|"]
        for r in res.pareto:
            v = r["values"]
            lines.append(f"| {r['number']} | {100 * v[0]:.2f} | {v[1] / 1024:.1f} | {v[2]:.2f} | "
                         f"{_fmt_params(r['params'])} |")
        lines += ["", "Take one with `atalaia run --from-study STUDY --trial N`.", ""]
    if res.importances:
        lines += ["## Parameter importances", ""] + [f"- {k}: {v:.3f}" for k, v in res.importances.items()] + [""]
    else:
        lines += [f"_{res.importance_note}_", ""]
    for name, path in plots.items():
        lines.append(f"![{name}]({path})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- data, teacher
@dataclass
class _Data:
    split: Any
    input_shape: tuple[int, int, int]
    num_classes: int
    key: str


def _load_data(recipe: Recipe) -> _Data:
    from atalaia.data.dataset import load_identity_folder, split_dataset

    r = recipe
    ds = load_identity_folder(r.data_root(), image_size=r.data.image_size, channels=r.data.channels,
                              min_images_per_class=r.data.min_images_per_class, max_classes=r.data.max_classes)
    split = split_dataset(ds, r.data.split, r.seed)  # the pipeline's split: same seed, same val set
    h, w = r.data.image_size
    return _Data(split, (h, w, r.data.channels), ds.num_classes, ds.fingerprint())


def _teacher_key(recipe: Recipe, data_key: str) -> str:
    """The pipeline's teacher stage key, so a teacher the pipeline already trained is reused as is."""
    from atalaia.pipeline import teacher_stage_key

    return teacher_stage_key(recipe, data_key)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _teacher(recipe: Recipe, data: _Data, out_dir: Path, log: Callable[[str], None]) -> tuple[Any, dict]:
    """Load the pipeline's teacher (same key) or the tune cache; else train once and cache it in tune/teacher/.

    A file lock makes concurrent workers sharing the folder wait for the first one's teacher.
    """
    import keras

    from atalaia.compress.distill import accuracy_of, train_classifier
    from atalaia.data.dataset import to_float
    from atalaia.ioutil import atomic_write_json
    from atalaia.models import create_model

    key = _teacher_key(recipe, data.key)
    candidates = [("pipeline", out_dir / "teacher"), ("tune cache", out_dir / "tune" / "teacher")]

    def _try_load() -> tuple[Any, dict] | None:
        for source, d in candidates:
            marker = d / "DONE.json"
            try:
                if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
                    m = keras.saving.load_model(d / "model.keras", compile=False)
                    return m, {"source": source, "path": str(d / "model.keras"), "key": key}
            except (OSError, ValueError):
                continue
        return None

    if (got := _try_load()) is not None:
        return got
    cache = out_dir / "tune" / "teacher"
    with _file_lock(out_dir / "tune" / ".teacher.lock"):
        if (got := _try_load()) is not None:
            return got
        log(f"[tune] training the teacher once ({recipe.teacher.name}, {recipe.train.epochs} epochs)")
        t0 = time.perf_counter()
        m = create_model(recipe.teacher.name, num_classes=data.num_classes, input_shape=data.input_shape,
                         width=recipe.teacher.width)
        train_classifier(m, data.split, recipe.train, augment=recipe.data.augment, seed=recipe.seed + 1)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".tmp-{os.getpid()}-model.keras"
        m.save(tmp)
        os.replace(tmp, cache / "model.keras")
        val = accuracy_of(m, to_float(data.split.val.images), data.split.val.labels)
        atomic_write_json(cache / "DONE.json", {"key": key, "val_accuracy": val,
                                                "seconds": round(time.perf_counter() - t0, 1)})
        return m, {"source": "trained", "path": str(cache / "model.keras"), "key": key, "val_accuracy": val}


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
        h = train_fn(student, data.split, recipe.train, augment=recipe.data.augment, teacher=teacher,
                     alpha=alpha, temperature=temperature, epochs=epochs, learning_rate=lr,
                     seed=recipe.seed, on_epoch=on_epoch)
        val = float(max(h.val_accuracy))
        trial.set_user_attr("kd_val_accuracy", val)
        if ratio > 0:
            from atalaia.compress.prune import channel_prune

            student, summary = channel_prune(student, ratio, recipe.prune.channel.criterion)
            ft_epochs = max(1, min(recipe.prune.channel.epochs, epochs))
            h2 = train_fn(student, data.split, recipe.train, augment=recipe.data.augment, teacher=teacher,
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


def _load_existing(storage: str | Path, study_name: str):
    import optuna

    url = _resolve_storage(storage, None)
    st = _open_storage(url, heartbeat=False)
    names = {s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)}
    if study_name not in names:
        raise TuneError(f"no study '{study_name}' in {_redact(url)} "
                        f"(studies there: {', '.join(sorted(names)) or 'none'})")
    return optuna.load_study(study_name=study_name, storage=st)


def best_params(study_dir_or_storage: str | Path, study_name: str, trial: int | None = None) -> dict[str, float]:
    """Parameters of one trial of a study: the best (single objective), the most accurate Pareto trial
    (multi-objective), or trial number `trial`, which must be COMPLETE.
    """
    import optuna

    study = _load_existing(study_dir_or_storage, study_name)
    if trial is not None:
        match = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not match:
            raise TuneError(f"study '{study_name}' has no trial {trial} (it has {len(study.trials)} trials)")
        if match[0].state != optuna.trial.TrialState.COMPLETE:
            raise TuneError(f"trial {trial} of study '{study_name}' is {match[0].state.name}, not COMPLETE")
        return dict(match[0].params)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise TuneError(f"study '{study_name}' has no complete trial yet")
    if len(study.directions) == 1:
        return dict(study.best_trial.params)
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))
    return dict(front[0].params)


def apply_params(recipe: Recipe, params: dict[str, float]) -> Recipe:
    """The recipe with tuned knobs replaced: distill.alpha/temperature, train.learning_rate, student.width,
    prune.channel.ratio (only the knobs present in `params`)."""
    r = recipe
    if "alpha" in params or "temperature" in params:
        r = dataclasses.replace(r, distill=dataclasses.replace(
            r.distill, alpha=float(params.get("alpha", r.distill.alpha)),
            temperature=float(params.get("temperature", r.distill.temperature))))
    if "learning_rate" in params:
        r = dataclasses.replace(r, train=dataclasses.replace(r.train, learning_rate=float(params["learning_rate"])))
    if "width" in params:
        r = dataclasses.replace(r, student=dataclasses.replace(r.student, width=float(params["width"])))
    if "prune_ratio" in params:
        ch = dataclasses.replace(r.prune.channel, ratio=float(params["prune_ratio"]),
                                 enabled=r.prune.channel.enabled or params["prune_ratio"] > 0)
        r = dataclasses.replace(r, prune=dataclasses.replace(r.prune, channel=ch))
    from atalaia.config import validate

    validate(r)
    return r


def apply_study(recipe: Recipe, storage: str | Path, study_name: str, trial_number: int | None = None) -> Recipe:
    """`recipe` with the knobs of a study's best (or chosen) trial: what `atalaia run --from-study` runs."""
    return apply_params(recipe, best_params(storage, study_name, trial_number))


def tuned_recipe(recipe: Recipe, out_dir: str | Path, *, study_name: str | None = None,
                 trial_number: int | None = None) -> Recipe:
    """For `distill.tune: true`: apply the run folder's default study (made by `atalaia tune`), else explain."""
    name = study_name or default_study_name(recipe)
    db = Path(out_dir) / "tune" / "study.db"
    if not db.is_file():
        raise TuneError(f"distill.tune is true but no study in {db}: run `atalaia tune RECIPE --trials N "
                        f"--out {out_dir}` first")
    return apply_study(recipe, db, name, trial_number)


def main(argv: list[str] | None = None) -> None:
    """`python -m atalaia.compress.tune ...`: the same as `atalaia tune ...` (a worker entry point)."""
    from atalaia.compress.tune_cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
