"""LFW face-verification benchmark: runs the `lfw` recipe (the verification plan) and writes one row per model.

Usage:
    python benchmarks/lfw.py --datasets /path/to/datasets [--run-dir runs/lfw] [--set KEY=VALUE ...]
                             [--out benchmarks/results/lfw.json]

`--datasets` is a folder holding `celeba_subset_299ids/`, `celeba_more/` and `lfw/` (the shared chip recipe;
see each folder's README). On the shared workstation it is /work/shared/datasets (the default, for that
machine only). The run folder keeps finished stages, so a second invocation only re-reads them.

Rows: teacher (dlib ResNet), student float, student channel-pruned, student int8 in LiteRT, student int8 in
TFLM: LFW 10-fold accuracy +- std, AUC, TAR at FAR 1e-2 / 1e-3, open-set rank-1 / FAR, params, MACs, flash,
TFLM arena, host latency and estimated ESP32 / ESP32-S3 latency; plus wall time per stage.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import yaml

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent
SHARED_DATASETS = Path("/work/shared/datasets")  # the shared workstation's copies (default only there)


def rows_from_report(rep: dict) -> list[dict]:
    out = []
    ver = rep["verification"]["models"]
    for s in rep["stages"]:
        v = ver[s["stage"]]
        os_ = v.get("open_set") or {}
        out.append({
            "stage": s["stage"], "label": v["label"], "model": s["model"], "dtype": s["dtype"],
            "lfw_acc_mean": v["acc_mean"], "lfw_acc_std": v["acc_std"], "auc": v["auc"],
            "tar_at_far_1e-2": v["tar_at_far_0.01"], "tar_at_far_1e-3": v["tar_at_far_0.001"],
            "threshold": v["threshold"], "open_set_rank1": os_.get("rank1"), "open_set_far": os_.get("far"),
            "open_set_dir": os_.get("dir"),
            "open_set_far_at_pair_far_1e-3": (v.get("open_set_at_far_1e-3") or {}).get("far"),
            "open_set_dir_at_pair_far_1e-3": (v.get("open_set_at_far_1e-3") or {}).get("dir"),
            # the `atalaia access` default: ~1 % of strangers' attempts accepted for this gallery size
            "open_set_far_at_open_far_1e-2": (v.get("open_set_at_open_far_1e-2") or {}).get("far"),
            "open_set_dir_at_open_far_1e-2": (v.get("open_set_at_open_far_1e-2") or {}).get("dir"),
            "params": s["params"], "macs": s["macs"] or None,
            "flash_bytes": s["flash_bytes"], "arena_bytes": s["arena_bytes"], "host_latency_ms": s["host_latency_ms"],
            "est_latency_ms": s["est_latency_ms"],
        })
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    ap.add_argument("--recipe", type=Path, default=PACKAGE_DIR / "recipes" / "lfw.yaml")
    ap.add_argument("--run-dir", type=Path, default=Path("runs") / "lfw")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE recipe override")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw.json")
    a = ap.parse_args(argv)

    from atalaia.pipeline import run_recipe

    ds = a.datasets.resolve()
    overrides = {"face.train_sets": [str(ds / "celeba_subset_299ids"), str(ds / "celeba_more")],
                 "face.lfw_root": str(ds / "lfw")}
    for item in a.overrides:
        k, v = item.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v)
    recipe = load_recipe(a.recipe, overrides)
    t0 = time.perf_counter()
    rep = run_recipe(recipe, a.run_dir, log=lambda m: print(m, flush=True)).to_dict()
    wall = time.perf_counter() - t0
    rows = rows_from_report(rep)
    final_float = "pruned_channel" if any(r["stage"] == "pruned_channel" for r in rows) else "student"
    s_float = next(r for r in rows if r["stage"] == final_float)
    s_int8 = next(r for r in rows if r["stage"] == "int8_tflm")
    per_face = 2 if rep["recipe"]["face"].get("mirror_tta", False) else 1
    result = {
        "benchmark": "lfw",
        "command": "python benchmarks/lfw.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "recipe": rep["recipe"], "run_dir": str(a.run_dir),
        "protocol": rep["verification"]["protocol"],
        "pairs_used": rep["verification"]["pairs_used"], "pairs_missing": rep["verification"]["pairs_missing"],
        "rows": rows,
        "targets": {"lfw_acc_int8_min": 0.97, "flash_bytes_max": 256 * 1024, "arena_bytes_max": 160 * 1024,
                    "macs_max": 30_000_000},
        "checks": {
            "int8_flash_ok": s_int8["flash_bytes"] <= 256 * 1024,
            "int8_arena_ok": (s_int8["arena_bytes"] or 0) <= 160 * 1024,
            "int8_macs_ok": (s_int8["macs"] or 0) <= 30_000_000,
            "int8_lfw_ge_97": s_int8["lfw_acc_mean"] >= 0.97,
            "int8_within_0.5pp_of_float": (s_float["lfw_acc_mean"] - s_int8["lfw_acc_mean"]) <= 0.005,
            # mirror TTA runs the model twice per face: the MACs budget is also checked per face
            "int8_macs_per_face_ok": (s_int8["macs"] or 0) * per_face <= 30_000_000,
        },
        "mirror_tta": bool(rep["recipe"]["face"].get("mirror_tta", False)), "inferences_per_face": per_face,
        "macs_per_face": (s_int8["macs"] or 0) * per_face,
        "train_data": {k: rep["dataset"]["train"][k] for k in ("chips", "labelled", "unlabelled", "identities")},
        "stage_seconds": rep["timings_s"], "wall_seconds_this_invocation": round(wall, 1),
        "stage_seconds_sum": round(sum(v for k, v in rep["timings_s"].items() if k in {r["stage"] for r in rows}), 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "roc_plot": str(a.run_dir / rep["verification"]["roc_plot"]),
    }
    atomic_write_json(a.out, result)
    for r in rows:
        print(f"{r['label']:<26} LFW {100 * r['lfw_acc_mean']:.2f} +- {100 * r['lfw_acc_std']:.2f}  "
              f"AUC {r['auc']:.4f}  TAR@1e-3 {r['tar_at_far_1e-3']:.3f}  flash {r['flash_bytes'] / 1024:.1f} KB")
    print(f"-> {a.out}")
    return result


if __name__ == "__main__":
    main()
