"""Stage bodies every task plan shares: float artifacts, int8 conversion, the TFLM check, profiled rows.

A plan's stage calls these instead of repeating them, so a float stage, an int8 stage and a table row mean
the same thing in every task: flash is the `.tflite` as flashed, the arena is measured in the TFLM runtime,
MCU latencies are estimates (`deploy.targets.estimate_latency_ms`) and host latency is LiteRT, 1 thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.config import QuantizeConfig, Recipe
from atalaia.deploy.targets import estimate_latency_ms, fits
from atalaia.deploy.tflite import TFLiteRunner, convert_float, convert_int8
from atalaia.deploy.tflm import TflmReport, check_tflm
from atalaia.evaluate import profile
from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_bytes
from atalaia.pipeline.runfolder import save_keras


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_float(model: Any, d: Path) -> bytes:
    """A float stage's files: `model.tflite` (float32, as it would be flashed) and `model.keras`."""
    blob = convert_float(model)
    atomic_write_bytes(d / "model.tflite", blob)
    save_keras(model, d / "model.keras")
    return blob


def profiled_row(recipe: Recipe, blob: bytes, **fields: Any) -> StageResult:
    """A table row for a `.tflite`: MACs, flash, gzip (shown only to expose sparsity), host and est. latency."""
    macs = profile.count_macs(blob)
    est = {t: round(float(estimate_latency_ms(macs["by_op"], macs["n_ops"], t)), 3) for t in recipe.evaluate.targets}
    return StageResult(
        macs=int(macs["total"]), flash_bytes=len(blob), est_latency_ms=est, gzip_bytes=int(profile.gzip_size(blob)),
        host_latency_ms=round(float(profile.host_latency_ms(blob, runs=recipe.evaluate.latency_runs)), 4), **fields)


@dataclass(frozen=True)
class Int8Model:
    """The int8 `.tflite` of a stage, its LiteRT runner, and the TFLM check of it."""

    blob: bytes
    runner: TFLiteRunner
    tflm: TflmReport

    def fits(self, targets: tuple[str, ...]) -> dict[str, Any]:
        return {t: fits(t, len(self.blob), int(self.tflm.arena_bytes)) for t in targets}

    def tflm_facts(self) -> dict[str, Any]:
        return {**self.tflm.to_dict(), "passed": True}


def quantize_and_check(model: Any, representative: np.ndarray, cfg: QuantizeConfig, d: Path,
                       check_inputs: np.ndarray) -> Int8Model:
    """Full-integer PTQ, written to `d/model.tflite`, then loaded in TFLM: ops, measured arena, and parity with
    LiteRT on up to 32 of `check_inputs` (float, model convention). Raises DeployError when TFLM cannot run it."""
    blob = convert_int8(model, representative, per_channel=cfg.per_channel, strip=cfg.strip_strings)
    atomic_write_bytes(d / "model.tflite", blob)
    runner = TFLiteRunner(blob)
    report = check_tflm(blob, runner.quantize_input(check_inputs[: min(32, len(check_inputs))]))
    return Int8Model(blob, runner, report)


def save_self_test(d: Path, input_q: np.ndarray, output_q: np.ndarray) -> None:
    """One input and the host's int8 output for it: the firmware's on-device self-test (`atalaia export`)."""
    save_npz(d / "self_test.npz", input_q=input_q, output_q=output_q)


__all__ = ["Int8Model", "profiled_row", "quantize_and_check", "save_float", "save_npz", "save_self_test"]
