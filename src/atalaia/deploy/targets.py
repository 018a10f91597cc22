"""MCU target profiles, budget checks and a calibrated int8 latency ESTIMATE.

Latency here is an *estimate*, never a measurement: a linear cost model over the MACs counted from the
`.tflite` graph (`atalaia.evaluate.profile.count_macs`):

    t_ms = a_conv * (CONV_2D + FULLY_CONNECTED MACs) + a_dw * DEPTHWISE_CONV_2D MACs + n_ops * overhead_ms

`overhead_ms` is a fixed prior (OVERHEAD_CYCLES_PER_OP cycles at the target clock: interpreter dispatch plus
the cost of the MAC-free ops such as ADD, pooling, softmax); the rates are fitted per target on published
on-device timings of real int8 models (CALIBRATION below — the data lives here, in code, so the product does
not depend on anything outside the package at run time):

* a target with >= 2 anchors whose conv/dw mix differs gets separate conv and depthwise rates (non-negative
  least squares on relative error); with exactly 2 anchors this is an exact fit — the report then also shows
  the leave-one-out error of a single rate, which is the honest measure of how well it generalises;
* a target with a single anchor gets a single rate (a_conv = a_dw), exact at its anchor by construction and
  unvalidated elsewhere. All ESP32 anchors are MobileNet-v1 0.25 (person_detect), so estimates for
  conv-heavy (ResNet-like) models on ESP32 chips are extrapolations.

MAC counts and op counts of the anchors are those of the exact published `.tflite` files (verified by
tests against `count_macs`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from atalaia.errors import RecipeError

__all__ = [
    "TargetProfile",
    "TARGETS",
    "CALIBRATION",
    "OVERHEAD_CYCLES_PER_OP",
    "get_target",
    "target_names",
    "estimate_latency_ms",
    "calibration_report",
    "fits",
    "McuPart",
    "PARTS",
    "get_part",
    "INSTRUCTION_ANCHORS",
    "cycles_per_instruction",
    "estimate_ms_from_instructions",
    "instruction_calibration",
]

KiB = 1024
MiB = 1024 * 1024

#: Prior (not fitted) per-operator overhead: TFLM dispatch + MAC-free work of a typical small op.
OVERHEAD_CYCLES_PER_OP = 5000


@dataclass(frozen=True)
class TargetProfile:
    """One MCU board/module as we deploy to it (TFLM, int8, internal RAM for the arena).

    flash_bytes: flash of the reference module/board; firmware_reserve_bytes of it is kept for bootloader,
    application, TFLM and kernels, the rest is the model budget. sram_bytes: internal SRAM realistically free
    for ONE contiguous tensor arena with the application running (not the datasheet total).
    """

    name: str
    description: str
    clock_mhz: int
    flash_bytes: int
    sram_bytes: int
    psram_bytes: int
    kernels: str  # "esp-nn" | "reference" (TFLM reference kernels) | "x-cube-ai" (ST runtime, not TFLM)
    firmware_reserve_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TARGETS: dict[str, TargetProfile] = {
    t.name: t
    for t in (
        TargetProfile(
            "esp32s3",
            "ESP32-S3 (Xtensa LX7 dual core, SIMD) @240 MHz, e.g. ESP32-S3-WROOM-1-N8R8; esp-tflite-micro + esp-nn",
            240, 8 * MiB, 320 * KiB, 8 * MiB, "esp-nn", 1 * MiB,
        ),
        TargetProfile(
            "esp32",
            "ESP32 (Xtensa LX6 dual core) @240 MHz, e.g. ESP32-WROOM-32E 4 MB; esp-tflite-micro + esp-nn",
            240, 4 * MiB, 160 * KiB, 0, "esp-nn", 1 * MiB,
        ),
        TargetProfile(
            "esp32c3",
            "ESP32-C3 (RISC-V single core) @160 MHz, e.g. ESP32-C3-MINI-1 4 MB; esp-tflite-micro + esp-nn",
            160, 4 * MiB, 200 * KiB, 0, "esp-nn", 1 * MiB,
        ),
        TargetProfile(
            "esp32p4",
            "ESP32-P4 (RISC-V dual core, PIE SIMD) @360 MHz, 768 KB L2MEM, 32 MB in-package PSRAM; esp-nn",
            360, 16 * MiB, 512 * KiB, 32 * MiB, "esp-nn", 1 * MiB,
        ),
        TargetProfile(
            "cortex-m4",
            "STM32L4R5ZI (Cortex-M4F) @120 MHz, 2 MB flash, 640 KB SRAM; TFLM reference kernels (MLPerf Tiny ref)",
            120, 2 * MiB, 512 * KiB, 0, "reference", 256 * KiB,
        ),
        TargetProfile(
            "cortex-m7",
            "STM32H7A3ZI (Cortex-M7) @280 MHz, 2 MB flash, 1.4 MB SRAM; calibrated on ST X-CUBE-AI timings "
            "(NOT TFLM: TFLM reference kernels would be several times slower)",
            280, 2 * MiB, 1 * MiB, 0, "x-cube-ai", 256 * KiB,
        ),
    )
}

# MACs/op counts of the anchor models, counted from the published .tflite files (see atalaia.evaluate.profile).
_MODELS: dict[str, dict[str, Any]] = {
    "person_detect": {
        "file": "person_detect.tflite",
        "macs": {"CONV_2D": 6_193_664, "DEPTHWISE_CONV_2D": 964_224, "FULLY_CONNECTED": 0},
        "n_ops": 31,
        "source": "espressif/esp-tflite-micro @ 99f49e1, examples/person_detection (MobileNet-v1 0.25, 96x96x1)",
    },
    "resnet8": {
        "file": "mlperf_tiny_ic_resnet8_int8.tflite",
        "macs": {"CONV_2D": 12_500_992, "DEPTHWISE_CONV_2D": 0, "FULLY_CONNECTED": 640},
        "n_ops": 16,
        "source": "mlcommons/tiny @ 1afd2c9, image_classification pretrainedResnet_quant.tflite (32x32x3)",
    },
    "vww_mobilenet": {
        "file": "mlperf_tiny_vww_mobilenet_int8.tflite",
        "macs": {"CONV_2D": 6_690_816, "DEPTHWISE_CONV_2D": 798_336, "FULLY_CONNECTED": 512},
        "n_ops": 31,
        "source": "mlcommons/tiny @ 1afd2c9, visual_wake_words vww_96_int8.tflite (MobileNet-v1 0.25, 96x96x3)",
    },
}

_ESP = "esp-tflite-micro README (person_detection invoke() time, internal RAM, with esp-nn)"
_MLPERF_REF = "MLPerf Tiny v0.5 inference results, reference submission (TFLM) on STM32 L4R5ZI"
_MLPERF_ST = "MLPerf Tiny v1.1 inference results, ST X-CUBE-AI on STM32 H7A3ZI"

#: Published on-device invoke() latencies used as anchors. Not used here but recorded for context:
#: without esp-nn person_detect takes 2300 / 4084 / 3355 / 1395 ms on ESP32-S3 / ESP32 / ESP32-C3 / ESP32-P4
#: (same README); X-CUBE-AI on L4R5ZI: ResNet-8 214 ms, VWW 119 ms (MLPerf Tiny v1.1).
CALIBRATION: tuple[dict[str, Any], ...] = (
    {"target": "esp32s3", "model": "person_detect", "published_ms": 54.0, "source": _ESP},
    {"target": "esp32", "model": "person_detect", "published_ms": 380.0, "source": _ESP},
    {"target": "esp32c3", "model": "person_detect", "published_ms": 426.0, "source": _ESP},
    {"target": "esp32p4", "model": "person_detect", "published_ms": 73.0, "source": _ESP},
    {"target": "cortex-m4", "model": "resnet8", "published_ms": 704.0, "source": _MLPERF_REF},
    {"target": "cortex-m4", "model": "vww_mobilenet", "published_ms": 601.0, "source": _MLPERF_REF},
    {"target": "cortex-m7", "model": "resnet8", "published_ms": 51.9, "source": _MLPERF_ST},
    {"target": "cortex-m7", "model": "vww_mobilenet", "published_ms": 29.6, "source": _MLPERF_ST},
)


# --------------------------------------------------------------------------------------------- lookup
def target_names() -> list[str]:
    return list(TARGETS)


def get_target(name: str) -> TargetProfile:
    """The profile called `name`; RecipeError listing the valid names otherwise."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise RecipeError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}") from None


