"""benchmarks/lfw.py keeps one entry per tier in results/lfw.json and checks each against its own targets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _lfw():
    spec = importlib.util.spec_from_file_location("bench_lfw", REPO / "benchmarks" / "lfw.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(tier, float_acc, int8_acc, flash, macs):
    base = {"tier": tier, "arena_bytes": 150_000, "flash_bytes": flash, "macs": macs}
    return [{**base, "stage": "teacher", "lfw_acc_mean": 0.986}, {**base, "stage": "student", "lfw_acc_mean": float_acc},
            {**base, "stage": "int8_tflm", "lfw_acc_mean": int8_acc}]


def test_rows_of_each_tier_are_kept_and_checked_against_that_tier(tmp_path):
    lfw = _lfw()
    out = tmp_path / "lfw.json"
    out.write_text(json.dumps({"benchmark": "lfw", "rows": [{"stage": "student"}], "checks": {}}))  # pre-tier file
    m_rows = _rows("M", 0.978, 0.976, 600_000, 28_000_000)
    t, c = lfw.tier_checks(m_rows, "M", per_face=2)
    assert all(c.values()) and t["macs_per_face_max"] == 60_000_000
    out.write_text(json.dumps(lfw.merge_tiers(out, "M", {"rows": m_rows, "checks": c})))
    s_rows = _rows("S", 0.962, 0.957, 600_000, 16_000_000)  # too big for S, int8 0.5 points below float
    _, c = lfw.tier_checks(s_rows, "S", per_face=2)
    assert not c["int8_flash_ok"] and not c["int8_macs_per_face_ok"] and not c["int8_within_0.3pp_of_float"]
    assert not c["int8_lfw_target_ok"] and c["int8_arena_ok"]
    merged = lfw.merge_tiers(out, "S", {"rows": s_rows, "checks": c})
    assert [r["tier"] for r in merged["rows"]] == ["S"] * 3 + ["M"] * 3  # S first, M kept
    assert set(merged["tiers"]) == {"S", "M"} and merged["before_tiers"]["rows"] == [{"stage": "student"}]
    assert [r["stage"] for r in merged["rows"][:3]] == ["teacher", "student", "int8_tflm"]  # row names unchanged
