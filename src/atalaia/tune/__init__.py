"""Bayesian optimisation of the distillation (and optional compression) knobs with Optuna.

Modules: `space` (search spaces, knobs), `storage` (SQLite / PostgreSQL studies), `objective` (train and score
one trial on the validation split), `study` (`tune`: the resumable search), `report` (`TuneResult`, plots),
`apply` (read a study back and apply its knobs to a recipe), `cli` (`atalaia tune`).

The tuner sits above the run engine: tuned knobs are applied to a recipe before a run starts (by the CLI or
`atalaia.run`); nothing under `atalaia.pipeline` imports this package. The names below load their module on
first use, so `atalaia --help` and input validation never pay for TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "apply_params": "apply", "apply_study": "apply", "best_params": "apply", "tuned_recipe": "apply",
    "PRUNERS": "space", "SAMPLERS": "space", "THESIS_ALPHAS": "space", "THESIS_TEMPERATURES": "space",
    "SearchSpace": "space", "TuneError": "space", "default_storage": "storage", "default_study_name": "storage",
    "TuneResult": "study", "tune": "study",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"atalaia.tune.{_HOME[name]}"), name)
    raise AttributeError(f"module 'atalaia.tune' has no attribute '{name}'")


__all__ = sorted(_HOME)
