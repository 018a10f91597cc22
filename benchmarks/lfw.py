"""LFW face-verification benchmark: runs a tier recipe (the verification plan) and writes one row per tier and model.

Usage:
    python benchmarks/lfw.py [--tier S|M] --datasets /path/to/datasets [--run-dir runs/lfw_s] [--set KEY=VALUE ...]
                             [--out benchmarks/results/lfw.json]

`--tier S` runs `recipes/lfw_s.yaml` (= `recipes/lfw.yaml`), `--tier M` runs `recipes/lfw_m.yaml` (`--recipe`
runs another file; its `face.tier` labels the rows). `--datasets` is a folder holding the recipe's training
sets (`celeba_subset_299ids/`, `celeba_more/`, `more_ids_gray/`: matched by folder name) and `lfw/` (the
shared chip recipe; see each folder's README). On the shared workstation it is /work/shared/datasets (the
default, for that machine only). The run folder keeps finished stages, so a second invocation only re-reads
them.

Rows (each with `tier`): teacher (dlib ResNet), student float, student channel-pruned, student int8 in LiteRT,
student int8 in TFLM: LFW 10-fold accuracy +- std, AUC, TAR at FAR 1e-2 / 1e-3, open-set rank-1 / FAR, params,
MACs, flash, TFLM arena, host latency and estimated ESP32 / ESP32-S3 latency; plus wall time per stage. The
output file keeps the other tier's rows: run once per tier.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import yaml

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent
SHARED_DATASETS = Path("/work/shared/datasets")  # the shared workstation's copies (default only there)


def rows_from_report(rep: dict, tier: str = "") -> list[dict]:
    out = []
    ver = rep["verification"]["models"]
    for s in rep["stages"]:
        v = ver[s["stage"]]
        os_ = v.get("open_set") or {}
        out.append({
            "tier": tier, "stage": s["stage"], "label": v["label"], "model": s["model"], "dtype": s["dtype"],
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


# the targets per tier (int8, TFLM, LFW pairs.txt 10 folds); sizes from atalaia.face.budget
LFW_TARGETS = {"S": {"lfw_acc_int8_min": 0.96, "door_residents_in_at_1pct_strangers_min": 0.90},
               "M": {"lfw_acc_int8_min": 0.975, "door_residents_in_at_1pct_strangers_min": 0.95}}
INT8_MAX_DROP = 0.003  # int8 within 0.3 points of its float model


def tier_checks(rows: list[dict], tier: str, per_face: int) -> tuple[dict, dict]:
    """(targets, checks) of one tier's rows: sizes against the tier's budget, LFW and int8 drop targets."""
    from atalaia.face.budget import get_tier

    t = get_tier(tier)
    final_float = "pruned_channel" if any(r["stage"] == "pruned_channel" for r in rows) else "student"
    s_float = next(r for r in rows if r["stage"] == final_float)
    s_int8 = next(r for r in rows if r["stage"] == "int8_tflm")
    targets = {"flash_bytes_max": t.flash_bytes_max, "arena_bytes_max": t.arena_bytes_max,
               "macs_per_face_max": t.macs_per_face_max, "int8_max_drop": INT8_MAX_DROP, **LFW_TARGETS[tier]}
    checks = {
        "int8_flash_ok": s_int8["flash_bytes"] <= t.flash_bytes_max,
        "int8_arena_ok": (s_int8["arena_bytes"] or 0) <= t.arena_bytes_max,
        # mirror TTA runs the model twice per face: the MACs budget is per face
        "int8_macs_per_face_ok": (s_int8["macs"] or 0) * per_face <= t.macs_per_face_max,
        "int8_lfw_target_ok": s_int8["lfw_acc_mean"] >= LFW_TARGETS[tier]["lfw_acc_int8_min"],
        "int8_within_0.3pp_of_float": (s_float["lfw_acc_mean"] - s_int8["lfw_acc_mean"]) <= INT8_MAX_DROP,
    }
    return targets, checks


def merge_tiers(out: Path, tier: str, result: dict) -> dict:
    """The results file with this tier's entry replaced and the other tier's kept (an older file without
    tiers is kept whole under `before_tiers`). `rows` = every tier's rows, S first."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    merged = {"benchmark": "lfw", "tiers": dict(old.get("tiers", {}))}
    if old and "tiers" not in old:
        merged["before_tiers"] = old
    elif "before_tiers" in old:
        merged["before_tiers"] = old["before_tiers"]
    merged["tiers"][tier] = result
    merged["rows"] = [r for t in sorted(merged["tiers"], key=lambda k: (k != "S", k)) for r in merged["tiers"][t]["rows"]]
    return merged


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", choices=("S", "M"), default="S")
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    ap.add_argument("--recipe", type=Path, default=None, help="default: recipes/lfw_<tier>.yaml")
    ap.add_argument("--run-dir", type=Path, default=None, help="default: runs/lfw_<tier>")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE recipe override")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw.json")
    a = ap.parse_args(argv)

    from atalaia.pipeline import run_recipe

    recipe_path = a.recipe or PACKAGE_DIR / "recipes" / f"lfw_{a.tier.lower()}.yaml"
    run_dir = a.run_dir or Path("runs") / f"lfw_{a.tier.lower()}"
    ds = a.datasets.resolve()
    overrides = {"face.train_sets": [str(ds / Path(p).name) for p in load_recipe(recipe_path).face.train_sets],
                 "face.lfw_root": str(ds / "lfw")}
    for item in a.overrides:
        k, v = item.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v)
    recipe = load_recipe(recipe_path, overrides)
    tier = recipe.face.tier or a.tier
    t0 = time.perf_counter()
    rep = run_recipe(recipe, run_dir, log=lambda m: print(m, flush=True)).to_dict()
    wall = time.perf_counter() - t0
    rows = rows_from_report(rep, tier)
    per_face = 2 if rep["recipe"]["face"].get("mirror_tta", False) else 1
    targets, checks = tier_checks(rows, tier, per_face)
    s_int8 = next(r for r in rows if r["stage"] == "int8_tflm")
    train = rep["dataset"]["train"]
    result = {
        "tier": tier, "command": "python benchmarks/lfw.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "recipe": rep["recipe"], "run_dir": str(run_dir), "protocol": rep["verification"]["protocol"],
        "pairs_used": rep["verification"]["pairs_used"], "pairs_missing": rep["verification"]["pairs_missing"],
        "rows": rows, "targets": targets, "checks": checks,
        "mirror_tta": bool(rep["recipe"]["face"].get("mirror_tta", False)), "inferences_per_face": per_face,
        "macs_per_face": (s_int8["macs"] or 0) * per_face,
        "train_data": {k: train.get(k) for k in ("chips", "labelled", "unlabelled", "identities",
                                                  "excluded_lfw_overlap", "per_set")},
        "stage_seconds": rep["timings_s"], "wall_seconds_this_invocation": round(wall, 1),
        # host memory of the whole invocation (data arrays, margin head over every identity, TFLM runs)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stage_seconds_sum": round(sum(v for k, v in rep["timings_s"].items() if k in {r["stage"] for r in rows}), 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "roc_plot": str(run_dir / rep["verification"]["roc_plot"]),
    }
    atomic_write_json(a.out, merge_tiers(a.out, tier, result))
    for r in rows:
        print(f"[{tier}] {r['label']:<26} LFW {100 * r['lfw_acc_mean']:.2f} +- {100 * r['lfw_acc_std']:.2f}  "
              f"AUC {r['auc']:.4f}  TAR@1e-3 {r['tar_at_far_1e-3']:.3f}  flash {r['flash_bytes'] / 1024:.1f} KB")
    print(f"-> {a.out}")
    return result


if __name__ == "__main__":
    main()
