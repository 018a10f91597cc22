"""A user's own training set: aligned chips (``atalaia align``) -> a chip set in the shared sets' folder format.

    atalaia align  PHOTOS/  ALIGNED/      # PHOTOS/<person>/<photo>  ->  ALIGNED/<person>/<photo>.jpg (112x112)
    atalaia make-set ALIGNED/ MYSET/      # -> MYSET/chips112/<person>/..., unlabeled/..., labels.csv,
                                          #    dlib_resnet128.npz (dlib's embedding of every chip)
    atalaia run recipes/lfw_s.yaml --set 'face.train_sets=[..., /path/to/MYSET]'

Chips in a sub-folder are labelled by that folder's name (identity = its index in sorted order; the name is kept
in the ``name`` column); chips directly in ALIGNED/ (or every chip, with ``unlabelled=True``) go to
``unlabeled/`` with identity -1: they feed only the label-free distillation terms. A person whose photos land in
two sets is two identities to the trainer, so keep one person in one set.

The teacher embedding is dlib's ResNet on the stored 112 chip resized to 150x150 (``DlibEmbedder``): the
shared sets embedded the 150 chip before the resize; the difference is ~0.04 L2 (dlib's same-person threshold is
0.6). Chips are copied byte for byte when they already are 112x112 (no re-encoding); other square images are
resized to 112 (LANCZOS, JPEG q=90); anything not square is not a chip, and the error says to align first.
Embeddings are cached by chip content in ``MYSET/.teacher_cache.npz``, so re-running after adding photos only
embeds the new chips. The files that describe the set (labels.csv, the npz) are written atomically.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atalaia.data.align import CHIP_SIZE, IMAGE_EXTENSIONS
from atalaia.data.images import read_8bit
from atalaia.errors import DataError
from atalaia.face.data import TEACHER_NPZ, UNLABELED_DIR
from atalaia.ioutil import atomic_write_bytes, atomic_write_text

CHIPS_DIR = "chips112"


@dataclass
class MakeSetSummary:
    """What :func:`make_chip_set` wrote: counts, the identity names (index = identity), unreadable files."""

    dst: Path
    chips: int = 0
    labelled: int = 0
    unlabelled: int = 0
    identities: int = 0  # identities with at least one chip written
    names: list[str] = field(default_factory=list)  # names[identity] = its sub-folder name
    embedded: int = 0  # chips dlib embedded in this call (the rest came from the cache)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _list_chips(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(src).parts))


def _chip(path: Path) -> tuple[np.ndarray, bytes]:
    """(pixels (112, 112[, 3]) uint8, the bytes to store): the file itself when it is a 112x112 JPEG chip."""
    im = read_8bit(path, "RGB")
    with Image.open(path) as raw:
        grey = raw.mode in ("L", "I;16", "I")
        is_jpeg = raw.format == "JPEG"
    im = im.convert("L") if grey else im
    if im.size == (CHIP_SIZE, CHIP_SIZE) and is_jpeg:
        return np.asarray(im, np.uint8), path.read_bytes()
    if im.size != (CHIP_SIZE, CHIP_SIZE):
        im = im.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    with Image.open(io.BytesIO(buf.getvalue())) as stored:  # embed the pixels as stored, after JPEG
        return np.asarray(stored.convert(im.mode), np.uint8), buf.getvalue()


def _plan(src: Path, unlabelled: bool) -> tuple[list[tuple[Path, str, int, str]], list[str]]:
    """[(source file, chip path in the set, identity, name)] and the identity names."""
    files = _list_chips(src)
    labelled = {f for f in files if len(f.relative_to(src).parts) > 1 and not unlabelled}
    names = sorted({f.relative_to(src).parts[0] for f in labelled})
    ident = {n: i for i, n in enumerate(names)}
    out, used = [], set()
    for f in files:
        parts = f.relative_to(src).parts
        stem = "_".join(parts[1:-1] + (f.stem,)) if f in labelled else "_".join(parts[:-1] + (f.stem,))
        if f in labelled:  # deeper folders flatten into the person's folder
            chip, i, name = f"{CHIPS_DIR}/{parts[0]}/{stem}.jpg", ident[parts[0]], parts[0]
        else:
            chip, i, name = f"{UNLABELED_DIR}/{stem}.jpg", -1, ""
        if chip in used:  # a.png and a.jpg in one folder
            chip = chip[:-4] + f"_{f.suffix.lstrip('.').lower()}.jpg"
        used.add(chip)
        out.append((f, chip, i, name))
    return out, names


def make_chip_set(src: str | Path, dst: str | Path, *, unlabelled: bool = False, progress: bool = True,
                  batch_size: int = 16, embedder: Any = None) -> MakeSetSummary:
    """Write the chip set ``dst`` (chips112/, unlabeled/, labels.csv, dlib_resnet128.npz) from the aligned chips
    under ``src`` (the output folder of ``atalaia align``). ``embedder``: a ``DlibEmbedder`` (tests pass one to
    share it); by default one with the set's content-keyed cache. Returns the counts."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"aligned chips folder not found: {src} (make it with `atalaia align PHOTOS {src}`)")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise DataError(f"make-set destination {dst} must be outside the source folder {src}")
    plan, names = _plan(src, unlabelled)
    if not plan:
        raise DataError(f"no chips under {src} (image files: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    for f, *_ in plan:  # refuse photos before loading dlib (headers only; unreadable files are listed later)
        try:
            with Image.open(f) as im:
                w, h = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if w != h:
            raise DataError(f"{f}: {w}x{h} is not an aligned face chip; run `atalaia align SRC ALIGNED` on the "
                            "photos first and give ALIGNED to make-set")
    if embedder is None:
        from atalaia.models.dlib_teacher import DlibEmbedder  # dlib is optional: only needed here

        embedder = DlibEmbedder(cache=dst / ".teacher_cache.npz")
    summary = MakeSetSummary(dst=dst, names=names)
    rows, embs = [], []
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = (TextColumn("chips + dlib embeddings"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress, transient=True) as bar:
        task = bar.add_task("make-set", total=len(plan))
        for s in range(0, len(plan), batch_size):
            batch, pixels = [], []
            for f, chip, ident, name in plan[s : s + batch_size]:
                try:
                    px, blob = _chip(f)
                except DataError as e:
                    summary.skipped.append((f.relative_to(src).as_posix(), str(e)))
                    continue
                atomic_write_bytes(dst / chip, blob)
                batch.append({"chip": chip, "identity": ident, "name": name, "source": f.relative_to(src).as_posix()})
                pixels.append(px)
            if pixels:
                before = len(embedder.cache) if getattr(embedder, "cache", None) is not None else None
                embs.append(embedder.embed_chips(pixels))
                after = len(embedder.cache) if before is not None else None
                summary.embedded += (after - before) if before is not None else len(pixels)
                rows += batch
            bar.advance(task, len(plan[s : s + batch_size]))
    if not rows:
        raise DataError(f"no readable chips under {src}: {summary.skipped[0][0]}: {summary.skipped[0][1]}")
    _write_index(dst, rows, np.concatenate(embs), summary)
    return summary


def _write_index(dst: Path, rows: list[dict], emb: np.ndarray, summary: MakeSetSummary) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["chip", "identity", "name", "source"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(dst / "labels.csv", buf.getvalue())
    b = io.BytesIO()
    np.savez(b, emb=emb.astype(np.float32), chip=np.array([r["chip"] for r in rows], dtype=str),
             identity=np.array([r["identity"] for r in rows], np.int32))
    atomic_write_bytes(dst / TEACHER_NPZ, b.getvalue())
    if summary.skipped:
        atomic_write_text(dst / "make_set_failed.txt", "".join(f"{p}\t{why}\n" for p, why in summary.skipped))
    summary.chips = len(rows)
    summary.labelled = sum(r["identity"] >= 0 for r in rows)
    summary.unlabelled = summary.chips - summary.labelled
    summary.identities = len({r["identity"] for r in rows if r["identity"] >= 0})


__all__ = ["MakeSetSummary", "make_chip_set"]
