"""Prove an int8 `.tflite` runs in TensorFlow Lite Micro: op support, arena actually used, bit-level parity.

All three facts are measured in the real TFLM runtime (the `tflite-micro` wheel runs the same C++ interpreter
and reference kernels the firmware links), not estimated:

* **Op support.** Loading fails if an op has no TFLM kernel; TFLM prints which one to C stderr
  ("Didn't find op for builtin opcode 'TOPK_V2'"). We capture that and raise `DeployError` naming the op.
* **Arena.** `print_allocations()` of the recording allocator prints
  ``[RecordingMicroAllocator] Arena allocation total N bytes`` (head = planned activations + tail = persistent
  structures) to C stderr (fd 2, not `sys.stderr`), so we redirect fd 2 to a temp file around the call.
  We confirm it with a binary search on `arena_size`: the smallest arena that loads *and* invokes, to a
  resolution of 64 B (`arena_min_bytes` is the first size found to work, so the true minimum is in
  (arena_min_bytes - 64, arena_min_bytes]). Relation seen with tflite-micro 0.dev20261023182759 on the three
  calibration models and our tiny test model: arena_min_bytes - arena_bytes = +2 .. +54 B, i.e. the minimum
  is the printed total plus a few bytes for aligning the start of the buffer. Budget `arena_bytes` plus 16 B
  (or align the firmware's static arena to 16 B).
* **Parity.** The same int8 inputs run through TFLM and through LiteRT's builtin kernels
  (`TFLiteRunner.predict_raw`, no XNNPACK); we report the largest output difference in quantization steps and
  the fraction of output values that are bit-identical. A difference of 1 step can occur because the two
  runtimes share the integer spec but not every kernel: LiteRT's builtin resolver uses the *optimized* kernels
  (ruy/gemmlowp paths, table-based or approximated SOFTMAX/LOGISTIC/TANH, AVERAGE_POOL/MEAN rounding,
  double vs single rounding in the fixed-point requantize multiplier) while TFLM uses the *reference* kernels.
  Each may round a value that lands exactly on a .5 boundary differently; that is a 1-step difference per op.
  Measured: our models converted by TF 2.21 are bit-exact (0 steps); MobileNet VWW is bit-exact; ResNet-8
  (MLPerf Tiny, older converter) shows 1-step differences on <11% of the values of some CONV_2D outputs,
  which residual ADDs (input scale > output scale) and FULLY_CONNECTED -> SOFTMAX amplify to ~17-28
  steps at the softmax output on random inputs. So "max diff <= 1" holds per op, not always end to end;
  a large end-to-end difference on a deep residual model is not by itself a bug (check per op).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atalaia.deploy.tflite import op_names
from atalaia.errors import DeployError

__all__ = ["TflmReport", "check_shared_arena", "check_tflm", "run_tflm", "tflm_runtime"]

_TOTAL_RE = re.compile(r"\[RecordingMicroAllocator\] Arena allocation total (\d+) bytes")
_HEAD_RE = re.compile(r"\[RecordingMicroAllocator\] Arena allocation head (\d+) bytes")
_TAIL_RE = re.compile(r"\[RecordingMicroAllocator\] Arena allocation tail (\d+) bytes")
_MISSING_OP_RE = re.compile(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'")
_LOAD_ARENA = 4 << 20  # generous arena for the first load (grown if a model needs more)
_MAX_ARENA = 64 << 20
_SEARCH_STEP = 64  # binary search resolution in bytes


@dataclass(frozen=True)
class TflmReport:
    """What TFLM says about one model. Byte counts are measured, not estimated."""

    ops: tuple[str, ...]  # op of every operator, in execution order
    arena_bytes: int  # printed by the recording allocator after invoke() (head + tail)
    arena_min_bytes: int  # smallest arena_size that loads and invokes (binary search, _SEARCH_STEP resolution)
    arena_head_bytes: int  # planned (non-persistent) tensors: activations and scratch
    arena_tail_bytes: int  # persistent: tensor structs, quantization params, kernel buffers
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parity_samples: int = 0
    parity_max_abs_diff_steps: int | None = None  # max |TFLM - LiteRT| of raw int8 outputs
    parity_exact_fraction: float | None = None  # fraction of output values that are bit-identical
    tflm_version: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("ops", "input_shape", "output_shape", "notes"):
            d[k] = list(d[k])
        return d


# --------------------------------------------------------------------------------------------- fd 2 capture
class _Captured:
    text: str = ""


@contextmanager
def _capture_fd2() -> Iterator[_Captured]:
    """Redirect the C-level stderr (fd 2) to a temp file; always restored, text available after the block."""
    out = _Captured()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                yield out
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
            tmp.seek(0)
            out.text = tmp.read().decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------- TFLM helpers
def tflm_runtime() -> Any:
    from tflite_micro import runtime

    return runtime


def run_tflm(blob: bytes, inputs_q: np.ndarray, arena_bytes: int, *, margin: int = 4096) -> np.ndarray:
    """Quantized inputs (N, ...) through the TFLM interpreter one at a time -> raw quantized outputs (N, ...).

    `arena_bytes` is the arena `check_tflm` measured; `margin` bytes are added as the firmware does."""
    it = tflm_runtime().Interpreter.from_bytes(blob, arena_size=int(arena_bytes) + margin)
    outs = []
    for i in range(len(inputs_q)):
        it.set_input(np.ascontiguousarray(inputs_q[i : i + 1]), 0)
        it.invoke()
        outs.append(np.asarray(it.get_output(0))[0].copy())
    return np.stack(outs) if outs else np.zeros((0,), np.int8)


def _tflm_version() -> str:
    try:
        import tflite_micro

        return str(tflite_micro.__version__)
    except Exception:  # pragma: no cover - version is informative only
        return "?"


def _zeros_input(it: Any) -> np.ndarray:
    d = it.get_input_details(0)
    return np.zeros(tuple(d["shape"]), dtype=d["dtype"])


def _try_load(blob: bytes, arena_size: int, *, invoke: bool = True) -> tuple[Any | None, str]:
    """(interpreter or None, captured C stderr). Loads, and optionally invokes once on zeros."""
    it = None
    with _capture_fd2() as cap:
        try:
            it = tflm_runtime().Interpreter.from_bytes(blob, arena_size=int(arena_size))
            if invoke:
                it.set_input(_zeros_input(it), 0)
                it.invoke()
        except (RuntimeError, ValueError):
            it = None
    return it, cap.text


def _unsupported_ops(stderr: str) -> list[str]:
    return sorted(set(_MISSING_OP_RE.findall(stderr)))


def _raise_unsupported(ops: list[str], all_ops: list[str]) -> None:
    counts = ", ".join(f"{o} (x{sum(1 for a in all_ops if a == o or a == 'CUSTOM:' + o)})" for o in ops)
    raise DeployError(
        f"TFLM has no kernel for op {counts}. Replace the Keras layer that produces it with one TFLM "
        f"supports (conv, depthwise conv, dense, pooling, add, reshape, softmax, relu...), or register a "
        f"custom kernel in the firmware. Ops in this model: {', '.join(sorted(set(all_ops)))}"
    )


def _load_generous(blob: bytes, all_ops: list[str]) -> tuple[Any, int]:
    arena = max(_LOAD_ARENA, 10 * len(blob))
    while True:
        it, err = _try_load(blob, arena)
        if it is not None:
            return it, arena
        missing = _unsupported_ops(err)
        if missing:
            _raise_unsupported(missing, all_ops)
        if arena >= _MAX_ARENA or "allocate" not in err.lower():
            raise DeployError(
                f"TFLM cannot load this model (arena {arena} B): {err.strip() or 'no message'}"
            )
        arena *= 2


def _measure_arena(it: Any) -> tuple[int, int, int]:
    with _capture_fd2() as cap:
        it.print_allocations()
    total, head, tail = (_TOTAL_RE.search(cap.text), _HEAD_RE.search(cap.text), _TAIL_RE.search(cap.text))
    if total is None:
        raise DeployError(
            "could not read the TFLM arena size from print_allocations() output "
            f"(tflite-micro {_tflm_version()} may have changed its format): {cap.text[:300]!r}"
        )
    return int(total.group(1)), int(head.group(1)) if head else -1, int(tail.group(1)) if tail else -1


def _arena_min(blob: bytes, hi: int) -> int:
    """Smallest arena (within _SEARCH_STEP) that loads and invokes; `hi` is known to work."""
    lo = 0  # known (assumed) to fail
    while hi - lo > _SEARCH_STEP:
        mid = (lo + hi) // 2
        it, _ = _try_load(blob, mid)
        if it is not None:
            hi = mid
        else:
            lo = mid
        del it
    return hi


def _parity(blob: bytes, it: Any, xq: np.ndarray, out_shape: tuple[int, ...]) -> tuple[int, float]:
    from atalaia.deploy.tflite import TFLiteRunner

    ref = TFLiteRunner(blob).predict_raw(xq)
    got = []
    for i in range(len(xq)):
        it.set_input(xq[i : i + 1], 0)
        it.invoke()
        got.append(np.asarray(it.get_output(0)).reshape(out_shape)[0].copy())
    tflm = np.stack(got)
    diff = np.abs(tflm.astype(np.int32) - ref.astype(np.int32))
    return int(diff.max()) if diff.size else 0, float(np.mean(diff == 0)) if diff.size else 1.0


# --------------------------------------------------------------------------------------------- public
def check_tflm(blob: bytes, sample_inputs_q: np.ndarray | None = None) -> TflmReport:
    """Load `blob` in the TFLM runtime, measure its arena and (optionally) check int8 parity with LiteRT.

    `sample_inputs_q`: int8 array (N, *input_shape[1:]) of already-quantized inputs (e.g.
    `TFLiteRunner(blob).quantize_input(images)`); when given, each is run in TFLM and in LiteRT's builtin
    kernels and the raw int8 outputs are compared. Raises `DeployError` for unsupported ops or bad inputs.
    If LiteRT itself cannot load the model (some old models carry quantization metadata it rejects), the
    parity fields stay None and `notes` says why.
    """
    blob = bytes(blob)
    all_ops = op_names(blob)
    it, _ = _load_generous(blob, all_ops)
    arena_total, head, tail = _measure_arena(it)
    in_d, out_d = it.get_input_details(0), it.get_output_details(0)
    in_shape = tuple(int(d) for d in in_d["shape"])
    out_shape = tuple(int(d) for d in out_d["shape"])
    arena_min = _arena_min(blob, hi=arena_total + 4 * _SEARCH_STEP)
    notes: list[str] = []

    n = 0
    max_diff: int | None = None
    exact: float | None = None
    if sample_inputs_q is not None:
        xq = np.asarray(sample_inputs_q)
        if np.dtype(in_d["dtype"]) != np.int8:
            raise DeployError(f"parity check needs an int8 model; this model's input is {in_d['dtype']}")
        if xq.dtype != np.int8:
            raise DeployError(
                f"sample_inputs_q must be int8 (quantize with TFLiteRunner.quantize_input); got {xq.dtype}"
            )
        if xq.shape == in_shape[1:]:
            xq = xq[None]
        if xq.shape[1:] != in_shape[1:]:
            raise DeployError(f"sample_inputs_q must have shape (N, {in_shape[1:]}); got {xq.shape}")
        n = len(xq)
        try:
            max_diff, exact = _parity(blob, it, xq, out_shape)
        except DeployError as e:
            n = 0
            notes.append(f"parity not checked: {e}")
    del it
    return TflmReport(
        ops=tuple(all_ops),
        arena_bytes=arena_total,
        arena_min_bytes=arena_min,
        arena_head_bytes=head,
        arena_tail_bytes=tail,
        input_shape=in_shape,
        output_shape=out_shape,
        parity_samples=n,
        parity_max_abs_diff_steps=max_diff,
        parity_exact_fraction=exact,
        tflm_version=_tflm_version(),
        notes=tuple(notes),
    )


def check_shared_arena(blobs: list[bytes], arena_size: int) -> list[int]:
    """Models that take turns in ONE arena (a firmware re-creating the interpreter in the same buffer): prove
    that each loads and invokes in TFLM with exactly `arena_size` bytes, and return the bytes each used there
    (recording allocator). DeployError naming the first model that does not fit. Measured, not assumed: the
    sequential arena must be at least the largest single-model arena, and this checks the size actually linked."""
    used = []
    for k, blob in enumerate(blobs):
        it, err = _try_load(bytes(blob), int(arena_size))
        if it is None:
            raise DeployError(f"model {k} ({len(blob)} B) does not load and invoke in a {arena_size} B arena: "
                              f"{err.strip()[:200] or 'allocation failed'}")
        used.append(_measure_arena(it)[0])
        del it
    return used
