"""Golden metrics (benchmarks/golden.json): the architecture facts of the default and face recipes' models —
params, MACs, flash as flashed, TFLM arena — must not move. Regenerate with `python benchmarks/golden.py --write`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _golden_module():
    spec = importlib.util.spec_from_file_location("golden", REPO / "benchmarks" / "golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_architecture_facts_match_golden():
    g = _golden_module()
    golden = json.loads(g.GOLDEN.read_text())
    got = g.architecture_facts()
    assert set(got) == set(golden["architecture"])
    for name, want in golden["architecture"].items():
        for k, v in want.items():
            if k == "flash_bytes" and "int8" not in name:  # float files keep layer names
                assert abs(got[name][k] - v) <= golden["tolerance"]["float_flash_bytes"], (name, k, got[name][k], v)
            else:
                assert got[name][k] == v, (name, k, got[name][k], v)


def test_compare_flags_a_moved_number():
    g = _golden_module()
    golden = json.loads(g.GOLDEN.read_text())
    run = {s: dict(v) for s, v in golden["default_run"].items()}
    assert g.compare(golden, run) == []
    run["int8"]["arena_bytes"] += 16
    run["teacher"]["accuracy"] += 2 * golden["tolerance"]["accuracy"]
    bad = g.compare(golden, run)
    assert any("int8.arena_bytes" in b for b in bad) and any("teacher.accuracy" in b for b in bad)
