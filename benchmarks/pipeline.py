"""Run a recipe end to end (default: the bundled default recipe) and write benchmarks/results/pipeline.json.

The JSON holds the per-stage rows of the report (the same numbers as report.json) plus the wall time of
each stage and of the whole run, and the machine it ran on, so numbers can be compared across versions.

    .venv/bin/python benchmarks/pipeline.py [RECIPE] [--out runs/bench-default]
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
    args = ap.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