# --------------------------------------------------------------------------------------------- cost model
def _features(op_macs: dict[str, int]) -> np.ndarray:
    for k, v in op_macs.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(
                f"op_macs must map op type -> non-negative int MACs (e.g. count_macs(blob)['by_op']); "
                f"got {k!r}: {v!r}"
            )
    conv = int(op_macs.get("CONV_2D", 0)) + int(op_macs.get("FULLY_CONNECTED", 0))
    return np.array([conv, int(op_macs.get("DEPTHWISE_CONV_2D", 0))], dtype=np.float64)


def _overhead_ms(profile: TargetProfile) -> float:
    return OVERHEAD_CYCLES_PER_OP / (profile.clock_mhz * 1e3)


def _fit_rates(rows: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, str]:
    """Non-negative (a_conv, a_dw) in ms/MAC minimising squared relative error; (rates, description)."""
    x = np.array([f for f, _ in rows])
    y = np.array([t for _, t in rows])
    w = 1.0 / y  # relative error
    single_x = x.sum(axis=1, keepdims=True)
    single_rate = float(np.linalg.lstsq(single_x * w[:, None], y * w, rcond=None)[0][0])
    best = (np.array([single_rate, single_rate]), f"single rate ({len(rows)} anchor{'s' if len(rows) > 1 else ''})")
    if len(rows) < 2 or np.linalg.matrix_rank(x) < 2:
        return best
    best_err = float(np.sum(((single_x[:, 0] * single_rate - y) * w) ** 2))
    for cols in ((0, 1), (0,), (1,)):  # active-set enumeration (2 parameters)
        sol = np.linalg.lstsq(x[:, cols] * w[:, None], y * w, rcond=None)[0]
        if np.any(sol < 0):
            continue
        rates = np.zeros(2)
        rates[list(cols)] = sol
        err = float(np.sum(((x @ rates - y) * w) ** 2))
        if cols == (0, 1) or err < best_err - 1e-12:
            kind = "conv+dw rates" if cols == (0, 1) else "partial rates"
            n = "exact fit: 2 anchors, 2 parameters" if len(rows) == 2 and cols == (0, 1) else f"{len(rows)} anchors"
            best, best_err = (rates, f"{kind} ({n})"), err
            if cols == (0, 1):
                break
    return best


