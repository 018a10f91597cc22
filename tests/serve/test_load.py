"""The load-test script end to end, short: `atalaia serve` in a subprocess, concurrent clients, zero errors.
(The committed figures come from `python benchmarks/app.py`, 20 s per phase; this run only checks the
harness and that the service stays error-free under concurrency.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("httpx")
REPO = Path(__file__).resolve().parents[2]
LFW = next((p / "datasets" / "lfw" for p in (REPO.parent / "shared", Path("/work/shared"))
            if (p / "datasets" / "lfw" / "chips112_gray").is_dir()), None)


@pytest.mark.slow
@pytest.mark.skipif(LFW is None, reason="needs ../shared/datasets/lfw/chips112_gray")
def test_load_harness_zero_errors(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_app", REPO / "benchmarks" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = mod.main(["--clients", "4", "--seconds", "3", "--lfw", str(LFW), "--out", str(tmp_path / "app.json"),
                    "--work", str(tmp_path / "work")])
    assert (tmp_path / "app.json").is_file()
    for ph in doc["phases"]:
        assert ph["errors"] == 0 and ph["requests_ok"] > 0, ph
        lat = ph["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert doc["decisions_logged"] == sum(ph["requests_ok"] for ph in doc["phases"])
