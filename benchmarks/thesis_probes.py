"""Why the Table 1 students stayed at chance (1% on 100 classes): small, fast probes on the thesis task.

Each probe trains one student on the first seed's split (seed 42; 1,200 / 400 / 400 images) with
`train_classifier`, the same trainer the tables use, and records train / best-validation / test accuracy and the
loss curve. Knobs a probe may turn (all measured, none hidden): the training-set size per class (`n_per_class`:
1 = "can it memorise 100 images?"), learning rate, epochs, augmentation (the default recipe's or none), the Rafael
head width (`hidden`, monkey-patches `rafael.HIDDEN_UNITS`), and three trainer ablations (`norecal`: no per-epoch
BatchNorm re-calibration; `constlr`: no cosine decay; `nowd`: Adam instead of AdamW). `plain` runs the same model
with plain `model.fit` (Adam, constant lr) as a reference for the trainer. `pixels` runs numpy baselines on the
raw pixels (1-NN, nearest class mean, softmax regression) at several centre crops.

    .venv/bin/python benchmarks/thesis_probes.py --list
    .venv/bin/python benchmarks/thesis_probes.py rb_h32_lr001_noaug rb_h32_lr003_noaug    # named probes
    .venv/bin/python benchmarks/thesis_probes.py pixels
    .venv/bin/python benchmarks/thesis_probes.py --render                                 # JSON -> markdown

Results accumulate in `benchmarks/results/thesis_probes.json` (one entry per probe name, replaced when re-run)
and `thesis_probes.md`. Timings are wall seconds on the shared 2-core machine (other jobs running).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import thesis_common as tc  # noqa: E402

from atalaia.ioutil import atomic_write_json, atomic_write_text  # noqa: E402

OUT = tc.REPO / "benchmarks" / "results" / "thesis_probes"
_D = {"n_per_class": 0, "epochs": 15, "augment": "default", "hidden": None, "norecal": False, "constlr": False,
      "nowd": False, "plain": False}
#: name -> (what it asks, settings). lr is the peak learning rate.
PROBES: dict[str, tuple[str, dict]] = {
    "overfit100": ("can rafael_base memorise 100 images (1 per class)? trainer as the tables use it",
                   {"model": "rafael_base", "n_per_class": 1, "lr": 0.001, "epochs": 30, "augment": "none"}),
    "overfit100_plain": ("same with plain model.fit (Adam, constant lr)",
                         {"model": "rafael_base", "n_per_class": 1, "lr": 0.001, "epochs": 30, "augment": "none",
                          "plain": True}),
    "overfit100_norecal": ("trainer without the per-epoch BatchNorm re-calibration",
                           {"model": "rafael_base", "n_per_class": 1, "lr": 0.001, "epochs": 30, "augment": "none",
                            "norecal": True}),
    "overfit100_constlr": ("trainer with a constant learning rate (no cosine decay)",
                           {"model": "rafael_base", "n_per_class": 1, "lr": 0.001, "epochs": 30, "augment": "none",
                            "constlr": True}),
    "overfit100_nowd": ("trainer with Adam instead of AdamW",
                        {"model": "rafael_base", "n_per_class": 1, "lr": 0.001, "epochs": 30, "augment": "none",
                         "nowd": True}),
    "rb_h32_lr001_aug": ("rafael_base as reconstructed, lr 0.001, default augmentation",
                         {"model": "rafael_base", "lr": 0.001}),
    "rb_h32_lr003_aug": ("rafael_base, lr 0.003, default augmentation", {"model": "rafael_base", "lr": 0.003}),
    "rb_h32_lr001_noaug": ("rafael_base, lr 0.001, no augmentation",
                           {"model": "rafael_base", "lr": 0.001, "augment": "none"}),
    "rb_h32_lr003_noaug": ("rafael_base, lr 0.003, no augmentation",
                           {"model": "rafael_base", "lr": 0.003, "augment": "none"}),
    "rb_h128_lr003_noaug": ("rafael_base with a 128-unit hidden layer, lr 0.003, no augmentation",
                            {"model": "rafael_base", "lr": 0.003, "augment": "none", "hidden": 128}),
    "rb_h128_lr003_aug": ("rafael_base with a 128-unit hidden layer, lr 0.003, default augmentation",
                          {"model": "rafael_base", "lr": 0.003, "hidden": 128}),
    "ds_lr003_aug": ("ds_cnn, lr 0.003, default augmentation", {"model": "ds_cnn", "lr": 0.003}),
    "code2_speed": ("code2, 3 epochs: seconds per epoch", {"model": "code2", "lr": 0.001, "epochs": 3}),
}


def run_probe(name: str, task) -> dict:
    import keras

    import atalaia.compress.distill as distill
    import atalaia.models.rafael as rafael
    from atalaia.data.dataset import Split, stratified_split, to_float
    from atalaia.models import create_model

    what, p = PROBES[name]
    p = _D | p
    x, y = task.dataset.images, task.dataset.labels
    k = task.dataset.num_classes
    tr, va, te = stratified_split(y, tc.SPLIT, 42)
    if p["n_per_class"]:
        tr = np.concatenate([tr[y[tr] == c][: p["n_per_class"]] for c in range(k)])
    split = Split(task.dataset.subset(tr), task.dataset.subset(va), task.dataset.subset(te))
    saved = (rafael.HIDDEN_UNITS, distill.recalibrate_batchnorm, keras.optimizers.schedules.CosineDecay,
             keras.optimizers.AdamW)
    try:
        if p["hidden"]:
            rafael.HIDDEN_UNITS = p["hidden"]
        if p["norecal"]:
            distill.recalibrate_batchnorm = lambda *a, **kw: None
        if p["constlr"]:
            keras.optimizers.schedules.CosineDecay = lambda lr, **kw: lr
        if p["nowd"]:
            keras.optimizers.AdamW = lambda lr, weight_decay=0.0: keras.optimizers.Adam(lr)
        keras.utils.set_random_seed(42)
        m = create_model(p["model"], num_classes=k, input_shape=x.shape[1:])
        t0 = time.perf_counter()
        if p["plain"]:
            m.compile(keras.optimizers.Adam(p["lr"]), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
            h = m.fit(to_float(split.train.images), split.train.labels, batch_size=32, epochs=p["epochs"],
                      verbose=0, validation_data=(to_float(split.val.images), split.val.labels))
            loss, val = h.history["loss"], h.history["val_accuracy"]
        else:
            h = distill.train_classifier(m, split, tc.train_config(p["epochs"], p["lr"]),
                                         augment=tc.AUGMENTS[p["augment"]], seed=42)
            loss, val = h.loss, h.val_accuracy
        sec = time.perf_counter() - t0
    finally:
        (rafael.HIDDEN_UNITS, distill.recalibrate_batchnorm, keras.optimizers.schedules.CosineDecay,
         keras.optimizers.AdamW) = saved
    acc = distill.accuracy_of
    return {"what": what, "settings": p, "n_train": int(len(tr)), "seconds": round(sec, 1),
            "seconds_per_epoch": round(sec / p["epochs"], 1),
            "train_accuracy": acc(m, to_float(split.train.images), split.train.labels),
            "best_val_accuracy": float(max(val)),
            "test_accuracy": acc(m, to_float(split.test.images), split.test.labels),
            "loss": [round(float(v), 3) for v in loss], "val_accuracy": [round(float(v), 3) for v in val]}


def pixels(chips: str) -> dict:
    """Numpy baselines on raw pixels (per-image standardised): 1-NN and nearest class mean for seeds 42-44 at
    several centre crops; softmax regression (the slow one) at the tables' crop 0.7 only."""
    from atalaia.data.chip_task import ChipTaskConfig, load_chip_task
    from atalaia.data.dataset import stratified_split

    out = {}
    for crop in (0.6, 0.7, 0.85, 1.0):
        t = load_chip_task(chips, ChipTaskConfig(image_size=40, crop=crop))
        y = t.dataset.labels
        x = t.dataset.images.reshape(len(y), -1).astype(np.float64)
        x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
        r: dict[str, list[float]] = {"1nn": [], "nearest_mean": [], "softmax_regression": []}
        for seed in (42, 43, 44):
            tr, _, te = stratified_split(y, tc.SPLIT, seed)
            r["1nn"].append(float(np.mean(y[tr][np.argmax(x[te] @ x[tr].T, 1)] == y[te])))
            means = np.stack([x[tr][y[tr] == c].mean(0) for c in range(t.dataset.num_classes)])
            r["nearest_mean"].append(float(np.mean(np.argmax(x[te] @ means.T, 1) == y[te])))
            if crop == 0.7:
                pred = _softmax_regression(x[tr] / 40, y[tr], x[te] / 40)
                r["softmax_regression"].append(float(np.mean(pred == y[te])))
        out[str(crop)] = {k: {"per_seed": v, "mean": float(np.mean(v))} for k, v in r.items() if v}
        print(crop, {k: round(v["mean"], 4) for k, v in out[str(crop)].items()}, flush=True)
    return {"what": "pixel baselines (seeds 42-44, test accuracy) per centre crop of the 112 chip",
            "crops": out}


