"""Checks that run before any heavy import or work: a mistake costs a second, not a TensorFlow import and a
data load, and leaves nothing behind.

Order (each failure is one `AtalaiaError` line): the recipe (parsed and range-checked by `config.load_recipe`,
before this module is called), the output folder, the dataset listing and every image header. Nothing here
imports TensorFlow or decodes a pixel, and nothing is created: the run folder is made by the pipeline after
these checks pass.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from atalaia.config import Recipe
from atalaia.data.dataset import check_identity_folder
from atalaia.deploy.targets import get_target
from atalaia.errors import AtalaiaError, DataError


def check_out_dir(out: str | Path, flag: str = "--out") -> None:
    """The run folder can be created (or is an existing folder) and written to; else one line saying why.

    The write test creates and removes a temporary file in the nearest existing folder: permission bits alone
    lie for root and on read-only mounts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AtalaiaError(f"{flag} '{out}' is a file, not a folder; give a folder path (it is created if missing)")
    probe = out.absolute()
    while not probe.exists():
        if probe.is_symlink():  # a dangling symlink on the way
            raise AtalaiaError(f"{flag} '{out}': '{probe}' is a broken symbolic link; remove it or choose another path")
        probe = probe.parent
    if not probe.is_dir():
        raise AtalaiaError(f"{flag} '{out}': '{probe}' is a file, so no folder can be made under it; choose "
                           "another path")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".atalaia-write-test-")
    except OSError as e:
        where = "it" if probe == out.absolute() else f"'{probe}'"
        raise AtalaiaError(f"{flag} '{out}' is not writable ({e.strerror or e} in {where}); choose a folder "
                           "you can write to") from None
    os.close(fd)
    os.unlink(tmp)


def _resolve(r: Recipe, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (Path(r.base_dir) / q).resolve()


def check_data(r: Recipe) -> str:
    """The recipe's data exists and every image header is acceptable. Returns a one-line summary.

    Closed-set recipes: the identity folder listing, counts and every image header (`data.max_image_pixels`).
    Verification recipes: the chip-set folders, the LFW folder and its pairs file (their chips are read, with
    unreadable ones listed rather than fatal, by the face pipeline)."""
    if r.task == "verification":
        f = r.face
        for ts in f.train_sets:
            if not _resolve(r, ts).is_dir():
                raise DataError(f"face.train_sets: chip set folder not found: '{_resolve(r, ts)}'")
        lfw = _resolve(r, f.lfw_root)
        if not lfw.is_dir():
            raise DataError(f"face.lfw_root: folder not found: '{lfw}'")
        pairs = Path(f.pairs) if Path(f.pairs).is_absolute() else lfw / f.pairs
        if not pairs.is_file():
            raise DataError(f"face.pairs: pairs file not found: '{pairs}'")
        return f"{len(f.train_sets)} chip set(s), LFW at {lfw}"
    d = r.data
    n = check_identity_folder(r.data_root(), min_images_per_class=d.min_images_per_class,
                              max_classes=d.max_classes, max_pixels=d.max_image_pixels)
    return f"{n} images under {r.data_root()}"


def preflight(r: Recipe, out_dir: str | Path, flag: str = "--out") -> str:
    """Targets, output folder, then data: everything that can be checked before TensorFlow is imported."""
    for t in r.evaluate.targets:
        get_target(t)  # RecipeError listing the valid names
    check_out_dir(out_dir, flag)
    return check_data(r)


__all__ = ["check_data", "check_out_dir", "preflight"]
