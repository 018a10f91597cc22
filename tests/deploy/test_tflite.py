"""Conversion (float / int8, batch 1, clean graph) and the LiteRT reference runner."""

from __future__ import annotations

import numpy as np
import pytest

from atalaia.deploy.tflite import TFLiteRunner, convert_int8, op_names
from atalaia.errors import DeployError

DYNAMIC_SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "VAR_HANDLE", "READ_VARIABLE"}


def test_graphs_are_static_and_minimal(tiny_float_blob, tiny_int8_blob):
    expected = ["CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert op_names(tiny_float_blob) == expected
    assert op_names(tiny_int8_blob) == expected  # no QUANTIZE/DEQUANTIZE at the boundary either
    assert not DYNAMIC_SHAPE_OPS & set(op_names(tiny_int8_blob))


def test_int8_io_and_batch_one(tiny_int8_blob):
    r = TFLiteRunner(tiny_int8_blob)
    assert r.input_dtype == np.int8 and r.output_dtype == np.int8
    assert r.input_shape == (1, 16, 16, 1) and r.output_shape == (1, 3)
    assert r.input_scale > 0 and r.output_scale > 0
    assert -128 <= r.input_zero_point <= 127


def test_float_matches_keras(tiny_model, tiny_float_blob, tiny_images):
    r = TFLiteRunner(tiny_float_blob)
    assert r.input_dtype == np.float32
    np.testing.assert_allclose(r.predict(tiny_images), tiny_model.predict(tiny_images, verbose=0), atol=1e-4)


def test_int8_close_to_keras(tiny_model, tiny_int8_blob, tiny_images):
    r = TFLiteRunner(tiny_int8_blob)
    y = r.predict(tiny_images)
    assert y.dtype == np.float32 and y.shape == (len(tiny_images), 3)
    err = np.abs(y - tiny_model.predict(tiny_images, verbose=0)).max()
    assert err <= 8 * r.output_scale, err


def test_quantize_and_raw(tiny_int8_blob, tiny_images):
    r = TFLiteRunner(tiny_int8_blob)
    xq = r.quantize_input(tiny_images)
    assert xq.dtype == np.int8
    back = (xq.astype(np.float32) - r.input_zero_point) * r.input_scale
    assert np.abs(back - tiny_images).max() <= r.input_scale / 2 + 1e-6
    raw = r.predict_raw(xq)
    assert raw.dtype == np.int8 and raw.shape == (len(xq), 3)
    deq = (raw.astype(np.float32) - r.output_zero_point) * r.output_scale
    np.testing.assert_allclose(deq, r.predict(tiny_images), atol=1e-6)
    with pytest.raises(DeployError, match="int8"):
        r.predict_raw(tiny_images)


def test_per_tensor_option_changes_the_model(tiny_model, tiny_images, tiny_int8_blob):
    per_tensor = convert_int8(tiny_model, tiny_images[:8], per_channel=False)
    assert per_tensor != tiny_int8_blob
    assert TFLiteRunner(per_tensor).input_dtype == np.int8


def test_bad_representative_data(tiny_model):
    with pytest.raises(DeployError, match="representative"):
        convert_int8(tiny_model, np.zeros((4, 8, 8, 1), np.float32))


def test_op_names_without_interpreter(calibration_blob):
    blob = calibration_blob("person_detect.tflite")
    ops = op_names(blob)
    assert len(ops) == 31 and ops.count("DEPTHWISE_CONV_2D") == 14 and ops[-1] == "SOFTMAX"  # 1st: Cin=1 conv as DW
    with pytest.raises(DeployError, match="LiteRT cannot load"):
        TFLiteRunner(blob)  # per-axis metadata LiteRT refuses: why op_names parses the flatbuffer itself


def test_strip_strings_shrinks_keeps_outputs_and_aligns_weights(tiny_model, tiny_images, tiny_int8_blob):
    from atalaia.deploy.tflite import BUFFER_ALIGNMENT, buffer_data_offsets, model_root, strip_strings
    from atalaia.deploy.tflm import check_tflm

    named = convert_int8(tiny_model, tiny_images, strip=False)
    assert len(tiny_int8_blob) < len(named)  # stripped by default
    assert strip_strings(named) == tiny_int8_blob  # deterministic: same bytes as the default conversion
    root = model_root(tiny_int8_blob)
    g = root.Subgraphs(0)
    assert all(not g.Tensors(i).Name() for i in range(g.TensorsLength())) and root.SignatureDefsLength() == 0
    offsets = buffer_data_offsets(tiny_int8_blob)
    assert offsets and all(o % BUFFER_ALIGNMENT == 0 for o in offsets)
    assert op_names(named) == op_names(tiny_int8_blob)
    a, b = TFLiteRunner(named), TFLiteRunner(tiny_int8_blob)
    xq = a.quantize_input(tiny_images)
    assert np.array_equal(a.predict_raw(xq), b.predict_raw(xq))
    assert (a.input_scale, a.output_scale) == (b.input_scale, b.output_scale)
    rep = check_tflm(tiny_int8_blob, xq[:4])  # runs in the TFLM interpreter, bit-exact with LiteRT
    assert rep.parity_max_abs_diff_steps == 0