def _anchor_rows(target: str, exclude_model: str | None = None) -> list[tuple[np.ndarray, float]]:
    prof = TARGETS[target]
    rows = []
    for a in CALIBRATION:
        if a["target"] != target or a["model"] == exclude_model:
            continue
        m = _MODELS[a["model"]]
        rows.append((_features(m["macs"]), a["published_ms"] - m["n_ops"] * _overhead_ms(prof)))
    return rows


@cache
def _fit(target: str) -> tuple[tuple[float, float], str]:
    rows = _anchor_rows(target)
    if not rows:  # pragma: no cover - every profile has an anchor (tested)
        raise RecipeError(f"target {target!r} has no calibration anchor")
    rates, kind = _fit_rates(rows)
    return (float(rates[0]), float(rates[1])), kind


def estimate_latency_ms(op_macs: dict[str, int], n_ops: int, target: str) -> float:
    """ESTIMATED int8 invoke() latency in ms on `target` (see module docstring for the model and its limits).

    `op_macs` maps op type -> MACs (`count_macs(blob)["by_op"]`); keys other than CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED carry no MACs and are ignored; `n_ops` is the operator count.
    """
    prof = get_target(target)
    (a_conv, a_dw), _ = _fit(prof.name)
    f = _features(op_macs)
    if n_ops < 0:
        raise ValueError(f"n_ops must be >= 0, got {n_ops}")
    return float(a_conv * f[0] + a_dw * f[1] + n_ops * _overhead_ms(prof))


