"""Model cost measured from the artefacts themselves: MACs from the `.tflite` graph, parameters, host latency.

MACs are counted from the flatbuffer (tensor shapes of the converted graph), not from the Keras model, so they
describe exactly what the MCU executes (after BatchNorm folding, fused activations, fixed batch of 1) and work
for third-party models that no interpreter on the host can load (e.g. TFLM's `person_detect`).

Counting convention (the one the calibration table uses, "conv+dw+fc"):
  CONV_2D            out_elems(N*Ho*Wo*Cout) * Kh * Kw * Cin_per_group   (filter [Cout, Kh, Kw, Cin/groups])
  DEPTHWISE_CONV_2D  out_elems(N*Ho*Wo*Cout) * Kh * Kw                   (filter [1, Kh, Kw, Cout])
  FULLY_CONNECTED    out_elems * K                                       (weights [units, K])
Every other op (ADD, pooling, RESHAPE, SOFTMAX, ...) is listed with 0 MACs; its cost goes into the per-op
overhead of the latency estimate (`atalaia.deploy.targets`).
"""

from __future__ import annotations

import gzip
import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from atalaia.deploy.tflite import model_root, opcode_name

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["MAC_OPS", "count_macs", "count_params", "host_latency_ms", "gzip_size"]

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _shape(sg: Any, tensor_index: int) -> tuple[int, ...]:
    t = sg.Tensors(tensor_index)
    return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()


def count_macs(blob: bytes) -> dict[str, Any]:
    """Multiply-accumulates per inference, counted from the `.tflite` graph.

    Returns ``{"by_op": {op_type: macs, ...}, "total": int, "n_ops": int}``: `by_op` has an entry for every op
    type present in the graph (0 for op types that are not CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED) and
    always the three MAC op types; `n_ops` is the number of operators (all subgraphs).
    """
    m = model_root(blob)
    by_op: dict[str, int] = {k: 0 for k in MAC_OPS}
    n_ops = 0
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            name = opcode_name(m, op.OpcodeIndex())
            n_ops += 1
            macs = 0
            if name in MAC_OPS:
                out = _shape(sg, int(op.Outputs(0)))
                w = _shape(sg, int(op.Inputs(1)))
                out_elems = int(np.prod(out, dtype=np.int64)) if out else 0
                if name == "CONV_2D":  # filter [Cout, Kh, Kw, Cin/groups]
                    macs = out_elems * w[1] * w[2] * w[3]
                elif name == "DEPTHWISE_CONV_2D":  # filter [1, Kh, Kw, Cout]
                    macs = out_elems * w[1] * w[2]
                else:  # FULLY_CONNECTED weights [units, K]
                    macs = out_elems * w[-1]
            by_op[name] = by_op.get(name, 0) + int(macs)
    return {"by_op": by_op, "total": int(sum(by_op.values())), "n_ops": n_ops}


def count_params(model: keras.Model) -> int:
    """Number of weights of a Keras model (trainable + non-trainable, e.g. BatchNorm statistics)."""
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def host_latency_ms(blob: bytes, runs: int = 50, warmup: int = 5) -> float:
    """Median host latency (ms) of one invoke() with LiteRT builtin kernels, 1 thread, batch 1.

    A relative number for comparing models on this machine, not an MCU latency. The input is zeros (latency of
    these kernels does not depend on the data).
    """
    from atalaia.deploy.tflite import TFLiteRunner

    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    r = TFLiteRunner(blob)
    it, idx = r._it, r._in["index"]
    it.set_tensor(idx, np.zeros(r.input_shape, r.input_dtype))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def gzip_size(blob: bytes) -> int:
    """Size of the blob gzip-compressed (level 9, mtime 0 so it is deterministic).

    Only an indicator of weight redundancy (e.g. after unstructured pruning): the MCU flashes the raw blob.
    """
    return len(gzip.compress(bytes(blob), compresslevel=9, mtime=0))