def _softmax_regression(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, steps: int = 300) -> np.ndarray:
    k = int(y.max()) + 1
    w, b, onehot = np.zeros((x.shape[1], k)), np.zeros(k), np.eye(k)[y]
    for _ in range(steps):  # full-batch gradient descent, L2 1e-3
        z = x @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= 2.0 * (x.T @ g + 1e-3 * w)
        b -= 2.0 * g.sum(0)
    return np.argmax(x_test @ w + b, 1)


def render(r: dict) -> str:
    lines = ["Probes on the Table 1 task (seed 42 split: 1,200 train / 400 val / 400 test, 100 classes, 40x40 grey, "
             "crop 0.7). `python benchmarks/thesis_probes.py NAME` re-runs one. Accuracy in %, chance = 1%.\n",
             "| probe | what | model | n_train | lr | epochs | augment | train acc | best val | test acc | s/epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in r.items():
        if name == "pixels":
            continue
        s = e["settings"]
        lines.append(f"| {name} | {e['what']} | {s['model']} | {e['n_train']} | {s['lr']:g} | {s['epochs']} | "
                     f"{s['augment']} | {e['train_accuracy'] * 100:.1f} | {e['best_val_accuracy'] * 100:.1f} | "
                     f"{e['test_accuracy'] * 100:.1f} | {e['seconds_per_epoch']} |")
    if "pixels" in r:
        lines += ["", "Pixel baselines (numpy, test accuracy %, mean of seeds 42-44):", "",
                  "| crop | 1-NN | nearest class mean | softmax regression |", "|---|---|---|---|"]
        for crop, v in r["pixels"]["crops"].items():
            sr = v.get("softmax_regression")
            lines.append(f"| {crop} | {v['1nn']['mean'] * 100:.1f} | {v['nearest_mean']['mean'] * 100:.1f} | "
                         f"{sr['mean'] * 100:.1f} |" if sr else f"| {crop} | {v['1nn']['mean'] * 100:.1f} | "
                         f"{v['nearest_mean']['mean'] * 100:.1f} | — |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probes", nargs="*", help="probe names (see --list) or 'pixels'")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite the markdown from the JSON")
    ap.add_argument("--chips", default=str(tc.default_chips()))
    args = ap.parse_args()
    if args.list:
        for k, (what, _) in PROBES.items():
            print(f"{k:22s} {what}")
        return 0
    path = OUT.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {}
    unknown = [p for p in args.probes if p not in PROBES and p != "pixels"]
    if unknown:
        raise SystemExit(f"unknown probe(s) {unknown}; see --list")
    if args.probes:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        task = tc.load_task(args.chips, 40)
        for name in args.probes:
            results[name] = pixels(args.chips) if name == "pixels" else run_probe(name, task)
            results[name]["command"] = f"python benchmarks/thesis_probes.py {name}"
            if name != "pixels":
                e = results[name]
                print(f"{name}: train {e['train_accuracy']:.3f} val {e['best_val_accuracy']:.3f} "
                      f"test {e['test_accuracy']:.3f} [{e['seconds']}s]", flush=True)
            atomic_write_json(path, results)
    atomic_write_text(OUT.with_suffix(".md"), render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
