"""Reading a finished study back: best (or chosen) trial, and a recipe with its knobs applied."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from atalaia.config import Recipe
from atalaia.tune.space import TuneError
from atalaia.tune.storage import _open_storage, _redact, _resolve_storage, default_study_name


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