def calibration_report() -> list[dict[str, Any]]:
    """Estimate vs published latency for every anchor, with relative errors and the fit used.

    `rel_error` is the in-sample error of the fitted model (0 where the fit is exact by construction);
    `single_rate_ms`/`single_rate_rel_error` use one rate fitted on all the target's anchors (what a plain
    MMAC/s figure would give); `loo_rel_error` predicts the anchor with a single rate fitted on the target's
    OTHER anchors (None with one anchor) — the only out-of-sample number available.
    """
    out = []
    for a in CALIBRATION:
        t, model = a["target"], _MODELS[a["model"]]
        prof = TARGETS[t]
        est = estimate_latency_ms(model["macs"], model["n_ops"], t)
        (a_conv, a_dw), kind = _fit(t)
        rows = _anchor_rows(t)
        f = _features(model["macs"])
        ovh = model["n_ops"] * _overhead_ms(prof)
        single = _fit_rates([(r[0].sum() * np.ones(1), r[1]) for r in rows])[0][0]
        single_ms = float(single * f.sum() + ovh)
        others = _anchor_rows(t, exclude_model=a["model"])
        loo = None
        if others:
            r = _fit_rates([(o[0].sum() * np.ones(1), o[1]) for o in others])[0][0]
            loo = float((r * f.sum() + ovh) / a["published_ms"] - 1.0)
        pub = a["published_ms"]
        out.append(
            {
                "target": t,
                "kernels": prof.kernels,
                "model": a["model"],
                "macs": int(sum(model["macs"].values())),
                "n_ops": model["n_ops"],
                "published_ms": pub,
                "estimate_ms": round(est, 3),
                "rel_error": round(est / pub - 1.0, 4),
                "fit": kind,
                "n_anchors": len(rows),
                "rate_conv_mmacs": round(1e-3 / a_conv, 3) if a_conv else None,
                "rate_dw_mmacs": round(1e-3 / a_dw, 3) if a_dw else None,
                "single_rate_ms": round(single_ms, 3),
                "single_rate_rel_error": round(single_ms / pub - 1.0, 4),
                "loo_rel_error": None if loo is None else round(loo, 4),
                "source": a["source"],
                "model_source": model["source"],
            }
        )
    return out


# --------------------------------------------------------------------------------------------- budgets
def fits(target: str, flash_bytes: int, arena_bytes: int) -> dict[str, Any]:
    """Budget check of a model (flash = `.tflite` size as flashed, arena = measured TFLM arena) on `target`.

    Headrooms are budget minus need (negative = over budget). `arena_fits_psram` says whether an arena that
    does not fit internal SRAM would fit external PSRAM (slower; TFLM allows it).
    """
    prof = get_target(target)
    if flash_bytes < 0 or arena_bytes < 0:
        raise ValueError("flash_bytes and arena_bytes must be >= 0")
    flash_budget = prof.flash_bytes - prof.firmware_reserve_bytes
    flash_ok = flash_bytes <= flash_budget
    arena_ok = arena_bytes <= prof.sram_bytes
    return {
        "target": prof.name,
        "flash_budget_bytes": flash_budget,
        "arena_budget_bytes": prof.sram_bytes,
        "flash_ok": flash_ok,
        "arena_ok": arena_ok,
        "ok": flash_ok and arena_ok,
        "flash_headroom_bytes": flash_budget - flash_bytes,
        "arena_headroom_bytes": prof.sram_bytes - arena_bytes,
        "arena_fits_psram": (not arena_ok) and arena_bytes <= prof.psram_bytes,
    }



# --------------------------------------------------------------------------------------------- Cortex-M parts
@dataclass(frozen=True)
class McuPart:
    """A real Cortex-M part a firmware can be linked for: its core, clock, on-chip flash and SRAM.

    `sram_bytes` is what one linker RAM region can use: the largest block that data, bss, arena, heap and stack
    can share (the datasheet total where the SRAM is contiguous; see `note` otherwise)."""

    name: str
    cpu: str  # cortex-m4 | cortex-m7 | cortex-m55 | cortex-m0plus
    clock_mhz: int
    flash_bytes: int
    sram_bytes: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PARTS: dict[str, McuPart] = {
    p.name: p
    for p in (
        McuPart("stm32f446re", "cortex-m4", 180, 512 * KiB, 128 * KiB, "NUCLEO-F446RE; 128 KB SRAM1+2 contiguous"),
        McuPart("stm32l4r5zi", "cortex-m4", 120, 2 * MiB, 640 * KiB,
                "NUCLEO-L4R5ZI, the MLPerf Tiny reference board (the anchors' part)"),
        McuPart("nrf52840", "cortex-m4", 64, 1 * MiB, 256 * KiB, "Nordic nRF52840 (BLE SoC)"),
        McuPart("stm32h743zi", "cortex-m7", 480, 2 * MiB, 1 * MiB,
                "1 MB SRAM in total but split (512 KB AXI SRAM is the largest block); link at 1 MB is optimistic"),
        McuPart("stm32h7a3zi", "cortex-m7", 280, 2 * MiB, 1 * MiB + 384 * KiB, "NUCLEO-H7A3ZI-Q"),
        McuPart("rp2040", "cortex-m0plus", 133, 2 * MiB, 264 * KiB, "Raspberry Pi Pico: 2 MB external QSPI flash"),
        McuPart("alif-e3-he", "cortex-m55", 160, 2 * MiB, 256 * KiB + 1 * MiB,
                "Alif Ensemble E3 high-efficiency M55 core: 256 KB TCM + 1 MB SRAM0 (split)"),
    )
}


