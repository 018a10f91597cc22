"""Each face tier recipe's student against its tier budget, without training (atalaia.face.budget).

Usage:
    python benchmarks/lfw_tier_budget.py [--out benchmarks/results/lfw_tier_budget.json] [--set KEY=VALUE ...]

For `recipes/lfw_s.yaml` (tier S) and `recipes/lfw_m.yaml` (tier M): the untrained student is built from the
recipe, quantized to full int8 (random calibration images) and loaded in the TFLM runtime: params, MACs per
inference and per face (x2 with mirror TTA), flash = bytes of the .tflite as flashed, measured TFLM arena,
and each limit's ok flag. These sizes do not depend on the weights' values; accuracy is not measured here.
`--set` overrides apply to both recipes (e.g. to try another width before editing a recipe).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.face.budget import check_tier, student_costs
from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent
RECIPES = ("lfw_s", "lfw_m")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw_tier_budget.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE recipe override")
    a = ap.parse_args(argv)
    over = {k.strip(): yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.overrides)}
    rows = []
    for name in RECIPES:
        r = load_recipe(PACKAGE_DIR / "recipes" / f"{name}.yaml", over)
        rows.append({"recipe": f"recipes/{name}.yaml", "student": r.student.name, "width": r.student.width,
                     **check_tier(student_costs(r), r.face.tier)})
    result = {"benchmark": "lfw_tier_budget",
              "command": "python benchmarks/lfw_tier_budget.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "note": "untrained students: sizes and MACs only (they do not depend on the weights), no accuracy",
              "rows": rows}
    atomic_write_json(a.out, result)
    for row in rows:
        t = row["tier"]
        print(f"{row['recipe']:<22} tier {t['name']}: {row['params']:,} params, {row['macs_per_face'] / 1e6:.2f} M MACs/face "
              f"(<= {t['macs_per_face_max'] / 1e6:.0f} M), flash {row['flash_bytes']:,} B (<= {t['flash_bytes_max']:,}), "
              f"arena {row['arena_bytes']:,} B (<= {t['arena_bytes_max']:,}): {'ok' if row['ok'] else 'OVER BUDGET'}")
    print(f"-> {a.out}")
    return result


if __name__ == "__main__":
    main()
