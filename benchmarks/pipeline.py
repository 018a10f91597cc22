"""Run a recipe end to end (default: the bundled default recipe) and write benchmarks/results/pipeline.json.

The JSON holds the per-stage rows of the report (the same numbers as report.json) plus the wall time of
each stage and of the whole run, and the machine it ran on, so numbers can be compared across versions.

    .venv/bin/python benchmarks/pipeline.py [RECIPE] [--out runs/bench-default]
    .venv/bin/python benchmarks/pipeline.py --seeds 3       # -> benchmarks/results/pipeline_seeds.{json,md}

With `--seeds N` the recipe runs cold N times with seeds 42, 43, ... (the seed picks the train/val/test split,
the initialisation and the augmentation), and the result is the mean ± sample std per stage of accuracy and
macro-F1, and of the KD gain: one 80-image test split cannot rank stages, N different splits can show
whether a difference is larger than the spread between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default=None)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-default"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "pipeline.json"))
    ap.add_argument("--keep", action="store_true", help="resume an existing run folder instead of starting cold")
    ap.add_argument("--seeds", type=int, default=0,
                    help="run N seeds (42, 43, ...) and write mean ± std per stage to pipeline_seeds.{json,md}")
    args = ap.parse_args()
    if args.seeds:
        return run_seeds(args)

    from atalaia.config import load_recipe
    from atalaia.ioutil import atomic_write_json, import_tensorflow_quietly
    from atalaia.pipeline import run_recipe

    import_tensorflow_quietly()
    recipe = load_recipe(args.recipe)
    out = Path(args.out)
    if out.exists() and not args.keep:
        shutil.rmtree(out)  # cold run: every stage measured
    t0 = time.perf_counter()
    report = run_recipe(recipe, out, log=lambda m: print(m, flush=True)).to_dict()
    wall = time.perf_counter() - t0
    import tensorflow as tf

    result = {
        "benchmark": "pipeline",
        "recipe": recipe.name,
        "created": report["created"],
        "atalaia_version": report["atalaia_version"],
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "tensorflow": tf.__version__},
        "wall_time_s": round(wall, 1),
        "priority": {"nice": os.nice(0), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                     "note": "other jobs may share the cores; a negative nice gives this run most of the CPU"},
        "stage_wall_time_s": report["timings_s"],
        "stages": report["stages"],
        "kd": report.get("kd"),
        "int8": {k: v for k, v in report.get("int8", {}).items() if k != "fits"},
        "report_json": str(out / "report.json"),
    }
    atomic_write_json(args.result, result)
    from atalaia.ioutil import atomic_write_text
    from atalaia.report.render import stage_table, summary_lines

    headers, rows = stage_table(report)
    md = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", *[f"- {line}" for line in summary_lines(report)],
           "", f"Wall time {result['wall_time_s']} s on {result['machine']['cpus']} CPUs (cold run)."]
    atomic_write_text(Path(args.result).with_suffix(".md"), "\n".join(md) + "\n")
    print(json.dumps({"wall_time_s": result["wall_time_s"], "stage_wall_time_s": result["stage_wall_time_s"]}))
    return 0


def _mean_std(values: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "values": [float(v) for v in a]}


def seed_summary(reports: list[dict]) -> dict:
    """Mean ± sample std over seeds of each stage's accuracy / macro-F1 and of the KD gain (pp)."""
    stages: dict[str, dict] = {}
    for name in [s["stage"] for s in reports[0]["stages"]]:
        rows = [next(s for s in r["stages"] if s["stage"] == name) for r in reports]
        stages[name] = {"model": rows[0]["model"], "dtype": rows[0]["dtype"], "params": rows[0]["params"],
                        "flash_bytes": rows[0].get("flash_bytes"),
                        "accuracy": _mean_std([x["accuracy"] * 100 for x in rows]),
                        "macro_f1": _mean_std([x["macro_f1"] * 100 for x in rows])}
    kds = [r["kd"] for r in reports if r.get("kd")]
    gains = [k["gain_accuracy"] * 100 for k in kds]
    return {"stages": stages, "kd_gain_pp": _mean_std(gains) if gains else None,
            "kd_significant_runs": sum(bool(k["gain_interval"]["accuracy"]["significant"]) for k in kds),
            "kd_intervals_pp": [[round(k["gain_interval"]["accuracy"]["diff"][e] * 100, 2) for e in ("low", "high")]
                                for k in kds]}


def render_seeds(result: dict) -> str:
    seeds = result["seeds"]
    lines = [f"Default recipe, {len(seeds)} cold runs with seeds {', '.join(map(str, seeds))} (each seed a different "
             "stratified train/val/test split, initialisation and augmentation). mean ± sample std over seeds.", "",
             "| stage | model | dtype | params | accuracy (%) | macro-F1 (%) | per seed accuracy (%) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in result["summary"]["stages"].items():
        acc, f1 = s["accuracy"], s["macro_f1"]
        lines.append(f"| {name} | {s['model']} | {s['dtype']} | {s['params']:,} | {acc['mean']:.2f} ± {acc['std']:.2f} "
                     f"| {f1['mean']:.2f} ± {f1['std']:.2f} | {' / '.join(f'{v:.2f}' for v in acc['values'])} |")
    kd = result["summary"]["kd_gain_pp"]
    if kd:
        lines += ["", f"KD gain (distilled − baseline): {kd['mean']:+.2f} ± {kd['std']:.2f} pp over seeds "
                  f"(per seed: {', '.join(f'{v:+.2f}' for v in kd['values'])}); significant (paired 95% interval "
                  f"excludes 0) in {result['summary']['kd_significant_runs']} of {len(seeds)} runs."]
    lines += ["", "Per-seed intervals and paired deltas: each run's report.json (`run_dirs`). Wall time "
              f"{result['wall_time_s']:.0f} s for all seeds on {result['machine']['cpus']} CPUs "
              f"(per run: {', '.join(f'{w:.0f}' for w in result['run_wall_time_s'])} s)."]
    return "\n".join(lines) + "\n"


def run_seeds(args) -> int:
    from atalaia.config import load_recipe
    from atalaia.ioutil import atomic_write_json, atomic_write_text, import_tensorflow_quietly
    from atalaia.pipeline import run_recipe

    import_tensorflow_quietly()
    seeds = [42 + i for i in range(args.seeds)]
    reports, walls, dirs = [], [], []
    for seed in seeds:
        recipe = load_recipe(args.recipe, {"seed": seed})
        out = Path(args.out) / f"seed-{seed}"
        if out.exists() and not args.keep:
            shutil.rmtree(out)
        print(f"== seed {seed} -> {out}", flush=True)
        t0 = time.perf_counter()
        reports.append(run_recipe(recipe, out, log=lambda m: print(m, flush=True)).to_dict())
        walls.append(round(time.perf_counter() - t0, 1))
        dirs.append(str(out))
    import tensorflow as tf

    result = {"benchmark": "pipeline_seeds", "recipe": recipe.name, "seeds": seeds,
              "atalaia_version": reports[0]["atalaia_version"],
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count(), "tensorflow": tf.__version__},
              "wall_time_s": round(sum(walls), 1), "run_wall_time_s": walls, "run_dirs": dirs,
              "resumed": bool(args.keep), "summary": seed_summary(reports)}
    path = Path(args.result).with_name("pipeline_seeds.json")
    atomic_write_json(path, result)
    atomic_write_text(path.with_suffix(".md"), render_seeds(result))
    print(render_seeds(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
