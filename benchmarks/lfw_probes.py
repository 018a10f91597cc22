"""Short-schedule probes that chose the `lfw` recipe's student, input crop and loss weights, on LFW View 1.

The `r2_*` probes are issue 11's levers (all three training sets, balanced sampling, consistent teaching with
4 views, the M student). Measured: `python benchmarks/lfw_probes.py --only r2_all_sets r2_all_sets+balanced
r2_299ids r2_299ids+cv4` (the cv4 pair on one set: its 24,636 dlib views took ~27 min on 2 cores, once);
`r2_all_sets+cv4` (all 36,733 chips: ~2.7 h of dlib) and `r2_m` at 6 epochs were not run. With `--epochs 1
--out ...` a probe alone gives the training memory (`peak_rss_mb`).

Usage:
    python benchmarks/lfw_probes.py [--datasets DIR] [--epochs 6] [--only NAME ...]
                                    [--out benchmarks/results/lfw_probes.json]

Model selection must not look at the test set. LFW's own answer is View 1: `pairsDevTrain.txt` (2,200 pairs)
and `pairsDevTest.txt` (1,000 pairs), built for development. Each probe trains the face student for a few
epochs on the CelebA chip sets (`atalaia.face.train.train_embedding`, same loss and augmentation as the
pipeline), picks the cosine threshold on DevTrain and reports accuracy and AUC on DevTest. View 2
(`pairs.txt`, 10 folds) is only for the final numbers (`benchmarks/lfw.py`) and is never read here.
The ranking metric is `dev_acc_2way` (threshold on one View 1 file, accuracy on the other, both ways).

Short probes rank choices; they do not predict the long-schedule accuracy. Each result row is appended to the
output JSON as soon as it is measured (atomic rewrite), so a killed run keeps what it finished and is resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from atalaia.ioutil import atomic_write_json

HERE = Path(__file__).resolve().parent
SHARED_DATASETS = Path("/work/shared/datasets")  # the shared workstation's copies (default only there)

BASE = {"width": 1.0, "crop": 1.0, "kd_weight": 4.0, "rkd_weight": 4.0, "learning_rate": 0.003,
        "name": "ds_cnn", "center_teacher": False}
ROUND1_SETS = ("celeba_subset_299ids", "celeba_more")  # `sets` of a probe (folders under --datasets)
ALL_SETS = ("celeba_subset_299ids", "celeba_more", "more_ids_gray")
_AKD4 = {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
         "center_teacher": True, "anchor_kd_weight": 4.0}  # = center+akd4, the S recipe's loss
# name -> changes against BASE (the previous recipe); the last one is the combination the recipe now uses
PROBES: dict[str, dict] = {
    "base": {},
    "crop0.8": {"crop": 0.8},
    "crop0.7": {"crop": 0.7},
    "crop0.6": {"crop": 0.6},
    "kd16": {"kd_weight": 16.0, "rkd_weight": 16.0},
    "kd_only": {"kd_weight": 16.0, "rkd_weight": 16.0, "ce_weight": 0.0},
    "lr0.006": {"learning_rate": 0.006},
    "width1.25": {"width": 1.25},
    "width1.5": {"width": 1.5},
    "deep": {"name": "ds_cnn_deep"},
    "w1.5+crop0.7+kd16+lr0.006": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0,
                                  "learning_rate": 0.006},
    # the KD targets centred (face.loss.center_teacher): raw dlib embeddings are 91 % one common direction
    "recipe+center": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                      "center_teacher": True},
    "recipe+center+kd_only": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0,
                              "learning_rate": 0.006, "center_teacher": True, "ce_weight": 0.0},
    "center+res1.25": {"width": 1.25, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0,
                       "learning_rate": 0.006, "center_teacher": True, "name": "ds_res"},
    "center+akd4": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                    "center_teacher": True, "anchor_kd_weight": 4.0},
    "center+pk4": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                   "center_teacher": True, "images_per_identity": 4},
    # data scaling at equal optimisation steps: keep a random fraction of the training identities (and of the
    # unlabelled chips) and train 1 / fraction times more epochs; compare with center+akd4 (fraction 1)
    "akd4+ids0.25": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                     "center_teacher": True, "anchor_kd_weight": 4.0, "fraction": 0.25},
    "akd4+ids0.5": {"width": 1.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                    "center_teacher": True, "anchor_kd_weight": 4.0, "fraction": 0.5},
    # capacity beyond the flash budget (width 2.5: ~3x the weights, ~0.7 MB int8), to see what params would buy
    "akd4+width2.5": {"width": 2.5, "crop": 0.7, "kd_weight": 16.0, "rkd_weight": 16.0, "learning_rate": 0.006,
                      "center_teacher": True, "anchor_kd_weight": 4.0},
    "recipe+center+kd48": {"width": 1.5, "crop": 0.7, "kd_weight": 48.0, "rkd_weight": 48.0,
                           "learning_rate": 0.006, "center_teacher": True},
    # issue 11 levers: the S recipe's student on all three sets (LFW-overlap identities left out),
    # then one lever at a time; r2_m is the M tier's student (width 2.5)
    "r2_all_sets": {**_AKD4, "sets": ALL_SETS},
    "r2_all_sets+balanced": {**_AKD4, "sets": ALL_SETS, "sampling": "balanced"},
    "r2_all_sets+cv4": {**_AKD4, "sets": ALL_SETS, "consistent_views": 4},
    "r2_m": {**_AKD4, "sets": ALL_SETS, "width": 2.5},
    # per-stage widths (issue 11's closing suggestion): the early 32x32 / 16x16 blocks as narrow as width 1.5,
    # the 8x8 / 4x4 blocks wider than width 2.5; its row carries its int8 flash, TFLM arena and MACs per face
    # (atalaia.face.budget.model_costs), to check it against tier M. Same sets and schedule as
    # akd4+width2.5: compare with that row.
    "akd4+stagewise": {**_AKD4, "width": 1.0,
                       "blocks": ((48, 1), (96, 2), (96, 1), (448, 2), (448, 1), (896, 2))},
    # consistent teaching at a price this machine can pay: one set (295 identities, 6,159 chips, 24,636 dlib
    # views, ~27 min on 2 cores) and 24 epochs, i.e. about as many optimisation steps as 4 epochs of all sets;
    # compare the pair with each other only
    "r2_299ids": {**_AKD4, "sets": ROUND1_SETS[:1], "epochs": 24},
    "r2_299ids+cv4": {**_AKD4, "sets": ROUND1_SETS[:1], "epochs": 24, "consistent_views": 4},
}


def _workers() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)))


def _dev_pairs(lfw: Path):
    from atalaia.data.lfw import load_pairs, resolve_image_root

    root = resolve_image_root(lfw)
    tr, te = load_pairs(lfw / "pairsDevTrain.txt", root), load_pairs(lfw / "pairsDevTest.txt", root)
    rel = sorted(set(tr.left) | set(tr.right) | set(te.left) | set(te.right))
    return root, rel, tr, te


def _index(pairs, idx: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([idx[a] for a in pairs.left]), np.array([idx[b] for b in pairs.right])


def _identity_subset(images, labels, teacher, fraction: float, seed: int):
    """A random `fraction` of the identities (all their chips) and of the unlabelled chips, labels re-densified."""
    rng = np.random.default_rng(seed)
    ids = np.unique(labels[labels >= 0])
    keep_ids = rng.choice(ids, int(round(fraction * len(ids))), replace=False)
    keep = np.isin(labels, keep_ids)
    unl = np.flatnonzero(labels < 0)
    keep[rng.choice(unl, int(round(fraction * len(unl))), replace=False)] = True
    lab = labels[keep]
    dense = np.full(len(lab), -1, np.int64)
    dense[lab >= 0] = np.searchsorted(np.sort(keep_ids), lab[lab >= 0])
    return images[keep], dense, teacher[keep], len(keep_ids)


def run_probe(name: str, change: dict, *, datasets: Path, epochs: int, seed: int, cache: Path) -> dict:
    from atalaia.config import FaceLossConfig, TrainConfig
    from atalaia.evaluate import profile
    from atalaia.evaluate.verification import accuracy_at, best_threshold, cosine_scores, roc_auc
    from atalaia.face.data import load_chip_sets, load_images
    from atalaia.face.train import build_student, embed, train_embedding

    cfg = {**BASE, **change}
    loss = FaceLossConfig(**{k: v for k, v in cfg.items() if k in FaceLossConfig.__dataclass_fields__})
    train = TrainConfig(epochs=int(cfg.get("epochs", epochs)), batch_size=128, weight_decay=5e-5,
                        **{k: v for k, v in cfg.items() if k == "learning_rate"})
    size = 64
    # LFW-overlap identities are left out (the loader's default since issue 11; round-1 probes predate it)
    cs = load_chip_sets([datasets / d for d in cfg.get("sets", ROUND1_SETS)], size, cache_dir=cache,
                        crop=cfg["crop"])
    images_tr, labels, teacher, n_cls = cs.images, cs.labels, cs.teacher, cs.num_classes
    fraction = float(cfg.get("fraction", 1.0))
    views = {}
    if loss.consistent_views:
        from atalaia.face.views import consistent_views

        if fraction < 1.0:
            raise SystemExit("consistent_views and fraction cannot be combined in one probe")
        cv = consistent_views(cs.files, size, k=loss.consistent_views, cache_dir=cache, crop=cfg["crop"],
                              workers=_workers(), log=lambda m: print(m, flush=True))
        views = {"views": cv.views, "view_targets": cv.targets}
    if fraction < 1.0:
        images_tr, labels, teacher, n_cls = _identity_subset(images_tr, labels, teacher, fraction, seed)
        train = dataclasses.replace(train, epochs=int(round(train.epochs / fraction)))
    root, rel, tr, te = _dev_pairs(datasets / "lfw")
    images, bad = load_images([root / r for r in rel], size, crop=cfg["crop"])
    if bad:
        raise SystemExit(f"unreadable View 1 images: {bad[:3]}")
    idx = {r: i for i, r in enumerate(rel)}
    m = build_student(size, width=cfg["width"], embedding_dim=128, head="gap", name=cfg["name"],
                      blocks=cfg.get("blocks"))
    costs = {}
    if "blocks" in cfg:  # a non-registry shape: its row says whether it fits tier M
        from atalaia.face.budget import model_costs

        c = model_costs(m, size)
        costs = {"int8_flash_bytes": c["flash_bytes"], "tflm_arena_bytes": c["arena_bytes"],
                 "macs_per_face": c["macs_per_face"]}
    t0 = time.perf_counter()
    log = train_embedding(m, images_tr, labels, teacher, n_cls, loss=loss, train=train, seed=seed, **views)
    secs = time.perf_counter() - t0
    emb = embed(m, images)
    a_tr, b_tr = _index(tr, idx)
    a_te, b_te = _index(te, idx)
    s_tr, s_te = cosine_scores(emb[a_tr], emb[b_tr]), cosine_scores(emb[a_te], emb[b_te])
    th, acc_tr = best_threshold(s_tr, tr.is_same)
    th_te, _ = best_threshold(s_te, te.is_same)
    acc_te = accuracy_at(s_te, te.is_same, th)
    # both directions (threshold on one file, accuracy on the other), weighted by pair count: 3,200 pairs
    # give a steadier ranking than DevTest's 1,000 alone (binomial std ~1.1 points at 85 %)
    acc_2way = (acc_te * len(s_te) + accuracy_at(s_tr, tr.is_same, th_te) * len(s_tr)) / (len(s_te) + len(s_tr))
    all_s, all_y = np.concatenate([s_tr, s_te]), np.concatenate([tr.is_same, te.is_same])
    return {"probe": name, "change": change, "config": cfg, "epochs": epochs, "seed": seed,
            "params": int(profile.count_params(m)), "train_epochs": train.epochs, "train_chips": int(len(labels)),
            "train_identities": int(n_cls),
            "dev_acc_2way": acc_2way, "dev_auc": roc_auc(all_s, all_y),
            "dev_test_acc": acc_te, "dev_test_auc": roc_auc(s_te, te.is_same),
            "dev_train_acc": acc_tr, "threshold": th, "train_seconds": round(secs, 1),
            # the process's peak so far: a probe run alone (--only NAME) gives its own training memory
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "final_losses": {k: round(v, 4) for k, v in log.epochs[-1].items()}, **costs}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", nargs="*", default=None, help=f"probe names (default: all): {', '.join(PROBES)}")
    ap.add_argument("--cache", type=Path, default=HERE / ".work" / "probe_cache")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lfw_probes.json")
    a = ap.parse_args(argv)
    names = a.only or list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise SystemExit(f"unknown probe(s) {unknown}; available: {', '.join(PROBES)}")
    import json

    doc = json.loads(a.out.read_text()) if a.out.is_file() else {}
    rows = [r for r in doc.get("rows", []) if r["epochs"] == a.epochs and r["seed"] == a.seed]
    done = {r["probe"] for r in rows}
    doc = {"benchmark": "lfw_probes",
           "protocol": "LFW View 1 only (pairsDevTrain 2,200 + pairsDevTest 1,000 pairs). dev_acc_2way: threshold "
                       "on one file, accuracy on the other, both ways, pair-weighted; dev_auc over all 3,200 pairs",
           "input": "64x64 grey", "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
           "base": BASE, "rows": rows}
    for n in names:
        if n in done:
            print(f"{n}: already measured, skipped")
            continue
        row = run_probe(n, PROBES[n], datasets=a.datasets, epochs=a.epochs, seed=a.seed, cache=a.cache)
        print(f"{n}: View 1 acc {100 * row['dev_acc_2way']:.2f}%  AUC {row['dev_auc']:.4f}  "
              f"({row['params']:,} params, {row['train_seconds']:.0f} s)", flush=True)
        doc["rows"].append(row)
        atomic_write_json(a.out, doc)
    return doc


if __name__ == "__main__":
    main()
