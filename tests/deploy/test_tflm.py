"""TFLM check: arena measured two ways, parity with LiteRT, unsupported ops, fd hygiene."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from atalaia.deploy import tflm
from atalaia.deploy.tflite import TFLiteRunner, convert_float
from atalaia.errors import DeployError


@pytest.fixture(scope="module")
def tiny_report(tiny_int8_blob, tiny_images):
    xq = TFLiteRunner(tiny_int8_blob).quantize_input(tiny_images)
    return tflm.check_tflm(tiny_int8_blob, xq)


def test_arena_measured_and_confirmed(tiny_report):
    r = tiny_report
    assert r.arena_bytes > 0 and r.arena_bytes == r.arena_head_bytes + r.arena_tail_bytes
    # Observed relation: binary-search minimum = printed total + a few bytes of buffer alignment,
    # resolved to the search step (64 B).
    assert r.arena_bytes <= r.arena_min_bytes <= r.arena_bytes + 64 + 16, (r.arena_bytes, r.arena_min_bytes)
    assert list(r.ops) == ["CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert r.input_shape == (1, 16, 16, 1) and r.output_shape == (1, 3)


def test_parity_with_litert(tiny_report, tiny_images):
    assert tiny_report.parity_samples == len(tiny_images)
    assert tiny_report.parity_max_abs_diff_steps is not None and tiny_report.parity_max_abs_diff_steps <= 1
    assert tiny_report.parity_exact_fraction >= 0.9
    json.dumps(tiny_report.to_dict())  # serialisable as is


@pytest.mark.parametrize(
    "filename, arena",
    [
        ("person_detect.tflite", 85_264),
        ("mlperf_tiny_ic_resnet8_int8.tflite", 55_984),
        ("mlperf_tiny_vww_mobilenet_int8.tflite", 103_680),
    ],
)
def test_calibration_arenas_match_readme(filename, arena, calibration_blob):
    r = tflm.check_tflm(calibration_blob(filename))
    assert r.arena_bytes == arena
    assert abs(r.arena_min_bytes - arena) <= 256


def test_parity_skipped_with_note_when_litert_refuses(calibration_blob):
    blob = calibration_blob("person_detect.tflite")
    r = tflm.check_tflm(blob, np.zeros((2, 96, 96, 1), np.int8))
    assert r.parity_max_abs_diff_steps is None and r.parity_samples == 0
    assert any("LiteRT cannot load" in n for n in r.notes)


def test_unsupported_op_is_named():
    import keras

    inp = keras.Input((8,))
    out = keras.ops.sort(keras.layers.Dense(8)(inp), axis=-1)  # -> TOPK_V2, no TFLM kernel
    blob = convert_float(keras.Model(inp, out))
    with pytest.raises(DeployError, match="TOPK_V2"):
        tflm.check_tflm(blob)


def test_bad_sample_inputs(tiny_int8_blob, tiny_float_blob, tiny_images):
    with pytest.raises(DeployError, match="int8"):
        tflm.check_tflm(tiny_int8_blob, tiny_images)  # float given
    with pytest.raises(DeployError, match="int8 model"):
        tflm.check_tflm(tiny_float_blob, np.zeros((1, 16, 16, 1), np.int8))


def test_no_fd_leak_and_stderr_restored(tiny_int8_blob):
    before = os.fstat(2)
    n_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        tflm.check_tflm(tiny_int8_blob)
    with pytest.raises(ZeroDivisionError):
        with tflm._capture_fd2():
            1 / 0  # noqa: B018
    after = os.fstat(2)
    assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)
    assert len(os.listdir("/proc/self/fd")) == n_fds
