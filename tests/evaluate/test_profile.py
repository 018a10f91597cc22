"""MACs from the .tflite graph (hand-computed and published models), params, host latency, gzip size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from atalaia.evaluate.profile import count_macs, count_params, gzip_size, host_latency_ms

CAL = Path(os.environ.get("ATALAIA_CALIBRATION_DIR", "/work/shared/calibration"))


@pytest.fixture(scope="module")
def tiny():
    """16x16x1 -> Conv(4,3x3,s2,valid) 7x7x4 -> DW 3x3 same -> Flatten 196 -> Dense 3."""
    import keras

    from atalaia.deploy.tflite import convert_int8

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(16, 16, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    rep = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
    return model, convert_int8(model, rep)


def test_tiny_macs_hand_computed(tiny):
    m = count_macs(tiny[1])
    assert m["by_op"] == {
        "CONV_2D": 7 * 7 * 4 * 3 * 3 * 1,  # 1764
        "DEPTHWISE_CONV_2D": 7 * 7 * 4 * 3 * 3,  # 1764
        "FULLY_CONNECTED": 196 * 3,  # 588
        "RESHAPE": 0,
    }
    assert m["total"] == 4116 and m["n_ops"] == 4


@pytest.mark.parametrize(
    "filename, total, conv, dw",
    [
        ("person_detect.tflite", 7_157_888, 6_193_664, 964_224),
        ("mlperf_tiny_ic_resnet8_int8.tflite", 12_501_632, None, 0),
        ("mlperf_tiny_vww_mobilenet_int8.tflite", 7_489_664, None, None),
    ],
)
def test_calibration_macs_exact(filename, total, conv, dw):
    path = CAL / filename
    if not path.is_file():
        pytest.skip(f"{path} not present")
    m = count_macs(path.read_bytes())
    assert m["total"] == total
    if conv is not None:
        assert m["by_op"]["CONV_2D"] == conv
    if dw is not None:
        assert m["by_op"]["DEPTHWISE_CONV_2D"] == dw


def test_params(tiny):
    model = tiny[0]
    assert count_params(model) == (9 * 4 + 4) + (9 * 4 + 4) + (196 * 3 + 3) == model.count_params()


def test_host_latency_and_gzip(tiny):
    blob = tiny[1]
    ms = host_latency_ms(blob, runs=5, warmup=1)
    assert 0 < ms < 100
    assert gzip_size(blob) == gzip_size(blob) and 0 < gzip_size(blob) < len(blob)
    assert gzip_size(bytes(10_000)) < 100
    with pytest.raises(ValueError):
        host_latency_ms(blob, runs=0)
