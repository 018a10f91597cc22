"""Target profiles, budget checks and the calibrated latency estimate."""

from __future__ import annotations

import pytest

from atalaia.deploy import targets
from atalaia.errors import RecipeError
from atalaia.evaluate.profile import count_macs

REL_TOL = 0.05  # stated tolerance of the estimate at its calibration anchors


def test_required_targets_exist_and_have_anchors():
    names = targets.target_names()
    for t in ("esp32", "esp32s3", "esp32c3", "cortex-m4", "cortex-m7"):
        assert t in names
    anchored = {a["target"] for a in targets.CALIBRATION}
    assert set(names) == anchored
    assert all(a["source"] for a in targets.CALIBRATION)


def test_calibration_within_tolerance_and_labelled():
    rep = targets.calibration_report()
    assert len(rep) == len(targets.CALIBRATION)
    for row in rep:
        assert abs(row["rel_error"]) <= REL_TOL, row
        assert abs(row["estimate_ms"] / row["published_ms"] - 1) <= REL_TOL
        if row["n_anchors"] == 1:
            assert "single rate" in row["fit"] and row["loo_rel_error"] is None
        else:
            assert row["loo_rel_error"] is not None
    m4 = [r for r in rep if r["target"] == "cortex-m4"]
    # a single MMAC/s rate cannot fit conv-heavy ResNet-8 and depthwise-heavy MobileNet together
    assert max(abs(r["single_rate_rel_error"]) for r in m4) > 0.1
    assert m4[0]["rate_dw_mmacs"] < m4[0]["rate_conv_mmacs"]  # reference depthwise is slower per MAC


def test_anchor_macs_match_the_real_files(calibration_blob):
    for name, m in targets._MODELS.items():
        got = count_macs(calibration_blob(m["file"]))
        assert {k: got["by_op"][k] for k in m["macs"]} == m["macs"], name
        assert got["n_ops"] == m["n_ops"], name


def test_estimate_behaves(tiny_macs):
    small = targets.estimate_latency_ms(tiny_macs, 4, "esp32s3")
    assert 0 < small < 1.0
    double = {k: 2 * v for k, v in tiny_macs.items()}
    assert targets.estimate_latency_ms(double, 4, "esp32s3") > small
    assert targets.estimate_latency_ms(tiny_macs, 4, "esp32") > small  # slower chip
    with pytest.raises(RecipeError, match="esp32s3"):
        targets.estimate_latency_ms(tiny_macs, 4, "esp8266")
    with pytest.raises(ValueError):
        targets.estimate_latency_ms({"by_op": tiny_macs}, 4, "esp32")  # whole count_macs dict by mistake


def test_fits_budgets():
    p = targets.get_target("esp32")
    ok = targets.fits("esp32", 300_000, 85_264)
    assert ok["ok"] and ok["arena_headroom_bytes"] == p.sram_bytes - 85_264
    assert ok["flash_headroom_bytes"] == p.flash_bytes - p.firmware_reserve_bytes - 300_000
    big = targets.fits("esp32", 300_000, p.sram_bytes + 1)
    assert not big["arena_ok"] and not big["ok"] and big["arena_headroom_bytes"] == -1
    assert targets.fits("esp32s3", 0, 400 * 1024)["arena_fits_psram"]
    with pytest.raises(RecipeError):
        targets.fits("nope", 1, 1)
