"""`TuneResult`: what a study found, saved as report.json / report.md with plots."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.tune.space import MODE_ATTR, OBJECTIVES_SINGLE, SearchSpace


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
