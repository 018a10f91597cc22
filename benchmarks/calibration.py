"""Check the latency model and the TFLM measurements against the real calibration models.

Usage: .venv/bin/python benchmarks/calibration.py [CALIBRATION_DIR]   (default: <repo>/../shared/calibration)
Writes benchmarks/results/calibration.json: per model, MACs counted from the graph, TFLM arena (printed and
binary search) vs the README value, TFLM-vs-LiteRT parity on random int8 inputs, and per target the latency
ESTIMATE vs the published time (where one exists) with its relative error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from atalaia.deploy import targets  # noqa: E402
from atalaia.deploy.tflm import check_tflm  # noqa: E402
from atalaia.evaluate.profile import count_macs  # noqa: E402
from atalaia.ioutil import atomic_write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# "TFLM arena measured here" column of the calibration README.
README_ARENA = {
    "person_detect.tflite": 85_264,
    "mlperf_tiny_ic_resnet8_int8.tflite": 55_984,
    "mlperf_tiny_vww_mobilenet_int8.tflite": 103_680,
}


def main(argv: list[str]) -> int:
    cal_dir = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "calibration"
    if not cal_dir.is_dir():
        print(f"calibration dir {cal_dir} not found", file=sys.stderr)
        return 2
    published = {(a["model"], a["target"]): a["published_ms"] for a in targets.CALIBRATION}
    rows = []
    for key, meta in targets._MODELS.items():
        blob = (cal_dir / meta["file"]).read_bytes()
        macs = count_macs(blob)
        rng = np.random.default_rng(0)
        report = check_tflm(blob)
        xq = rng.integers(-128, 128, size=(8, *report.input_shape[1:]), dtype=np.int8)
        report = check_tflm(blob, xq)
        per_target = {}
        for t in targets.target_names():
            est = targets.estimate_latency_ms(macs["by_op"], macs["n_ops"], t)
            pub = published.get((key, t))
            per_target[t] = {
                "estimate_ms": round(est, 3),
                "published_ms": pub,
                "rel_error": None if pub is None else round(est / pub - 1, 4),
            }
        readme_arena = README_ARENA.get(meta["file"])
        rows.append(
            {
                "model": key,
                "file": meta["file"],
                "bytes": len(blob),
                "macs": macs,
                "macs_match_table": macs["total"] == sum(meta["macs"].values()),
                "arena_bytes": report.arena_bytes,
                "arena_min_bytes": report.arena_min_bytes,
                "arena_readme_bytes": readme_arena,
                "arena_matches_readme": readme_arena == report.arena_bytes,
                "parity_samples": report.parity_samples,
                "parity_max_abs_diff_steps": report.parity_max_abs_diff_steps,
                "parity_exact_fraction": report.parity_exact_fraction,
                "notes": [n[:160] for n in report.notes],
                "latency": per_target,
            }
        )
        print(
            f"{key:14s} MACs {macs['total']:>11,d}  ops {macs['n_ops']:>2d}  arena {report.arena_bytes:>7,d} B "
            f"(search {report.arena_min_bytes:,d}, README {readme_arena:,d})  parity max "
            f"{report.parity_max_abs_diff_steps} steps"
        )
    calib = targets.calibration_report()
    print("\nlatency ESTIMATE vs published (per anchor):")
    for r in calib:
        loo = "n/a" if r["loo_rel_error"] is None else f"{r['loo_rel_error']:+.1%}"
        print(
            f"  {r['target']:10s} {r['model']:14s} published {r['published_ms']:>7.1f} ms  estimate "
            f"{r['estimate_ms']:>7.1f} ms  err {r['rel_error']:+.1%}  single-rate err "
            f"{r['single_rate_rel_error']:+.1%}  leave-one-out {loo}  [{r['fit']}]"
        )
    out = REPO / "benchmarks" / "results" / "calibration.json"
    atomic_write_json(
        out,
        {
            "calibration_dir": str(cal_dir),
            "overhead_cycles_per_op": targets.OVERHEAD_CYCLES_PER_OP,
            "targets": [targets.TARGETS[t].to_dict() for t in targets.target_names()],
            "models": rows,
            "calibration_report": calib,
        },
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
