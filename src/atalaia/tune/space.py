"""Search spaces, the knobs the tuner may move, and the tuner's error type."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from atalaia.errors import AtalaiaError

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
