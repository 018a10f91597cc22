"""The face task's data as the plan consumes it: training chips with their teacher targets, the teacher's
embeddings of the evaluation chips, and what the dlib teacher costs (its weight file and CPU time)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.errors import DataError
from atalaia.face.data import TEACHER_NPZ, load_chip_sets, read_grey
from atalaia.face.evalset import EvalSet


@dataclass(frozen=True)
class TrainingChips:
    """Training chips (N, S, S, 1) uint8, dense labels (-1 = unlabelled), teacher embeddings (NaN = none)."""

    images: np.ndarray
    labels: np.ndarray
    teacher: np.ndarray
    num_classes: int
    info: dict[str, Any]
    files: tuple[str, ...] = ()  # absolute chip paths (consistent teaching re-reads the 112 chips)


def load_training_chips(train_sets: Sequence[Path], size: int, *, cache_dir: Path, crop: float,
                        min_images_per_identity: int, max_train_chips: int | None, seed: int,
                        log: Callable[[str], None], exclude_lfw_overlap: bool = True) -> TrainingChips:
    """Every chip of the chip sets (optionally a seeded subsample), labels re-densified after subsampling
    (identities left with one chip become unlabelled: they still feed KD). `info["per_set"]` says, per set,
    how many identities and chips lfw_overlap.csv removed."""
    cs = load_chip_sets(list(train_sets), size, cache_dir=cache_dir, min_images_per_identity=min_images_per_identity,
                        crop=crop, exclude_lfw_overlap=exclude_lfw_overlap)
    for ps in cs.per_set:
        if ps["lfw_overlap_file"]:
            log(f"[data] {Path(ps['set']).name}: {ps['excluded_identities']} identities ({ps['excluded_chips']} chips) "
                f"left out as LFW overlap ({ps['lfw_overlap_file']})")
    if cs.skipped:
        log(f"[data] {len(cs.skipped)} training chip(s) unreadable, left out (listed in report)")
    idx = np.arange(len(cs))
    if max_train_chips is not None and max_train_chips < len(cs):
        idx = np.sort(np.random.default_rng(seed).choice(len(cs), max_train_chips, replace=False))
    images, labels, teacher = cs.images[idx], cs.labels[idx], cs.teacher[idx]
    lab = labels >= 0
    uniq, inv, cnt = np.unique(labels[lab], return_inverse=True, return_counts=True)
    dense = np.full(len(labels), -1, np.int64)
    keep_id = cnt >= max(2, min(min_images_per_identity, 2))
    remap = -np.ones(len(uniq), np.int64)
    remap[keep_id] = np.arange(int(keep_id.sum()))
    dense[lab] = remap[inv.reshape(-1)]
    num_classes = int(dense.max() + 1) if (dense >= 0).any() else 0
    no_teacher = int((~np.isfinite(teacher).all(axis=1)).sum())
    if no_teacher:
        log(f"[data] {no_teacher} training chip(s) have no stored teacher embedding: KD is masked for them")
    info = {"train_sets": [str(p) for p in train_sets], "sources": cs.sources, "chips": int(len(images)),
            "labelled": int((dense >= 0).sum()), "unlabelled": int((dense < 0).sum()), "identities": num_classes,
            "chips_without_teacher": no_teacher, "skipped": [{"path": p, "reason": why} for p, why in cs.skipped],
            "fingerprint": cs.fingerprint(), "subsampled_to": max_train_chips, "image_size": [size, size],
            "channels": 1, "crop": crop, "exclude_lfw_overlap": exclude_lfw_overlap, "per_set": list(cs.per_set),
            "excluded_lfw_overlap": {"identities": sum(p["excluded_identities"] for p in cs.per_set),
                                     "chips": sum(p["excluded_chips"] for p in cs.per_set)}}
    return TrainingChips(images, dense, teacher, num_classes, info, tuple(cs.files[i] for i in idx))


def teacher_eval_embeddings(ev: EvalSet, *, source: str, cache_dir: Path,
                            log: Callable[[str], None]) -> tuple[np.ndarray, dict[str, Any]]:
    """dlib embeddings of the evaluation chips: stored ones (dlib_resnet128.npz beside the chips), computed with
    dlib (cached) for the rest, or all recomputed when `source` is "recompute"."""
    emb = np.full((len(ev.rel_paths), 128), np.nan, np.float32)
    stored = 0
    if source == "stored":
        for cand in (ev.image_root / TEACHER_NPZ, ev.image_root.parent / TEACHER_NPZ):
            if cand.is_file():
                with np.load(cand, allow_pickle=False) as z:
                    chips, e = [str(c) for c in z["chip"]], z["emb"]
                prefix = ev.image_root.name + "/"
                idx = {c[len(prefix):] if c.startswith(prefix) else c: i for i, c in enumerate(chips)}
                for i, rel in enumerate(ev.rel_paths):
                    j = idx.get(rel)
                    if j is not None:
                        emb[i] = e[j]
                        stored += 1
                break
    todo = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(todo):
        from atalaia.models.dlib_teacher import DlibEmbedder  # dlib is optional: only needed here

        log(f"[teacher] computing dlib embeddings for {len(todo)} chip(s) (~0.1 s each, cached)")
        emb_d = DlibEmbedder(cache=cache_dir / "dlib_teacher_cache.npz")
        chips = np.stack([read_grey(ev.image_root / ev.rel_paths[i], 112) for i in todo])
        emb[todo] = emb_d.embed_chips(chips)
    return emb, {"stored_embeddings": stored, "computed_with_dlib": int(len(todo)), "source": source}


def dlib_costs(ev: EvalSet, log: Callable[[str], None]) -> tuple[int, float | None]:
    """(bytes of dlib's ResNet weight file, median dlib milliseconds per chip) — latency None without dlib."""
    try:
        from atalaia.models.dlib_weights import import_dlib

        _, frm = import_dlib()
        dat = Path(frm.face_recognition_model_location()).stat().st_size
    except (ImportError, OSError) as e:
        log(f"[teacher] dlib not available ({e}): teacher size/latency not measured")
        return 0, None
    try:
        from atalaia.models.dlib_teacher import DlibEmbedder

        e = DlibEmbedder(cache=None)
        chip = read_grey(ev.image_root / ev.rel_paths[0], 112)
        e.embed_chips(chip[None])
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            e.embed_chips(chip[None])
            times.append(1e3 * (time.perf_counter() - t0))
        return int(dat), round(float(np.median(times)), 3)
    except (ImportError, DataError):
        return int(dat), None


__all__ = ["TrainingChips", "dlib_costs", "load_training_chips", "teacher_eval_embeddings"]
