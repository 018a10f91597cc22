"""How many calibration images does int8 PTQ of the face student need? Label-free, LFW-free.

Usage:
    python benchmarks/lfw_int8_calibration.py --run-dir runs/lfw [--recipe R] [--counts 64 256 1024 2048]
                                              [--out benchmarks/results/lfw_int8_calibration.json]

Takes the float student of a finished `lfw` run (`student/model.keras`), quantizes it with `counts[i]`
representative training chips (`atalaia.face.data.representative_inputs`, as the pipeline does) and measures,
on 2,000 *other* training chips, how close the int8 embedding stays to the float one: mean and 1st-percentile
cosine similarity. No identity label and no LFW image is read, so the choice it informs cannot overfit the
benchmark. The pipeline's own int8 stage reports the LFW cost of the chosen setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--recipe", type=Path, default=None, help="default: the run's recipe.yaml")
    ap.add_argument("--counts", type=int, nargs="+", default=[64, 256, 1024, 2048])
    ap.add_argument("--holdout", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw_int8_calibration.json")
    a = ap.parse_args(argv)

    import keras

    from atalaia.config import load_recipe
    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.data import load_chip_sets, representative_inputs

    run = a.run_dir
    model_path = run / "student" / "model.keras"
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: run `atalaia run recipes/lfw.yaml --out {run}` first")
    r = load_recipe(a.recipe or run / "recipe.yaml")
    size = int(r.data.image_size[0])
    roots = [Path(p) if Path(p).is_absolute() else (Path(r.base_dir) / p).resolve() for p in r.face.train_sets]
    cache = run / "cache" if not r.face.cache_dir else Path(r.face.cache_dir)
    cs = load_chip_sets(roots, size, cache_dir=cache, crop=r.face.crop)
    order = np.random.default_rng(123).permutation(len(cs))
    held = cs.images[order[: a.holdout]]
    pool = cs.images[order[a.holdout:]]
    model = keras.models.load_model(model_path, compile=False)
    x_held = held.astype(np.float32) / 255.0
    ref = np.asarray(model.predict(x_held, batch_size=256, verbose=0), np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    rows = []
    for n in a.counts:
        t0 = time.perf_counter()
        blob = convert_int8(model, representative_inputs(pool, n, r.seed), per_channel=r.quantize.per_channel)
        runner = TFLiteRunner(blob)
        q = runner.predict_raw(runner.quantize_input(x_held)).astype(np.float32)
        e = (q - runner.output_zero_point) * runner.output_scale
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        cos = np.sum(e * ref, axis=1)
        rows.append({"representative_samples": n, "mean_cosine": float(cos.mean()),
                     "p01_cosine": float(np.percentile(cos, 1)), "min_cosine": float(cos.min()),
                     "output_scale": float(runner.output_scale), "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{n:5d} calibration chips: mean cos {cos.mean():.5f}, p1 {np.percentile(cos, 1):.5f}", flush=True)
    doc = {"benchmark": "lfw_int8_calibration", "run_dir": str(run), "model": model.name,
           "holdout_training_chips": int(len(held)), "python": sys.version.split()[0], "rows": rows}
    atomic_write_json(a.out, doc)
    return doc


if __name__ == "__main__":
    main()