def get_part(name: str) -> McuPart:
    """The part called `name` (case-insensitive); RecipeError listing the valid names otherwise."""
    try:
        return PARTS[str(name).lower()]
    except KeyError:
        raise RecipeError(f"unknown part {name!r}; valid parts: {', '.join(PARTS)}") from None


# ----------------------------------------------------------------------- latency from instruction counts
#: Instructions per Invoke() of the two MLPerf Tiny anchor models, counted by AtalaIA's Cortex-M4 firmware
#: (TFLM + CMSIS-NN, gcc 12.2 -O2) in QEMU 7.2 with the instruction-count plugin
#: (`python benchmarks/firmware.py`, benchmarks/results/firmware.json). The published times of these models
#: (CALIBRATION, STM32L4R5 @120 MHz) then give cycles per instruction: one number per core, fitted here.
INSTRUCTION_ANCHORS: dict[str, dict[str, int]] = {
    "cortex-m4": {"resnet8": 29_863_825, "vww_mobilenet": 24_103_682},
}


def _cpi_rows(target: str, exclude_model: str | None = None) -> list[tuple[float, float]]:
    """(instructions, published cycles) of `target`'s anchors."""
    prof = TARGETS[target]
    rows = []
    for a in CALIBRATION:
        insns = INSTRUCTION_ANCHORS.get(target, {}).get(a["model"])
        if a["target"] == target and insns and a["model"] != exclude_model:
            rows.append((float(insns), a["published_ms"] * prof.clock_mhz * 1e3))
    return rows


def _cpi(rows: list[tuple[float, float]]) -> float:
    """Cycles per instruction minimising squared relative error over the anchors."""
    x = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    return float(np.sum(x / y) / np.sum((x / y) ** 2))


def cycles_per_instruction(target: str) -> float | None:
    """CPI fitted on `target`'s anchors, or None when it has no instruction-counted anchor (then no estimate)."""
    rows = _cpi_rows(target) if target in TARGETS else []
    return _cpi(rows) if rows else None


def estimate_ms_from_instructions(instructions: int, target: str, clock_mhz: float | None = None) -> float | None:
    """ESTIMATED invoke() latency in ms: instructions x CPI (fitted on the published anchors) / clock.

    The clock defaults to the anchor board's (`TARGETS[target].clock_mhz`); a part at another clock scales
    linearly, which ignores that flash wait states grow with the clock. None when `target` has no anchors."""
    cpi = cycles_per_instruction(target)
    if cpi is None:
        return None
    mhz = float(clock_mhz or TARGETS[target].clock_mhz)
    return float(instructions) * cpi / (mhz * 1e3)


def instruction_calibration() -> list[dict[str, Any]]:
    """Per anchor: instructions, CPI implied, in-sample estimate, and the leave-one-out error of a CPI fitted on
    the other anchors, next to the MAC-rate estimate's leave-one-out error (`calibration_report`)."""
    mac = {(r["target"], r["model"]): r for r in calibration_report()}
    out = []
    for target, anchors in INSTRUCTION_ANCHORS.items():
        prof = TARGETS[target]
        for a in CALIBRATION:
            if a["target"] != target or a["model"] not in anchors:
                continue
            insns = anchors[a["model"]]
            pub = a["published_ms"]
            others = _cpi_rows(target, exclude_model=a["model"])
            loo = None
            if others:
                loo = insns * _cpi(others) / (prof.clock_mhz * 1e3) / pub - 1.0
            est = estimate_ms_from_instructions(insns, target)
            m = mac[(target, a["model"])]
            out.append({
                "target": target,
                "model": a["model"],
                "instructions": insns,
                "published_ms": pub,
                "clock_mhz": prof.clock_mhz,
                "cpi_implied": round(pub * prof.clock_mhz * 1e3 / insns, 4),
                "cpi_fitted": round(float(cycles_per_instruction(target)), 4),
                "estimate_ms": round(float(est), 3),
                "rel_error": round(float(est) / pub - 1.0, 4),
                "loo_rel_error": None if loo is None else round(loo, 4),
                "mac_rate_loo_rel_error": m["loo_rel_error"],
                "mac_rate_estimate_ms": m["estimate_ms"],
                "source": a["source"],
            })
    return out
