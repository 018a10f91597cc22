"""`Report`: the typed content of `report.json`, written by every task plan and read by the renderer and `cli`.

The common part (rows, recipe, dataset, notes, timings) is typed; each task adds named sections (`kd`,
`channel_pruning`, `int8`, `final`, `verification`, ...) kept as plain data in `sections`. `report.json` carries
`schema_version`, so a reader can tell a report from an older AtalaIA (version 0 = no field) and say so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from atalaia.evaluate.result import StageResult

SCHEMA_VERSION = 1


def finite(x: Any) -> Any:
    """NaN/inf -> None (recursively), so report.json is strict JSON."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True)
class Report:
    task: str
    recipe_name: str
    stages: tuple[StageResult, ...]
    recipe: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    atalaia_version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    def section(self, name: str) -> Any:
        return self.sections.get(name)

    def to_dict(self) -> dict[str, Any]:
        """The report.json form: common fields, `stages` as StageResult dicts, then each section by name."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("sections", "stages")}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["targets"], d["notes"] = list(self.targets), list(self.notes)
        for k in ("recipe", "dataset", "timings_s", "history"):  # optional: absent rather than empty
            if not d[k]:
                del d[k]
        return finite({**d, **self.sections})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if not isinstance(d.get("stages"), list):
            raise ValueError("report['stages'] must be a list of StageResult dicts")
        names = {f.name for f in dataclasses.fields(cls)} - {"sections"}
        common = {k: v for k, v in d.items() if k in names}
        common["stages"] = tuple(StageResult.from_dict(_nan_f1(s)) for s in d["stages"])
        common["targets"] = tuple(common.get("targets") or ())
        common["notes"] = tuple(common.get("notes") or ())
        common.setdefault("task", "classification")
        common.setdefault("recipe_name", "")
        common.setdefault("schema_version", 0)
        return cls(**common, sections={k: v for k, v in d.items() if k not in names})


def _nan_f1(s: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: a verification row's macro_f1 comes back as None; the typed row holds NaN again."""
    return {**s, "macro_f1": float("nan") if s.get("macro_f1") is None else s["macro_f1"]}


__all__ = ["Report", "SCHEMA_VERSION", "finite"]
