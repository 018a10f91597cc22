"""LFW View 1 score of finished face runs' float students, plain and with mirror test-time augmentation.

Usage:
    python benchmarks/lfw_view1.py RUN_DIR [RUN_DIR ...] [--datasets DIR] [--out benchmarks/results/lfw_view1.json]

How full-length students are compared without touching the test set: the same protocol as
`benchmarks/lfw_probes.py` (threshold on one View 1 file, accuracy on the other, both ways, 3,200 pairs), on
RUN_DIR/student/model.keras with the run's own crop and input size. `mirror` scores the sum of the unit
embeddings of each chip and its left-right mirror image (two inferences per face on a device). Rows of runs
not given this time are kept in `--out`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lfw_probes import SHARED_DATASETS, _dev_pairs, _index  # noqa: E402

from atalaia.ioutil import atomic_write_json  # noqa: E402


def view1_accuracy(emb: np.ndarray, tr, te, idx: dict[str, int]) -> float:
    from atalaia.evaluate.verification import accuracy_at, best_threshold, cosine_scores

    a_tr, b_tr = _index(tr, idx)
    a_te, b_te = _index(te, idx)
    s_tr, s_te = cosine_scores(emb[a_tr], emb[b_tr]), cosine_scores(emb[a_te], emb[b_te])
    th_tr, _ = best_threshold(s_tr, tr.is_same)
    th_te, _ = best_threshold(s_te, te.is_same)
    return float((accuracy_at(s_te, te.is_same, th_tr) * len(s_te) + accuracy_at(s_tr, tr.is_same, th_te) * len(s_tr))
                 / (len(s_te) + len(s_tr)))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw_view1.json")
    a = ap.parse_args(argv)
    import keras

    from atalaia.evaluate.verification import mirror_fuse
    from atalaia.face.data import load_images

    root, rel, tr, te = _dev_pairs(a.datasets / "lfw")
    idx = {r: i for i, r in enumerate(rel)}
    rows = []
    for run in a.runs:
        recipe = __import__("yaml").safe_load((run / "recipe.yaml").read_text())
        size, crop = int(recipe["data"]["image_size"][0]), float(recipe["face"]["crop"])
        images, bad = load_images([root / r for r in rel], size, crop=crop)
        if bad:
            raise SystemExit(f"unreadable View 1 images: {bad[:3]}")
        m = keras.saving.load_model(run / "student" / "model.keras", compile=False)
        x = images.astype(np.float32) / 255.0
        e = m.predict(x, batch_size=256, verbose=0)
        ef = m.predict(x[:, :, ::-1], batch_size=256, verbose=0)
        # recipes saved before these knobs existed trained without them; newer ones nest them under face.loss
        f = recipe["face"]
        loss = f.get("loss") or f
        face = {"center_teacher": loss.get("center_teacher", f.get("center_teacher", False)),
                "anchor_kd_weight": loss.get("anchor_kd_weight", 0.0),
                "kd_weight": loss["kd_weight"], "crop": crop, "image_size": size,
                "epochs": recipe["train"]["epochs"], "width": recipe.get("student", {}).get("width"),
                "train_sets": [Path(t).name for t in f.get("train_sets") or [f.get("train_root", "")]],
                "sampling": loss.get("sampling", "uniform"), "consistent_views": loss.get("consistent_views", 0)}
        row = {"run": str(run), "face": face, "view1_acc": view1_accuracy(e, tr, te, idx),
               "view1_acc_mirror": view1_accuracy(mirror_fuse(e, ef), tr, te, idx)}
        print(f"{run}: View 1 {100 * row['view1_acc']:.2f}%, with mirror {100 * row['view1_acc_mirror']:.2f}%",
              flush=True)
        rows.append(row)
    # rows of runs not scored this time are kept (a run scored again replaces its row)
    kept = json.loads(a.out.read_text())["rows"] if a.out.is_file() else []
    rows = [r for r in kept if r["run"] not in {x["run"] for x in rows}] + rows
    doc = {"benchmark": "lfw_view1", "protocol": "LFW View 1, threshold on one file, accuracy on the other, both "
           "ways, pair-weighted (3,200 pairs)", "rows": rows,
           "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    atomic_write_json(a.out, doc)
    return doc


if __name__ == "__main__":
    json.dumps(main())
