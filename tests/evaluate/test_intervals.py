import math

import numpy as np
import pytest

from atalaia.evaluate.intervals import (
    accuracy_interval,
    bootstrap_macro_f1,
    compare_models,
    mcnemar_exact,
    paired_bootstrap,
    wilson_interval,
)
from atalaia.evaluate.metrics import classification_metrics


def test_wilson_hand_computed():
    # 76/80, z = 1.96: centre = (0.95 + z^2/160) / (1 + z^2/80) = 0.92938,
    # half = z * sqrt(0.95*0.05/80 + z^2/25600) / (1 + z^2/80) = 0.05100
    iv = wilson_interval(76, 80)
    assert iv.value == pytest.approx(0.95)
    assert iv.low == pytest.approx(0.92938 - 0.05100, abs=2e-4)
    assert iv.high == pytest.approx(0.92938 + 0.05100, abs=2e-4)
    assert iv.method == "wilson"


def test_wilson_edges_and_level():
    full = wilson_interval(80, 80)
    assert full.high == 1.0 and full.low == pytest.approx(80 / (80 + 1.959964**2), abs=1e-6)
    zero = wilson_interval(0, 10)
    assert zero.low == 0.0 and zero.high > 0.2
    assert wilson_interval(76, 80, level=0.99).low < wilson_interval(76, 80).low
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_mcnemar_hand_computed_binomial():
    a = np.array([1] * 10 + [1] * 1 + [0] * 6 + [0] * 3, bool)  # a_only = 1
    b = np.array([1] * 10 + [0] * 1 + [1] * 6 + [0] * 3, bool)  # b_only = 6
    p, a_only, b_only = mcnemar_exact(a, b)
    assert (a_only, b_only) == (1, 6)
    assert p == pytest.approx(2 * (math.comb(7, 0) + math.comb(7, 1)) / 2**7)  # 0.125
    p2, _, _ = mcnemar_exact(np.zeros(10, bool), np.ones(10, bool))
    assert p2 == pytest.approx(2 / 1024)
    assert mcnemar_exact(a, a)[0] == 1.0


def test_paired_bootstrap_detects_a_real_gain_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 400)
    a = np.where(rng.random(400) < 0.70, y, (y + 1) % 10)
    b = a.copy()
    wrong = np.flatnonzero(a != y)
    b[wrong[: len(wrong) // 2]] = y[wrong[: len(wrong) // 2]]  # B fixes half of A's errors, breaks none
    d = paired_bootstrap(y, a, b, n_boot=500)
    assert d.diff.value == pytest.approx(np.mean(b == y) - np.mean(a == y))
    assert d.significant and d.diff.low > 0 and d.p_value < 1e-6 and d.a_only == 0
    same = paired_bootstrap(y, a, a, n_boot=500)
    assert not same.significant and same.p_value == 1.0
    flip = paired_bootstrap(y, b, a, n_boot=500)
    assert flip.significant and flip.diff.high < 0


def test_small_difference_on_80_images_is_not_significant():
    y = np.arange(80) % 40
    a = y.copy()
    a[:4] = (y[:4] + 1) % 40  # 76/80
    b = y.copy()
    b[4:6] = (y[4:6] + 1) % 40  # 78/80: +2.5 pp
    d = paired_bootstrap(y, a, b, n_boot=1000)
    assert d.diff.value == pytest.approx(0.025)
    assert not d.significant and d.p_value > 0.05
    assert "not significant" in d.fmt()


def test_bootstrap_macro_f1_brackets_point_and_matches_metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 8, 200)
    p = np.where(rng.random(200) < 0.8, y, rng.integers(0, 8, 200))
    iv = bootstrap_macro_f1(y, p, 8, n_boot=300)
    assert iv.value == pytest.approx(classification_metrics(y, p, 8)["macro_f1"])
    assert iv.low < iv.value < iv.high and iv.high - iv.low < 0.2
    acc = accuracy_interval(y, p)
    assert acc.low < acc.value < acc.high


def test_compare_models_report_shape_and_errors():
    y = np.array([0, 1, 2, 0, 1, 2] * 5)
    r = compare_models(y, y, (y + 1) % 3, 3, n_boot=200)
    assert r["accuracy_diff"]["diff"]["value"] == pytest.approx(-1.0)
    assert r["accuracy_diff"]["significant"] is True
    with pytest.raises(ValueError):
        paired_bootstrap(y, y, y[:-1])
    with pytest.raises(ValueError):
        paired_bootstrap(y, y, y, metric="macro_f1")
