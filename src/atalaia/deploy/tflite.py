"""Keras -> `.tflite` conversion (float32 and full-integer int8) and a bit-exact host runner.

Why these choices:

* **Fixed batch of 1.** A model converted with a dynamic batch dimension gains SHAPE / STRIDED_SLICE / PACK
  ops (to rebuild the reshape target at run time). TFLM supports some of them, but they cost flash, arena and
  time on the MCU for nothing. We trace a `tf.function` whose input signature is `(1, H, W, C)` and convert
  that concrete function, so every shape is static.
* **int8 in / int8 out, TFLITE_BUILTINS_INT8 only.** The MCU feeds raw int8 pixels and reads int8 scores; a
  float boundary would add QUANTIZE/DEQUANTIZE ops and float code to the firmware. Conversion fails loudly
  (instead of silently keeping a float op) if a layer has no int8 kernel.
* **Reference kernels on the host.** `TFLiteRunner` uses LiteRT with
  `OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` and one thread: XNNPACK rounds some int8 ops differently
  from the TFLM reference kernels, so only the builtin kernels make a meaningful bit-level comparison.
* **Graph inspection without an interpreter.** `op_names` parses the flatbuffer with the LiteRT schema module:
  some real models (e.g. TFLM's `person_detect`) carry per-axis quantization metadata that the LiteRT
  interpreter refuses but TFLM runs, so inspection must not depend on loading the model.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from atalaia.errors import DeployError
from atalaia.ioutil import silence_native_output

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["TFLiteRunner", "convert_float", "convert_int8", "model_root", "op_names", "opcode_name", "strip_strings"]


# --------------------------------------------------------------------------------------------- conversion
def _input_spec(model: keras.Model) -> tuple[int, ...]:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise DeployError(
            f"model {getattr(model, 'name', '?')!r} must have exactly one input to convert to .tflite "
            f"(found {0 if not inputs else len(inputs)}); build it with keras.Input(shape=(H, W, C))"
        )
    shape = tuple(inputs[0].shape)[1:]
    if any(d is None for d in shape):
        raise DeployError(
            f"model input shape {shape} has unknown dimensions; an MCU model needs a fixed (H, W, C) input"
        )
    return (1, *[int(d) for d in shape])


@contextmanager
def _converter(model: keras.Model) -> Iterator[Any]:
    """A TFLiteConverter over the model traced with a fixed batch of 1 (yielded; temp files cleaned after).

    Keras 3 is converted through its ExportArchive -> SavedModel path (the one Keras' own LiteRT export uses):
    a bare `tf.function` over a Keras 3 model keeps its weights as resource variables (VAR_HANDLE /
    READ_VARIABLE ops) instead of freezing them into constants.
    """
    import tensorflow as tf
    from keras import export as keras_export

    shape = _input_spec(model)
    with tempfile.TemporaryDirectory(prefix="atalaia-tflite-") as tmp:
        archive = keras_export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            input_signature=[tf.TensorSpec(shape, tf.float32)],
        )
        archive.write_out(tmp, verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])


def _convert(conv: Any) -> bytes:
    with silence_native_output():
        return bytes(conv.convert())


def convert_float(model: keras.Model) -> bytes:
    """Convert to a float32 `.tflite` with a fixed batch of 1 (no SHAPE/STRIDED_SLICE/PACK ops)."""
    with _converter(model) as conv:
        try:
            return _convert(conv)
        except Exception as e:  # the converter raises ConverterError / various TF errors
            raise DeployError(f"float32 TFLite conversion of {model.name!r} failed: {e}") from e


def convert_int8(model: keras.Model, representative: np.ndarray, *, per_channel: bool = True,
                 strip: bool = True) -> bytes:
    """Full-integer post-training quantization: int8 weights, activations, input and output.

    `representative` is a float32 array (N, H, W, C) of *preprocessed* inputs (exactly what the model sees);
    they are fed one at a time (batch 1) to calibrate activation ranges. A few hundred images is plenty.
    `per_channel=False` forces per-tensor weight scales (smaller metadata, usually lower accuracy).
    `strip=True` removes tensor names and signatures (`strip_strings`): flash the MCU would waste.
    """
    import tensorflow as tf

    rep = np.asarray(representative, dtype=np.float32)
    shape = _input_spec(model)
    if rep.ndim != 4 or rep.shape[1:] != shape[1:] or len(rep) == 0:
        raise DeployError(
            f"representative data must be a non-empty float array of shape (N, {', '.join(map(str, shape[1:]))})"
            f"; got {rep.shape}"
        )

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    with _converter(model) as conv:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        if not per_channel:
            conv._experimental_disable_per_channel = True
        try:
            blob = _convert(conv)
        except Exception as e:
            raise DeployError(
                f"int8 conversion of {model.name!r} failed: {e}. Every layer needs an int8 builtin kernel; "
                "replace unsupported layers (e.g. custom activations) with standard Keras layers"
            ) from e
    return strip_strings(blob) if strip else blob


BUFFER_ALIGNMENT = 16  # weight-buffer alignment written by strip_strings (the schema's force_align)


def strip_strings(blob: bytes) -> bytes:
    """Drop what TFLM never reads: tensor names, subgraph names, the description and signature defs.

    Keras-derived tensor names (``model/layer/batchnorm/mul_1;model/layer/depthwise;...``) take ~4 % of a small
    int8 model's bytes, and every byte of the `.tflite` is flash on the MCU. Operators, tensors, quantization
    and weights are untouched (outputs are bit-identical). The flatbuffer is rebuilt with every weight buffer
    16-byte aligned (the schema's force_align; the generated Python packer would use 1): an unaligned int32
    bias can fault an Xtensa core.
    """
    import flatbuffers

    schema = _schema()
    m = schema.ModelT.InitFromObj(model_root(blob))
    m.description = None
    m.signatureDefs = None
    for sg in m.subgraphs or []:
        sg.name = None
        for t in sg.tensors or []:
            t.name = None
    payloads = []
    for b in m.buffers or []:  # pack the data ourselves (aligned); the generated Pack would align to 1
        data = None if b.data is None else np.asarray(b.data, np.uint8).tobytes()
        payloads.append(data)
        b.data = None
    builder = flatbuffers.Builder(len(blob) + 1024)
    offsets = [_aligned_bytes_vector(builder, d) if d is not None else None for d in payloads]

    def pack_buffer(buf: Any, off: int | None) -> int:
        schema.BufferStart(builder)
        if off is not None:
            schema.BufferAddData(builder, off)
        schema.BufferAddOffset(builder, buf.offset)
        schema.BufferAddSize(builder, buf.size)
        return schema.BufferEnd(builder)

    packed = [pack_buffer(b, o) for b, o in zip(m.buffers or [], offsets, strict=True)]
    builder.Finish(_pack_model_with_buffers(builder, m, packed), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    if not all(a % BUFFER_ALIGNMENT == 0 for a in buffer_data_offsets(out)):
        raise DeployError("strip_strings produced an unaligned weight buffer (please report this)")
    return out


def _aligned_bytes_vector(builder: Any, data: bytes) -> int:
    builder.StartVector(1, len(data), BUFFER_ALIGNMENT)
    builder.head = builder.head - len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


def _pack_model_with_buffers(builder: Any, m: Any, packed_buffers: list[int]) -> int:
    """`ModelT.Pack` with a pre-built buffers vector (everything else from the generated code).

    The generated Pack writes fields between ModelStart and ModelEnd, so the only way to hand it our aligned
    buffers is to swap `ModelAddBuffers` for the duration of the call."""
    schema = _schema()
    schema.ModelStartBuffersVector(builder, len(packed_buffers))
    for off in reversed(packed_buffers):
        builder.PrependUOffsetTRelative(off)
    buffers_vec = builder.EndVector()
    orig_add = schema.ModelAddBuffers
    try:
        schema.ModelAddBuffers = lambda b, _unused: orig_add(b, buffers_vec)
        m.buffers = []  # non-None so Pack calls ModelAddBuffers (with our vector); empty so it builds nothing
        return m.Pack(builder)
    finally:
        schema.ModelAddBuffers = orig_add


def buffer_data_offsets(blob: bytes) -> list[int]:
    """Absolute byte offsets of every non-empty weight buffer's data in a `.tflite` (for alignment checks)."""
    root = model_root(blob)
    out = []
    for i in range(root.BuffersLength()):
        b = root.Buffers(i)
        o = b._tab.Offset(4)  # field `data`
        if o and b.DataLength():
            out.append(b._tab.Vector(o))
    return out


# --------------------------------------------------------------------------------------------- graph parsing
def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def model_root(blob: bytes) -> Any:
    try:
        return _schema().Model.GetRootAs(blob, 0)
    except Exception as e:
        raise DeployError(f"not a valid .tflite flatbuffer ({len(blob)} bytes): {e}") from e


def opcode_name(model: Any, opcode_index: int) -> str:
    oc = model.OperatorCodes(opcode_index)
    # builtin_code (int32) is 0 in old files that only set deprecated_builtin_code (int8): take the max.
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    name = _builtin_names().get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        custom = oc.CustomCode()
        return f"CUSTOM:{custom.decode() if custom else '?'}"
    return name


def op_names(blob: bytes) -> list[str]:
    """Builtin op name of every operator in the graph, in execution order (all subgraphs, duplicates kept).

    Parsed from the flatbuffer directly (never through an interpreter). `len(op_names(b))` is the op count.
    Custom ops appear as ``CUSTOM:<custom_code>``.
    """
    m = model_root(blob)
    names: list[str] = []
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            names.append(opcode_name(m, sg.Operators(i).OpcodeIndex()))
    return names


# --------------------------------------------------------------------------------------------- host runner
class TFLiteRunner:
    """Run a `.tflite` on the host with LiteRT builtin (reference) kernels, one thread, one sample at a time.

    `predict` takes and returns float32 (quantizing/dequantizing at the int8 boundary with the model's own
    scale and zero point); `predict_raw` takes and returns the raw int8 tensors, for bit-level parity checks.
    """

    def __init__(self, blob: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        try:
            self._it = Interpreter(
                model_content=bytes(blob),
                num_threads=1,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            self._it.allocate_tensors()
        except Exception as e:
            raise DeployError(f"LiteRT cannot load this .tflite: {e}") from e
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise DeployError(f"expected one input and one output tensor, got {len(ins)} and {len(outs)}")
        self._in, self._out = ins[0], outs[0]

    # -- tensor metadata
    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._out["dtype"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._out["shape"])

    @property
    def input_scale(self) -> float:
        return float(self._in["quantization"][0])

    @property
    def input_zero_point(self) -> int:
        return int(self._in["quantization"][1])

    @property
    def output_scale(self) -> float:
        return float(self._out["quantization"][0])

    @property
    def output_zero_point(self) -> int:
        return int(self._out["quantization"][1])

    # -- running
    def _batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        sample = self.input_shape[1:]
        if x.shape == sample:
            x = x[None]
        if x.shape[1:] != sample:
            raise DeployError(f"input batch must have shape (N, {', '.join(map(str, sample))}); got {x.shape}")
        return x

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 -> int8 with the input tensor's scale/zero point (round half away from zero, clipped)."""
        if self.input_dtype != np.int8:
            raise DeployError(f"model input is {self.input_dtype}, not int8: nothing to quantize")
        q = np.round(np.asarray(x, dtype=np.float32) / self.input_scale) + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x)):
            self._it.set_tensor(self._in["index"], x[i : i + 1])
            self._it.invoke()
            outs.append(self._it.get_tensor(self._out["index"])[0].copy())
        return np.stack(outs) if outs else np.zeros((0, *self.output_shape[1:]), self.output_dtype)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float32 batch in, float32 batch out (dequantized if the model is int8)."""
        x = self._batch(np.asarray(x, dtype=np.float32))
        if self.input_dtype == np.int8:
            x = self.quantize_input(x)
        else:
            x = x.astype(self.input_dtype, copy=False)
        return self.dequantize_output(self._run(x))

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Raw model outputs -> float32 ((q - zero point) * scale for an int8 output)."""
        if self.output_dtype == np.int8:
            return (np.asarray(y).astype(np.float32) - self.output_zero_point) * self.output_scale
        return np.asarray(y).astype(np.float32, copy=False)

    def predict_raw(self, x_q: np.ndarray) -> np.ndarray:
        """Raw int8 batch in, raw int8 batch out (no (de)quantization): the bits TFLM should reproduce."""
        x_q = self._batch(x_q)
        if self.input_dtype != np.int8 or x_q.dtype != np.int8:
            raise DeployError(
                f"predict_raw needs an int8 model and int8 inputs (model input {self.input_dtype}, "
                f"given {x_q.dtype}); use predict() for float data"
            )
        return self._run(x_q)
