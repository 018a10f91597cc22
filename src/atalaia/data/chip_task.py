"""A closed-set identification task built from a face *chip set* (e.g. the CelebA chips): harder than ORL.

The thesis' Table 1 compares students on a closed-set task; the bundled ORL faces (40 people, 80 test images,
studio light) are too easy and too small to rank them. `load_chip_task` picks ``n_identities`` identities with at
least ``min_chips`` chips each from a chip set (labels.csv + ``dlib_resnet128.npz``, the layout of
`atalaia.face.data`), reads them grey at the student's size, and returns an ordinary `FaceDataset`, so the
usual `split_dataset(ds, fractions, seed)` gives a fixed stratified split.

Choices (all in `ChipTaskConfig`, all written next to the results):
  * identities listed in the set's ``lfw_overlap.csv`` are left out (CelebA people that look like, or are,
    LFW people: the shared data's rule, so a model trained here can still be measured on LFW);
  * chips flagged ``suspect`` in labels.csv (wrong face / label noise) are left out when ``drop_suspect``;
  * which identities: the eligible ones sorted by identity number, the first ``n_identities`` (no randomness,
    so every run and every seed of a benchmark sees the same people; seeds vary the split);
  * at most ``max_chips`` chips per identity (sorted by file name) keeps the classes balanced;
  * grey, centre crop ``crop`` of the 112 chip (dlib's chip has 25 % padding: 0.7 spends the pixels on the face,
    as the face recipe does), LANCZOS resize to ``image_size`` (`atalaia.face.data.read_grey`).

The stored dlib embeddings (computed on the 150x150 RGB chip) come back aligned with the images: they are the
`dlib_head` teacher's input for these chips, no dlib pass needed. The product never assumes where a chip set
lives: the caller passes its folder.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from atalaia.data.dataset import FaceDataset
from atalaia.errors import DataError
from atalaia.face.data import TEACHER_NPZ, read_grey

OVERLAP_CSV = "lfw_overlap.csv"


@dataclass(frozen=True)
class ChipTaskConfig:
    n_identities: int = 100
    min_chips: int = 20
    max_chips: int | None = 20
    image_size: int = 40
    crop: float = 0.7
    drop_suspect: bool = True

    def __post_init__(self) -> None:
        if self.n_identities < 2 or self.min_chips < 3:
            raise DataError("chip task: n_identities >= 2 and min_chips >= 3 (one chip each for train/val/test)")
        if self.max_chips is not None and self.max_chips < self.min_chips:
            raise DataError(f"chip task: max_chips ({self.max_chips}) < min_chips ({self.min_chips})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChipTask:
    """The dataset (class names = the set's identity numbers), the stored dlib embeddings aligned with it
    (NaN rows where a chip has none) and what was excluded."""

    dataset: FaceDataset
    teacher_embeddings: np.ndarray
    excluded_identities: tuple[str, ...]
    dropped_suspect: int
    config: ChipTaskConfig

    def summary(self) -> dict:
        return {"identities": self.dataset.num_classes, "images": len(self.dataset.labels),
                "excluded_lfw_overlap": list(self.excluded_identities), "dropped_suspect": self.dropped_suspect,
                "with_teacher_embedding": int(np.isfinite(self.teacher_embeddings).all(axis=1).sum()),
                "config": self.config.to_dict()}


def _rows(root: Path) -> list[dict[str, str]]:
    f = root / "labels.csv"
    if not f.is_file():
        raise DataError(f"chip set {root} has no labels.csv (columns: chip, identity[, suspect])")
    with f.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"chip", "identity"} <= set(reader.fieldnames):
            raise DataError(f"{f}: needs 'chip' and 'identity' columns; found {reader.fieldnames}")
        return list(reader)


def _overlap(root: Path) -> set[str]:
    f = root / OVERLAP_CSV
    if not f.is_file():
        return set()
    with f.open(newline="", encoding="utf-8") as fh:
        return {str(int(r["identity"])) for r in csv.DictReader(fh)}


def load_chip_task(root: str | Path, cfg: ChipTaskConfig = ChipTaskConfig()) -> ChipTask:
    """Build the closed-set task from the chip set at `root` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"chip set folder not found: {root}")
    excluded = _overlap(root)
    by_id: dict[str, list[str]] = {}
    dropped = 0
    for k, r in enumerate(_rows(root), start=2):
        try:
            ident = str(int(r["identity"]))
        except ValueError:
            raise DataError(f"{root / 'labels.csv'}:{k}: identity must be an integer, got {r['identity']!r}") from None
        if int(ident) < 0 or ident in excluded:
            continue
        if cfg.drop_suspect and str(r.get("suspect", "0")).strip() == "1":
            dropped += 1
            continue
        by_id.setdefault(ident, []).append(r["chip"])
    eligible = sorted((i for i, c in by_id.items() if len(c) >= cfg.min_chips), key=int)
    if len(eligible) < cfg.n_identities:
        raise DataError(f"chip set {root} has {len(eligible)} identities with >= {cfg.min_chips} usable chips "
                        f"(after LFW-overlap and suspect exclusions); {cfg.n_identities} requested: lower "
                        "n_identities or min_chips")
    chosen = eligible[: cfg.n_identities]
    emb_index: dict[str, np.ndarray] = {}
    npz = root / TEACHER_NPZ
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            emb = z["emb"].astype(np.float32)
            emb_index = {str(c): emb[i] for i, c in enumerate(z["chip"])}
    images, labels, paths, teacher = [], [], [], []
    for label, ident in enumerate(chosen):
        chips = sorted(by_id[ident])[: cfg.max_chips] if cfg.max_chips else sorted(by_id[ident])
        for rel in chips:
            images.append(read_grey(root / rel, cfg.image_size, cfg.crop))
            labels.append(label)
            paths.append(str(root / rel))
            teacher.append(emb_index.get(rel, np.full(128, np.nan, np.float32)))
    ds = FaceDataset(np.stack(images)[..., None], np.asarray(labels, np.int32), tuple(chosen), tuple(paths))
    return ChipTask(ds, np.stack(teacher).astype(np.float32), tuple(sorted(excluded, key=int)), dropped, cfg)


__all__ = ["ChipTask", "ChipTaskConfig", "load_chip_task", "OVERLAP_CSV"]
