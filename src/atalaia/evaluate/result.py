"""`StageResult`: one row of every table AtalaIA prints — what a stage produced, measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageResult:
    """Measured facts about one stage's model.

    flash_bytes is the size of the `.tflite` as flashed (float32 for float stages, int8 for the int8 stage);
    never a gzip size: TFLM has no sparse kernels, so zeros cost flash like any other weight.
    arena_bytes is measured in the real TFLM runtime (int8 rows only; None elsewhere).
    est_latency_ms maps target name -> *estimated* latency (MACs-based model calibrated on published timings).
    """

    stage: str
    model: str
    dtype: str  # "float32" | "int8"
    params: int
    macs: int
    flash_bytes: int
    accuracy: float
    macro_f1: float
    host_latency_ms: float | None = None
    arena_bytes: int | None = None
    est_latency_ms: dict[str, float] = field(default_factory=dict)
    sparsity: float | None = None
    gzip_bytes: int | None = None
    kd: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
