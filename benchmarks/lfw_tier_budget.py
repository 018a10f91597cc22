"""Each face tier recipe's student against its tier budget, without training (atalaia.face.budget).

Usage:
    python benchmarks/lfw_tier_budget.py [--out benchmarks/results/lfw_tier_budget.json] [--set KEY=VALUE ...]

For `recipes/lfw_s.yaml` (tier S) and `recipes/lfw_m.yaml` (tier M): the untrained student is built from the
recipe, quantized to full int8 (random calibration images) and loaded in the TFLM runtime: params, MACs per
inference and per face (x2 with mirror TTA), flash = bytes of the .tflite as flashed, measured TFLM arena,
and each limit's ok flag. These sizes do not depend on the weights' values; accuracy is not measured here.
`--set` overrides apply to both recipes (e.g. to try another width before editing a recipe).
`--train-step` also times one training step of each student (forward + backward + AdamW on a batch of the
recipe's batch size; the tiers interleaved, median of 6 x 5 steps, so a busy machine slows both alike) and gives
each tier's step time relative to S: with S's measured epoch time it projects the other tier's epoch time
before a two-hour run is started. It is the student alone (no loss terms, no data pipeline): a ratio, not
an epoch time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.face.budget import check_tier, student_costs
from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent
RECIPES = ("lfw_s", "lfw_m")


def train_step_seconds(recipes: list, reps: int = 6, steps: int = 5) -> list[float]:
    """Median seconds of one training step of each recipe's face student, measured interleaved."""
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    from atalaia.face.train import build_student

    fns, inputs = [], []
    for r in recipes:
        size = int(r.data.image_size[0])
        m = build_student(size, width=r.student.width, embedding_dim=r.face.embedding_dim, name=r.student.name,
                          head=r.face.student_head)
        opt = keras.optimizers.AdamW(1e-3)

        @tf.function
        def step(x, m=m, opt=opt):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(m(x, training=True)))
            opt.apply(tape.gradient(loss, m.trainable_variables), m.trainable_variables)
            return loss

        x = tf.constant(np.random.default_rng(0).random((r.train.batch_size, size, size, 1), np.float32))
        step(x)  # trace once, outside the timing
        fns.append(step)
        inputs.append(x)
    times: list[list[float]] = [[] for _ in recipes]
    for _ in range(reps):
        for i, (fn, x) in enumerate(zip(fns, inputs, strict=True)):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn(x)
            times[i].append((time.perf_counter() - t0) / steps)
    return [float(np.median(t)) for t in times]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw_tier_budget.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE recipe override")
    ap.add_argument("--train-step", action="store_true", help="also time one training step per tier (ratio to S)")
    a = ap.parse_args(argv)
    over = {k.strip(): yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.overrides)}
    rows, recipes = [], []
    for name in RECIPES:
        r = load_recipe(PACKAGE_DIR / "recipes" / f"{name}.yaml", over)
        recipes.append(r)
        rows.append({"recipe": f"recipes/{name}.yaml", "student": r.student.name, "width": r.student.width,
                     **check_tier(student_costs(r), r.face.tier)})
    if a.train_step:
        secs = train_step_seconds(recipes)
        for row, r, sec in zip(rows, recipes, secs, strict=True):
            row["train_step"] = {"seconds": round(sec, 4), "batch_size": r.train.batch_size,
                                 "ratio_to_S": round(sec / secs[0], 3)}
    result = {"benchmark": "lfw_tier_budget", "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
              "command": "python benchmarks/lfw_tier_budget.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "note": "untrained students: sizes and MACs only (they do not depend on the weights), no accuracy",
              "rows": rows}
    atomic_write_json(a.out, result)
    for row in rows:
        t = row["tier"]
        print(f"{row['recipe']:<22} tier {t['name']}: {row['params']:,} params, {row['macs_per_face'] / 1e6:.2f} M MACs/face "
              f"(<= {t['macs_per_face_max'] / 1e6:.0f} M), flash {row['flash_bytes']:,} B (<= {t['flash_bytes_max']:,}), "
              f"arena {row['arena_bytes']:,} B (<= {t['arena_bytes_max']:,}): {'ok' if row['ok'] else 'OVER BUDGET'}"
              + (f"; train step {row['train_step']['seconds']:.3f} s (x{row['train_step']['ratio_to_S']:.2f} of S)"
                 if "train_step" in row else ""))
    print(f"-> {a.out}")
    return result


if __name__ == "__main__":
    main()
