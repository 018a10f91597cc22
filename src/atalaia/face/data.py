"""Face-chip datasets for embedding training and LFW evaluation, in grey at the student's input size.

A *chip set* is a folder made by the shared chip recipe (dlib 5-point alignment, ``get_face_chip(size=150,
padding=0.25)`` saved at 112x112) with

    labels.csv            column ``chip`` (path relative to the folder) and ``identity`` (-1 = unlabelled);
                          without it, ``<identity>/<chip>`` sub-folders (what ``atalaia align`` writes)
    dlib_resnet128.npz    optional stored teacher embeddings: ``emb`` (N, 128) float32 or float16 and ``chip``
                          (same paths); chips without one get no KD term (the pipeline can compute them with dlib)
    lfw_overlap.csv       optional, column ``identity``: identities that sit on top of LFW people; with
                          ``exclude_lfw_overlap`` (the default) every chip of them is left out
    unlabeled/            optional chips without a usable label: always label -1 (KD terms only, never the
                          margin head), whatever labels.csv says

(``celeba_subset_299ids``, ``celeba_more`` and ``more_ids_gray`` are such folders; ``atalaia make-set`` writes one
from the output of ``atalaia align``). Chips may be RGB or grey. Every chip is read as grey (Pillow ``L``: the LFW copy is grey, and grey is the cheaper MCU camera
format), optionally centre-cropped (``face.crop``), resized from 112 to the student input with LANCZOS, and
kept as uint8. The decoded arrays are cached
in ``cache_dir`` keyed by the folder's labels.csv content and the size, so the second run starts instantly.

Unreadable chips (corrupt/truncated files, missing files) are not a crash: they are left out and listed in
``ChipSet.skipped`` with the reason, so counts always add up. A malformed labels.csv, lfw_overlap.csv or teacher
npz is: one DataError naming the file and what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from atalaia.data.dataset import to_float
from atalaia.data.images import read_8bit
from atalaia.errors import DataError
from atalaia.ioutil import atomic_write_bytes

TEACHER_NPZ = "dlib_resnet128.npz"
LFW_OVERLAP_CSV = "lfw_overlap.csv"
UNLABELED_DIR = "unlabeled"
CACHE_VERSION = "v1-grey-lanczos"


@dataclass(frozen=True)
class ChipSet:
    """Images (N, S, S, 1) uint8, identity labels (N,) int64 (-1 = unlabelled, else 0..num_classes-1, dense
    over all sets loaded together), stored teacher embeddings (N, 128) float32 (NaN rows when absent), chip
    paths, and the skipped files ``(path, reason)``."""

    images: np.ndarray
    labels: np.ndarray
    teacher: np.ndarray
    paths: tuple[str, ...]
    num_classes: int
    skipped: tuple[tuple[str, str], ...] = ()
    sources: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # absolute chip file paths (same order): consistent teaching re-reads the chips
    per_set: tuple[dict, ...] = ()  # per folder: chips, labelled identities, unlabelled, LFW-overlap exclusions

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_teacher(self) -> np.ndarray:
        return np.isfinite(self.teacher).all(axis=1)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(np.ascontiguousarray(self.teacher).tobytes())
        h.update("\n".join(self.paths).encode())
        h.update(str(self.images.shape).encode())
        return h.hexdigest()[:16]


def center_crop(im: Image.Image, crop: float) -> Image.Image:
    """Keep the centred square of side ``crop`` x the shorter side (``crop`` in (0, 1]; 1 = unchanged).

    The shared chips follow dlib's ``padding=0.25``: the face box is the central 1/1.5 = 67 % of the side and
    the rest is hair, ears and background. Cropping to ~0.7 before the resize gives a small input more pixels
    on the face at the same MACs (measured: +1.3 LFW points at 64x64, 6 epochs)."""
    if not 0.0 < crop <= 1.0:
        raise DataError(f"face.crop must be in (0, 1], got {crop}")
    if crop == 1.0:
        return im
    w, h = im.size
    c = int(round(min(w, h) * crop))
    x0, y0 = (w - c) // 2, (h - c) // 2
    return im.crop((x0, y0, x0 + c, y0 + c))


def read_grey(path: str | Path, size: int, crop: float = 1.0) -> np.ndarray:
    """One image file -> (size, size) uint8 grey (Pillow ``L``, optional centre crop, LANCZOS resize).
    DataError if unreadable."""
    g = read_8bit(path, "L")  # 16-bit chips by their declared range; size limit; DataError naming the file
    g = center_crop(g, crop)
    if g.size != (size, size):
        g = g.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(g, dtype=np.uint8)


def grey_resize(chips: np.ndarray, size: int, crop: float = 1.0) -> np.ndarray:
    """Aligned chips (N, H, W[, C]) uint8 (RGB or grey) -> (N, size, size, 1) uint8, same recipe as files."""
    out = np.zeros((len(chips), size, size, 1), np.uint8)
    for i, c in enumerate(np.asarray(chips)):
        if c.ndim == 3 and c.shape[2] == 1:
            c = c[..., 0]
        im = center_crop(Image.fromarray(c).convert("L"), crop)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        out[i, ..., 0] = np.asarray(im)
    return out


def _read_labels(root: Path) -> list[tuple[str, int]]:
    f = root / "labels.csv"
    if not f.is_file():
        # the layout `atalaia align SRC DST` writes: DST/<identity>/<chip>; identity = folder order
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        rows_f = [(f"{d.name}/{c.name}", k) for k, d in enumerate(folders) for c in sorted(d.iterdir())
                  if c.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".bmp")]
        if not rows_f:
            raise DataError(f"chip set {root} has no labels.csv (columns: chip, identity) and no "
                            "<identity>/<chip> image folders")
        return rows_f
    rows: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    with f.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "chip" not in reader.fieldnames:
            raise DataError(f"{f}: needs a 'chip' column (and 'identity'); found {reader.fieldnames}")
        for k, row in enumerate(reader, start=2):
            chip, ident = (row.get("chip") or "").strip(), row.get("identity", "-1")
            if not chip:
                raise DataError(f"{f}:{k}: empty 'chip' (a path relative to {root}); fix or delete the line")
            if chip in seen:
                raise DataError(f"{f}:{k}: chip {chip!r} is listed twice (first on line {seen[chip]}); keep one")
            seen[chip] = k
            try:
                ident_i = int(ident) if ident not in (None, "") else -1
            except ValueError:
                raise DataError(f"{f}:{k}: identity must be an integer, got {ident!r}") from None
            if chip.split("/", 1)[0] == UNLABELED_DIR:
                ident_i = -1  # unlabeled/ chips feed the label-free terms only
            rows.append((chip, ident_i))
    if not rows:
        raise DataError(f"{f}: no chips listed")
    return rows


def read_lfw_overlap(root: Path) -> set[int] | None:
    """Raw identities listed in ``root/lfw_overlap.csv`` (column ``identity``), or None without the file."""
    f = root / LFW_OVERLAP_CSV
    if not f.is_file():
        return None
    with f.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "identity" not in reader.fieldnames:
            raise DataError(f"{f}: needs an 'identity' column (the set's raw identity ids); found {reader.fieldnames}")
        out = set()
        for k, row in enumerate(reader, start=2):
            try:
                out.add(int(row["identity"]))
            except (TypeError, ValueError):
                raise DataError(f"{f}:{k}: identity must be an integer, got {row['identity']!r}") from None
    return out


def _stored_teacher(npz: Path, paths: list[str], ids: list[int], labels_file: str) -> np.ndarray:
    """(len(paths), 128) float32 from the set's teacher npz (NaN rows for chips it does not hold). A file that
    cannot belong to these chips (bad keys/shapes, no chip in common, other identities) is a DataError."""
    teacher = np.full((len(paths), 128), np.nan, np.float32)
    if not npz.is_file():
        return teacher
    try:
        with np.load(npz, allow_pickle=False) as z:
            missing = [k for k in ("emb", "chip") if k not in z.files]
            if missing:
                raise DataError(f"{npz}: needs arrays 'emb' (N, 128) and 'chip' (N,); missing {missing}")
            chips, emb = [str(c) for c in z["chip"]], z["emb"]
            npz_ids = z["identity"] if "identity" in z.files else None
    except (OSError, ValueError) as e:
        raise DataError(f"{npz}: unreadable ({e}); re-create it or delete it (chips then get no KD term)") from e
    if emb.ndim != 2 or emb.shape[1] != 128 or len(emb) != len(chips):
        raise DataError(f"{npz}: 'emb' must be (N, 128) with N = len('chip') = {len(chips)}; got {emb.shape}")
    index = {c: i for i, c in enumerate(chips)}
    hits = [(i, index[p]) for i, p in enumerate(paths) if p in index]
    if paths and not hits:
        raise DataError(f"{npz}: none of its {len(chips)} 'chip' paths (e.g. {chips[0]!r}) is a chip of "
                        f"{labels_file} (e.g. {paths[0]!r}); both must be relative to the set folder")
    if npz_ids is not None and len(npz_ids) == len(chips):
        bad = [(paths[i], int(npz_ids[j]), ids[i]) for i, j in hits if ids[i] >= 0 and int(npz_ids[j]) != ids[i]]
        if bad:
            p, a, b = bad[0]
            raise DataError(f"{npz}: 'identity' disagrees with {labels_file} for {len(bad)} chip(s), e.g. {p!r}: "
                            f"{a} vs {b}; the npz was made for other labels: re-create it")
    if hits:
        i_idx, j_idx = (np.asarray(v) for v in zip(*hits, strict=True))
        teacher[i_idx] = emb[j_idx].astype(np.float32)  # float16 stores (more_ids_gray) widen here
    return teacher


def _load_one(root: Path, size: int, cache_dir: Path | None, crop: float = 1.0) -> dict:
    """Decode one chip set (or load its cache). Identities stay raw (set-local) here."""
    rows = _read_labels(root)
    listing = "\n".join(f"{c},{i}" for c, i in rows)
    crop_tag = "" if crop == 1.0 else f"|crop{crop:g}"
    key_src = f"{listing}|{size}|{CACHE_VERSION}|{root.resolve()}{crop_tag}".encode()
    key = hashlib.sha256(key_src).hexdigest()[:16]
    cache = cache_dir / f"chips_{root.name}_{size}_{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    imgs, ids, paths, skipped = [], [], [], []
    for rel, ident in rows:
        try:
            imgs.append(read_grey(root / rel, size, crop))
        except DataError as e:
            skipped.append((rel, str(e)))
            continue
        ids.append(ident)
        paths.append(rel)
    labels_file = str(root / "labels.csv") if (root / "labels.csv").is_file() else f"the folders of {root}"
    d = {
        "images": np.stack(imgs)[..., None] if imgs else np.zeros((0, size, size, 1), np.uint8),
        "ids": np.asarray(ids, np.int64),
        "teacher": _stored_teacher(root / TEACHER_NPZ, paths, ids, labels_file),
        "paths": np.asarray(paths, dtype=str),
        "skipped": np.asarray([f"{p}\t{r}" for p, r in skipped], dtype=str),
    }
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, **d)
        atomic_write_bytes(cache, buf.getvalue())
    return d


def _exclude_overlap(root: Path, d: dict, exclude: bool) -> tuple[np.ndarray, dict]:
    """(chips kept, this set's counts): the identities of lfw_overlap.csv are dropped with all their chips."""
    ids = d["ids"]
    overlap = read_lfw_overlap(root) if exclude else None
    drop = np.isin(ids, sorted(overlap)) & (ids >= 0) if overlap else np.zeros(len(ids), bool)
    keep = ~drop
    lab = ids[keep] >= 0
    info = {"set": str(root), "chips": int(keep.sum()), "labelled_chips": int(lab.sum()),
            "unlabelled_chips": int((~lab).sum()), "identities": int(len(np.unique(ids[keep][lab]))),
            "lfw_overlap_file": str(root / LFW_OVERLAP_CSV) if overlap is not None else None,
            "lfw_overlap_listed": len(overlap) if overlap is not None else 0,
            "excluded_identities": int(len(np.unique(ids[drop]))), "excluded_chips": int(drop.sum())}
    return keep, info


def load_chip_sets(roots: Sequence[str | Path], size: int, *, cache_dir: str | Path | None = None,
                   min_images_per_identity: int = 2, crop: float = 1.0, exclude_lfw_overlap: bool = True) -> ChipSet:
    """Load and concatenate chip sets; identities become dense labels 0..K-1 across sets (sets are assumed
    identity-disjoint, as the CelebA folders are; a set's identity 7 and another's 7 stay different).
    Identities with fewer than ``min_images_per_identity`` chips become unlabelled (-1): they still feed KD.
    With ``exclude_lfw_overlap`` every chip of an identity in a set's lfw_overlap.csv is left out (a model
    measured on LFW must not have trained on LFW people); ``ChipSet.per_set`` counts what was excluded.
    """
    if not roots:
        raise DataError("face.train_sets is empty: give at least one chip-set folder (labels.csv + chips)")
    cdir = Path(cache_dir) if cache_dir else None
    images, raw_ids, teacher, paths, files, skipped, sources, per_set = [], [], [], [], [], [], {}, []
    for s, r in enumerate(roots):
        root = Path(r)
        if not root.is_dir():
            raise DataError(f"chip set folder not found: {root}")
        d = _load_one(root, int(size), cdir, crop)
        keep, info = _exclude_overlap(root, d, exclude_lfw_overlap)
        ids = d["ids"][keep]
        images.append(d["images"][keep])
        raw_ids.append(np.stack([np.where(ids >= 0, s, -1), ids], axis=1))  # (set, identity)
        teacher.append(d["teacher"][keep])
        paths += [f"{root.name}/{p}" for p in d["paths"][keep]]
        files += [str((root / p).resolve()) for p in d["paths"][keep]]
        skipped += [(f"{root}/{t.split(chr(9), 1)[0]}", t.split(chr(9), 1)[-1]) for t in d["skipped"]]
        sources[str(root)] = int(keep.sum())
        per_set.append(info)
    if not paths:
        raise DataError(f"no readable chips in {', '.join(map(str, roots))}")
    labels = _dense_labels(np.concatenate(raw_ids), min_images_per_identity)
    num_classes = int(labels.max() + 1) if (labels >= 0).any() else 0
    return ChipSet(images=np.concatenate(images), labels=labels, teacher=np.concatenate(teacher),
                   paths=tuple(paths), num_classes=num_classes, skipped=tuple(skipped), sources=sources,
                   files=tuple(files), per_set=tuple(per_set))


def _dense_labels(pairs: np.ndarray, min_images_per_identity: int) -> np.ndarray:
    """(set, raw identity) rows -> dense labels 0..K-1; identities with too few chips and -1 rows -> -1."""
    labels = np.full(len(pairs), -1, np.int64)
    lab = pairs[:, 0] >= 0
    if lab.any():
        keys, inv, counts = np.unique(pairs[lab], axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        ok = counts[inv] >= min_images_per_identity
        remap = -np.ones(len(keys), np.int64)
        remap[counts >= min_images_per_identity] = np.arange(int((counts >= min_images_per_identity).sum()))
        labels[lab] = np.where(ok, remap[inv], -1)
    return labels


def load_images(paths: Sequence[str | Path], size: int, crop: float = 1.0) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Read image files as (N, size, size, 1) uint8 grey; unreadable ones are zero images listed in
    ``bad`` as (path, reason) so the caller can drop the pairs that use them."""
    out = np.zeros((len(paths), size, size, 1), np.uint8)
    bad: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        try:
            out[i, ..., 0] = read_grey(p, size, crop)
        except DataError as e:
            bad.append((str(p), str(e)))
    return out, bad


def representative_inputs(images_uint8: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """PTQ calibration inputs: ``n`` random chips as float [0, 1] plus one all-black and one all-white image.

    The two extremes pin the int8 input quantization to the full pixel range (scale 1/255, zero point -128),
    so the MCU feeds ``pixel - 128`` with no rescaling, whatever the sampled chips happen to contain.
    """
    imgs = np.asarray(images_uint8)
    pick = to_float(imgs[np.random.default_rng(seed).permutation(len(imgs))[:n]])
    ends = np.stack([np.zeros(imgs.shape[1:], np.float32), np.ones(imgs.shape[1:], np.float32)])
    return np.concatenate([pick, ends])


__all__ = ["ChipSet", "LFW_OVERLAP_CSV", "TEACHER_NPZ", "center_crop", "grey_resize", "load_chip_sets", "load_images",
           "read_grey", "read_lfw_overlap", "representative_inputs"]
