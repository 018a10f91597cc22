"""AtalaIA: compress face-recognition CNNs for microcontrollers, with measured accuracy, size and latency.

    import atalaia
    report = atalaia.run("recipes/default.yaml", out_dir="runs/default", **{"train.epochs": 10})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def run(recipe: str | Path | None = None, out_dir: str | Path | None = None, **overrides: Any) -> dict:
    """Run a recipe end to end (None = the bundled default) and return the report dict.

    `overrides` are dotted recipe keys, e.g. `run(None, "runs/x", **{"train.epochs": 5})`.
    """
    from atalaia.config import load_recipe
    from atalaia.pipeline import run as _run

    r = load_recipe(recipe, overrides)
    return _run(r, out_dir or Path("runs") / r.name)


__all__ = ["__version__", "run"]
