"""Rafael students: the thesis' shape facts (800 flattened features at 40x40, conv counts per variant), full-int8
conversion, and a real TFLM run (arena measured, parity with LiteRT)."""

from __future__ import annotations

import numpy as np
import pytest

from atalaia.deploy.tflite import TFLiteRunner, convert_int8, op_names
from atalaia.deploy.tflm import check_tflm
from atalaia.evaluate.profile import count_params
from atalaia.models import create_model

CONVS = {"rafael_base": 3, "rafael_1": 4, "rafael_2": 5, "rafael_3": 6}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_shape_facts(name):
    m = create_model(name, num_classes=100, input_shape=(40, 40, 1))
    convs = [layer for layer in m.layers if layer.__class__.__name__ == "Conv2D"]
    pools = [layer for layer in m.layers if layer.__class__.__name__ == "MaxPooling2D"]
    assert len(convs) == CONVS[name] and len(pools) == 3
    assert m.get_layer("flatten").output.shape[-1] == 800  # 5 x 5 x 32, the thesis' figure
    assert {c.filters for c in convs} <= {32, 64}
    if name == "rafael_1":
        assert convs[0].kernel_size == (9, 9)
    # params: the base is about Silva's 59 KB int8 model size (see the module docstring)
    n = count_params(m)
    assert (60_000 if name == "rafael_base" else 65_000) < n < 200_000, n


def test_params_grow_with_the_added_convs():
    p = {k: count_params(create_model(k, num_classes=10, input_shape=(40, 40, 1))) for k in CONVS}
    assert p["rafael_base"] < p["rafael_1"] < p["rafael_3"] and p["rafael_base"] < p["rafael_2"] < p["rafael_3"]


@pytest.mark.parametrize("name", ["rafael_base", "rafael_3"])
def test_int8_runs_in_tflm(name):
    m = create_model(name, num_classes=10, input_shape=(40, 40, 1))
    x = np.random.default_rng(0).uniform(0, 1, (16, 40, 40, 1)).astype(np.float32)
    blob = convert_int8(m, x)
    ops = set(op_names(blob))
    assert ops <= {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"}, ops
    r = TFLiteRunner(blob)
    assert r.input_dtype == np.int8
    # int8 flash is about a byte per weight plus graph overhead
    assert 0.9 * count_params(m) < len(blob) < 1.3 * count_params(m) + 20_000
    rep = check_tflm(blob, r.quantize_input(x[:4]))
    assert 0 < rep.arena_bytes < 200_000
    assert rep.parity_samples == 4 and rep.parity_max_abs_diff_steps is not None
    assert rep.parity_max_abs_diff_steps <= 1
