"""The LFW evaluation set (pairs + an open-set split) and the verification metrics of one model on it.

Every model (teacher, float student, int8 student in LiteRT, int8 student in TFLM) is scored by the same
function, :func:`verification_summary`, on embeddings of the same image list: cosine similarity, LFW 10-fold
accuracy (threshold fitted on 9 folds), ROC AUC, TAR at FAR 1e-2 / 1e-3, and open-set identification.

Open set (door-lock use): people with at least ``open_set_min_images`` LFW images are split in two halves
(seeded). For the enrolled half, the first ``enrol_per_identity`` images of each person are its templates and
the next ones are genuine probes; the other half's images are impostor probes (strangers). The rejection
threshold is the model's own LFW operating point (mean of the 10 fold thresholds), chosen on pairs, not on
the open-set probes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.data.lfw import load_pairs, resolve_image_root
from atalaia.errors import DataError
from atalaia.evaluate.verification import (
    cosine_scores,
    lfw_10fold,
    open_set_identification,
    roc,
    roc_auc,
    tar_at_far,
)
from atalaia.face.data import load_images

FARS = (1e-2, 1e-3)
_IMG_EXT = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")


@dataclass(frozen=True)
class EvalSet:
    """Images (N, S, S, 1) uint8 of every image any protocol uses, and index arrays into them."""

    rel_paths: tuple[str, ...]
    images: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray
    gallery: np.ndarray
    gallery_ids: np.ndarray
    probes: np.ndarray
    probe_ids: np.ndarray
    image_root: Path
    pairs_file: Path
    n_declared: int
    missing_pairs: tuple[dict[str, Any], ...]  # {"line", "fold", "reason"} for each pair left out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.rel_paths).encode())
        for a in (self.left, self.right, self.is_same, self.gallery, self.probes, self.images.shape):
            h.update(np.asarray(a).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        return {
            "image_root": str(self.image_root), "pairs_file": str(self.pairs_file), "images": len(self.rel_paths),
            "pairs_declared": self.n_declared, "pairs_used": int(len(self.left)),
            "pairs_missing": len(self.missing_pairs), "missing_pairs": list(self.missing_pairs[:50]),
            "open_set": {"gallery_templates": int(len(self.gallery)),
                         "enrolled_people": int(len(np.unique(self.gallery_ids))) if len(self.gallery) else 0,
                         "genuine_probes": int(np.isin(self.probe_ids, self.gallery_ids).sum()),
                         "impostor_probes": int((~np.isin(self.probe_ids, self.gallery_ids)).sum())},
        }


def _person_images(root: Path, name: str) -> list[str]:
    d = root / name
    return sorted(f"{name}/{p.name}" for p in d.iterdir() if p.suffix.lower() in _IMG_EXT)


def build_eval_set(lfw_root: str | Path, pairs_file: str | Path, size: int, *, enrol_per_identity: int = 5,
                   open_set_min_images: int = 10, seed: int = 42, crop: float = 1.0) -> EvalSet:
    """Parse the pairs file, pick the open-set split and read every image needed at ``size`` (grey).

    Pairs naming a missing or unreadable image are left out and listed (``missing_pairs``), never a crash.
    """
    root = resolve_image_root(lfw_root)
    pairs = load_pairs(pairs_file, root)
    missing = [{"line": m.line, "fold": m.fold, "reason": "missing image: " + ", ".join(m.missing)}
               for m in pairs.missing]
    # open-set split
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    eligible = []
    for name in people:
        imgs = _person_images(root, name)
        if len(imgs) >= open_set_min_images:
            eligible.append((name, imgs[:open_set_min_images]))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(eligible))
    enrolled = {eligible[i][0] for i in order[: (len(eligible) + 1) // 2]}
    gal, gal_id, prb, prb_id = [], [], [], []
    for name, imgs in eligible:
        if name in enrolled:
            gal += imgs[:enrol_per_identity]
            gal_id += [name] * enrol_per_identity
            prb += imgs[enrol_per_identity:]
            prb_id += [name] * (len(imgs) - enrol_per_identity)
        else:
            prb += imgs
            prb_id += [name] * len(imgs)
    rel = sorted(set(pairs.left) | set(pairs.right) | set(gal) | set(prb))
    images, bad = load_images([root / r for r in rel], size, crop)
    bad_set = {str(Path(p).relative_to(root)) for p, _ in bad}
    reasons = {str(Path(p).relative_to(root)): r for p, r in bad}
    index = {r: i for i, r in enumerate(rel)}
    keep = []
    for k, (a, b) in enumerate(zip(pairs.left, pairs.right, strict=True)):
        gone = [x for x in (a, b) if x in bad_set]
        if gone:
            missing.append({"line": int(pairs.line[k]), "fold": int(pairs.fold[k]),
                            "reason": "; ".join(reasons[g] for g in gone)})
        else:
            keep.append(k)
    keep_a = np.asarray(keep, np.int64)
    if len(keep_a) == 0:
        raise DataError(f"no usable pairs in {pairs_file} (all {pairs.n_declared} name missing/unreadable images)")
    ok_g = [i for i, g in enumerate(gal) if g not in bad_set]
    ok_p = [i for i, p in enumerate(prb) if p not in bad_set]
    return EvalSet(
        rel_paths=tuple(rel), images=images,
        left=np.array([index[pairs.left[k]] for k in keep], np.int64),
        right=np.array([index[pairs.right[k]] for k in keep], np.int64),
        is_same=pairs.is_same[keep_a], fold=pairs.fold[keep_a],
        gallery=np.array([index[gal[i]] for i in ok_g], np.int64), gallery_ids=np.array([gal_id[i] for i in ok_g]),
        probes=np.array([index[prb[i]] for i in ok_p], np.int64), probe_ids=np.array([prb_id[i] for i in ok_p]),
        image_root=root, pairs_file=Path(pairs_file), n_declared=pairs.n_declared,
        missing_pairs=tuple(sorted(missing, key=lambda m: m["line"])),
    )


def verification_summary(emb: np.ndarray, ev: EvalSet) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Metrics of one model from its embeddings of ``ev.images`` (N, D); returns (metrics, (fpr, tpr))."""
    emb = np.asarray(emb, np.float64)
    if len(emb) != len(ev.images):
        raise DataError(f"{len(emb)} embeddings for {len(ev.images)} evaluation images")
    s = cosine_scores(emb[ev.left], emb[ev.right])
    ten = lfw_10fold(s, ev.is_same, ev.fold)
    out: dict[str, Any] = {
        "score": "cosine",
        "acc_mean": ten["mean"], "acc_std": ten["std"], "fold_acc": ten["fold_acc"],
        "threshold": float(np.mean(ten["fold_threshold"])), "fold_threshold": ten["fold_threshold"],
        "auc": roc_auc(s, ev.is_same), "n_pairs": int(len(s)), "pairs_missing": len(ev.missing_pairs),
    }
    for far in FARS:
        tar, th = tar_at_far(s, ev.is_same, far)
        out[f"tar_at_far_{far:g}"] = tar
        out[f"threshold_at_far_{far:g}"] = th
    if len(ev.gallery):
        os_ = open_set_identification(emb[ev.gallery], ev.gallery_ids, emb[ev.probes], ev.probe_ids,
                                      out["threshold"])
        os_["enrol_per_identity"] = int(len(ev.gallery) // max(1, len(np.unique(ev.gallery_ids))))
        out["open_set"] = os_
    fpr, tpr, _ = roc(s, ev.is_same)
    return out, (fpr, tpr)


__all__ = ["EvalSet", "FARS", "build_eval_set", "verification_summary"]
