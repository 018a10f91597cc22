"""Bayesian optimisation of the distillation (and optional compression) knobs with Optuna.

Modules: `space` (search spaces, knobs), `storage` (SQLite / PostgreSQL studies), `objective` (train and score
one trial on the validation split), `study` (`tune`: the resumable search), `report` (`TuneResult`, plots),
`apply` (read a study back and apply its knobs to a recipe), `cli` (`atalaia tune`).

The tuner sits above the run engine: tuned knobs are applied to a recipe before a run starts (by the CLI or
`atalaia.run`); nothing under `atalaia.pipeline` imports this package.
"""

from atalaia.tune.apply import apply_params, apply_study, best_params, tuned_recipe
from atalaia.tune.space import PRUNERS, SAMPLERS, THESIS_ALPHAS, THESIS_TEMPERATURES, SearchSpace, TuneError
from atalaia.tune.storage import default_storage, default_study_name
from atalaia.tune.study import TuneResult, tune

__all__ = ["PRUNERS", "SAMPLERS", "THESIS_ALPHAS", "THESIS_TEMPERATURES", "SearchSpace", "TuneError", "TuneResult",
           "apply_params", "apply_study", "best_params", "default_storage", "default_study_name", "tune",
           "tuned_recipe"]
