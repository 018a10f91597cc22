"""How should ORL images be fed to dlib for the `dlib_head` teacher? Measured on the default recipe's split.

For each way of making dlib's 150x150 input (detector + 5-point alignment on the 92x112 originals, a fixed
centre chip of the originals, or the 32x32 student input upscaled), embed all 400 images (cached), train the
head on the train split and score val and test (Wilson 95% intervals). Also the leave-one-out 1-NN accuracy
of the raw embeddings over all 400 images (what the shared README quotes: 100% with the detector recipe).

    .venv/bin/python benchmarks/dlib_head_orl.py   ->  benchmarks/results/dlib_head_orl.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from atalaia.config import bundled_data_dir
from atalaia.data.dataset import load_identity_folder, split_dataset, stratified_split
from atalaia.evaluate.intervals import accuracy_interval
from atalaia.ioutil import atomic_write_json
from atalaia.models.dlib_head import DlibHeadConfig, embed_images, train_head

REPO = Path(__file__).resolve().parents[1]


def loo_1nn(emb: np.ndarray, labels: np.ndarray) -> float:
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(labels[np.argmin(d, axis=1)] == labels))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(REPO / "runs" / "cache" / "dlib_head_orl.npz"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "dlib_head_orl.json"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    root = bundled_data_dir() / "orl_att_faces"
    small = load_identity_folder(root, image_size=(32, 32), channels=1)          # what the pipeline feeds
    orig = load_identity_folder(root, image_size=(112, 92), channels=1)          # the 92x112 originals
    assert small.paths == orig.paths
    split = split_dataset(small, (0.6, 0.2, 0.2), args.seed)
    tr, va, te = stratified_split(small.labels, (0.6, 0.2, 0.2), args.seed)
    assert np.array_equal(split.test.labels, small.labels[te])
    y = small.labels
    options = {
        "originals, detect (x2 upscale, HOG/MMOD, 5-point chip; centre fallback)": (orig.images, DlibHeadConfig()),
        "originals, centre chip (full width)": (orig.images, DlibHeadConfig(align="center", center_scale=1.0)),
        "originals, centre chip 1.3x (edge-padded)": (orig.images, DlibHeadConfig(align="center", center_scale=1.3)),
        "32x32 student input, upscaled to 150": (small.images, DlibHeadConfig(align="center", center_scale=1.0)),
    }
    rows = []
    for name, (imgs, cfg) in options.items():
        t0 = time.perf_counter()
        emb, how = embed_images(imgs, cfg, cache=args.cache)
        secs = time.perf_counter() - t0
        head = train_head(emb[tr], y[tr], small.num_classes, cfg)
        val = accuracy_interval(y[va], np.argmax(head.logits_from_embeddings(emb[va]), 1))
        test = accuracy_interval(y[te], np.argmax(head.logits_from_embeddings(emb[te]), 1))
        row = {"input": name, "config": cfg.to_dict(), "how_aligned": {k: how.count(k) for k in sorted(set(how))},
               "embed_seconds": round(secs, 1), "loo_1nn_all_400": loo_1nn(emb, y),
               "val_accuracy": val.to_dict(), "test_accuracy": test.to_dict(),
               "test_n": int(len(te)), "train_n": int(len(tr))}
        rows.append(row)
        print(f"{name:75s} val {val.fmt()}  test {test.fmt()}  1-NN {row['loo_1nn_all_400'] * 100:.2f}  "
              f"({row['how_aligned']}, {secs:.0f}s)", flush=True)
    atomic_write_json(args.out, {"dataset": "bundled ORL, split [0.6,0.2,0.2] seed 42 (default recipe)",
                                 "rows": rows, "teacher_resnet_reference_test_accuracy": 0.95})
    print(json.dumps({"written": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
