"""N self-test inputs for a firmware, and the host's int8 outputs for them.

Run folders keep one self-test input (`self_test.npz`). A firmware check on one input can miss a kernel that
is wrong only for some values (saturation, padding borders, a rounding tie), so the firmware embeds N >= 8:
the stored input, its mirror image, two one-pixel shifts, and inputs with deterministic noise of growing
amplitude around it (seeded), plus one input spanning the whole int8 range. The expected outputs come from
the `tflite_micro` Python runtime: the same TFLM C++ interpreter the firmware links, with reference kernels,
so "bit-exact" means the firmware's kernels (CMSIS-NN or reference, on the emulated core) reproduce
TFLM's reference arithmetic exactly.
"""

from __future__ import annotations

import numpy as np

from atalaia.errors import DeployError

__all__ = ["derive_inputs", "tflm_outputs", "self_test_set"]


def derive_inputs(stored_q: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """(n, *input) int8: `stored_q` (one input, with or without a batch axis of 1) and n-1 deterministic
    variants of it (see the module docstring)."""
    x = np.asarray(stored_q)
    if x.dtype != np.int8:
        raise DeployError(f"self-test input must be int8, got {x.dtype}")
    x = x[0] if x.ndim >= 2 and x.shape[0] == 1 else x
    if n < 1:
        raise DeployError(f"self-test needs n >= 1 inputs, got {n}")
    rng = np.random.default_rng(seed)
    wide = x.astype(np.int16)
    out = [wide]
    if x.ndim >= 2:  # images (H, W[, C]): mirror and shifts
        out += [wide[:, ::-1], np.roll(wide, 1, axis=1), np.roll(wide, 1, axis=0)]
    out.append(rng.integers(-128, 128, size=x.shape))  # the whole int8 range
    k = 1
    while len(out) < n:
        out.append(wide + rng.integers(-8 * k, 8 * k + 1, size=x.shape))
        k += 1
    return np.clip(np.stack(out[:n]), -128, 127).astype(np.int8)


def tflm_outputs(blob: bytes, inputs_q: np.ndarray) -> np.ndarray:
    """int8 outputs (N, *output) of the `tflite_micro` Python runtime (TFLM, reference kernels)."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(blob), arena_size=max(4 << 20, 10 * len(blob)))
    outs = []
    for xi in np.asarray(inputs_q):
        it.set_input(xi[None], 0)
        it.invoke()
        outs.append(np.asarray(it.get_output(0))[0].copy())
    return np.stack(outs)


def self_test_set(blob: bytes, stored_q: np.ndarray, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, expected outputs), both int8 with a leading N axis."""
    x = derive_inputs(stored_q, n, seed)
    return x, tflm_outputs(blob, x)
