"""The face detector's architecture: builtin int8 ops only, TFLM parity in int8 steps, the issue's budgets at the
recipe's input, and target encoding."""

from __future__ import annotations

import numpy as np

from atalaia.config import load_recipe
from atalaia.deploy.tflite import TFLiteRunner, convert_int8
from atalaia.deploy.tflm import check_tflm
from atalaia.evaluate import profile
from atalaia.models.detector import HEAD_CHANNELS, build_detector, encode_targets

RECIPE = __import__("pathlib").Path(__file__).resolve().parents[2] / "src" / "atalaia" / "recipes" / "detection.yaml"


def test_int8_detector_runs_in_tflm_within_budgets():
    r = load_recipe(RECIPE, {"detection.frames_root": "/nonexistent"})  # architecture only: no data read
    hw = tuple(r.data.image_size)
    m = build_detector((*hw, 1), width=r.student.width)
    rng = np.random.default_rng(0)
    # non-trivial weights and BN statistics, so the int8 outputs are not all one value
    for layer in m.layers:
        w = layer.get_weights()
        if w:
            layer.set_weights([rng.normal(0, 0.3, x.shape).astype(np.float32) if x.ndim > 1 else
                               np.abs(rng.normal(1, 0.2, x.shape)).astype(np.float32) for x in w])
    rep = rng.random((24, *hw, 1)).astype(np.float32)
    blob = convert_int8(m, rep, per_channel=True, strip=True)
    runner = TFLiteRunner(blob)
    rep_q = runner.quantize_input(rep[:4])
    t = check_tflm(blob, rep_q)
    assert set(t.ops) <= {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert tuple(t.output_shape)[-3:] == (hw[0] // 8, hw[1] // 8, HEAD_CHANNELS)
    assert t.parity_max_abs_diff_steps is not None and t.parity_max_abs_diff_steps <= 1
    assert np.unique(runner.predict_raw(rep_q)).size > 20
    macs = profile.count_macs(blob)["total"]
    assert macs <= 15_000_000 and len(blob) <= 150 * 1024 and t.arena_bytes <= 100 * 1024


def test_encode_targets_marks_one_centre_per_face():
    boxes = [np.array([[10, 10, 40, 40], [60, 20, 76, 36]], np.float32), np.zeros((0, 4), np.float32)]
    lms = [np.zeros((2, 5, 2), np.float32) + np.array([[[25, 25]], [[68, 28]]], np.float32),
           np.zeros((0, 5, 2), np.float32)]
    y = encode_targets(boxes, lms, (96, 128))
    assert y.shape == (2, 12, 16, 16)
    assert y[0, ..., 1].sum() == 2 and y[1].max() == 0
    assert y[0, 3, 3, 0] == 1.0 and y[0, 3, 8, 0] == 1.0  # centres (25, 25) and (68, 28) -> cells (3, 3), (3, 8)
    assert np.all(y[0, ..., 0] <= 1.0) and 0 < y[0, 4, 4, 0] < 1.0  # Gaussian around the centre
