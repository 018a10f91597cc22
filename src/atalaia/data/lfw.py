"""LFW verification pairs (``pairs.txt``, ``pairsDevTrain.txt``, ``pairsDevTest.txt``).

Format (View 2, ``pairs.txt``): first line ``<folds> <n>`` (``10 300``), then for each fold ``n`` same-person
lines ``name i j`` followed by ``n`` different-person lines ``name1 i name2 j``. View 1 files
(``pairsDevTrain.txt`` / ``pairsDevTest.txt``) have a single-number header ``<n>`` and one block (fold 0).
Fields are separated by tabs or spaces.

Image ``i`` of ``name`` lives at ``<root>/<name>/<name>_<iiii>.jpg`` (4-digit, 1-based) — the layout of both
the original LFW tarball and the shared ``/work/shared/datasets/lfw/chips112_gray`` (whose ``labels.csv``
lists ``chips112_gray/<name>/<name>_<iiii>.jpg``). Passing the dataset folder that contains
``chips112_gray/`` also works.

Pairs whose image is missing are not a crash: they are left out of the returned arrays and listed in
``Pairs.missing`` (so a 10-fold score can say how many pairs it could not use). A malformed line is a
:class:`DataError` naming the file and the line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atalaia.errors import DataError

SHARED_CHIPS_DIR = "chips112_gray"


@dataclass(frozen=True)
class MissingPair:
    """A pairs line that could not be used: 1-based line number, fold, and the image paths not found."""

    line: int
    fold: int
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Pairs:
    """Parsed verification pairs (only pairs whose images exist when a root was given).

    left/right: image paths relative to ``root`` (``Name/Name_0001.jpg``). is_same: bool. fold: 0-based fold
    index. line: 1-based line number in ``source``. n_folds / per_fold: from the header. missing: pairs left
    out because an image was not found under ``root``.
    """

    left: tuple[str, ...]
    right: tuple[str, ...]
    is_same: np.ndarray
    fold: np.ndarray
    line: np.ndarray
    n_folds: int
    per_fold: int
    source: Path
    root: Path | None
    missing: tuple[MissingPair, ...] = ()

    def __len__(self) -> int:
        return len(self.left)

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    @property
    def n_declared(self) -> int:
        """Pairs the header promises (kept + missing)."""
        return self.n_folds * 2 * self.per_fold

    def left_paths(self) -> list[Path]:
        return [self._abs(p) for p in self.left]

    def right_paths(self) -> list[Path]:
        return [self._abs(p) for p in self.right]

    def _abs(self, rel: str) -> Path:
        return (self.root / rel) if self.root is not None else Path(rel)


def image_relpath(name: str, num: int, ext: str = ".jpg") -> str:
    """``Name/Name_0001.jpg`` for (name, 1)."""
    return f"{name}/{name}_{num:04d}{ext}"


def resolve_image_root(root: str | Path) -> Path:
    """The folder holding ``<name>/`` directories: ``root`` itself, or ``root/chips112_gray`` if present."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"LFW image folder not found: {root}")
    sub = root / SHARED_CHIPS_DIR
    return sub if sub.is_dir() else root


def _int(tok: str, path: Path, lineno: int, what: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {tok!r}") from None
    if v < 1:
        raise DataError(f"{path}:{lineno}: {what} must be >= 1, got {v}")
    return v


def load_pairs(pairs_file: str | Path, image_root: str | Path | None = None, *, ext: str = ".jpg") -> Pairs:
    """Parse an LFW pairs file; if ``image_root`` is given, check every image exists there.

    Raises DataError for a missing file, a bad header, a line with the wrong number of fields or a
    non-integer image number, a same-person line where a different-person line is due (or vice versa), and a
    line count that does not match the header.
    """
    path = Path(pairs_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"pairs file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read pairs file {path}: {e}") from e
    lines = text.splitlines()
    # first non-blank line is the header
    hdr_idx = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if hdr_idx is None:
        raise DataError(f"{path}: empty pairs file")
    head = lines[hdr_idx].split()
    if len(head) == 2:
        n_folds = _int(head[0], path, hdr_idx + 1, "number of folds")
        per_fold = _int(head[1], path, hdr_idx + 1, "pairs per fold")
    elif len(head) == 1:
        n_folds, per_fold = 1, _int(head[0], path, hdr_idx + 1, "pairs per class")
    else:
        raise DataError(
            f"{path}:{hdr_idx + 1}: header must be '<folds> <pairs per fold>' (e.g. '10 300') or '<n>', got {lines[hdr_idx]!r}"
        )
    root = resolve_image_root(image_root) if image_root is not None else None

    body = [(i + 1, ln) for i, ln in enumerate(lines) if i > hdr_idx and ln.strip()]
    expected = n_folds * 2 * per_fold
    if len(body) != expected:
        last = body[-1][0] if body else hdr_idx + 1
        raise DataError(
            f"{path}:{last}: header promises {n_folds} fold(s) x 2 x {per_fold} = {expected} pair lines, found {len(body)}"
        )
    left: list[str] = []
    right: list[str] = []
    same: list[bool] = []
    fold: list[int] = []
    line_no: list[int] = []
    missing: list[MissingPair] = []
    exists_cache: dict[str, bool] = {}

    def exists(rel: str) -> bool:
        if root is None:
            return True
        if rel not in exists_cache:
            exists_cache[rel] = (root / rel).is_file()
        return exists_cache[rel]

    for k, (lineno, ln) in enumerate(body):
        f, pos = divmod(k, 2 * per_fold)
        want_same = pos < per_fold
        tok = ln.split()
        if want_same:
            if len(tok) != 3:
                raise DataError(
                    f"{path}:{lineno}: fold {f + 1} expects a same-person line 'name i j' here, got {ln.strip()!r}"
                )
            a = image_relpath(tok[0], _int(tok[1], path, lineno, "image number"), ext)
            b = image_relpath(tok[0], _int(tok[2], path, lineno, "image number"), ext)
        else:
            if len(tok) != 4:
                raise DataError(
                    f"{path}:{lineno}: fold {f + 1} expects a different-person line 'name1 i name2 j' here, got {ln.strip()!r}"
                )
            a = image_relpath(tok[0], _int(tok[1], path, lineno, "image number"), ext)
            b = image_relpath(tok[2], _int(tok[3], path, lineno, "image number"), ext)
        gone = tuple(p for p in (a, b) if not exists(p))
        if gone:
            missing.append(MissingPair(line=lineno, fold=f, missing=gone))
            continue
        left.append(a)
        right.append(b)
        same.append(want_same)
        fold.append(f)
        line_no.append(lineno)
    return Pairs(
        left=tuple(left),
        right=tuple(right),
        is_same=np.array(same, dtype=bool),
        fold=np.array(fold, dtype=np.int64),
        line=np.array(line_no, dtype=np.int64),
        n_folds=n_folds,
        per_fold=per_fold,
        source=path,
        root=root,
        missing=tuple(missing),
    )


__all__ = ["MissingPair", "Pairs", "image_relpath", "load_pairs", "resolve_image_root"]
