"""Closed-set chip task: LFW-overlap and suspect exclusions, identity choice, balanced counts, embeddings kept
aligned with the images, and a clear error when the set is too small."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.data.chip_task import ChipTaskConfig, load_chip_task
from atalaia.data.dataset import split_dataset
from atalaia.errors import DataError


def _chip_set(root: Path) -> Path:
    """5 identities (10..14) x 6 chips; identity 11 is in lfw_overlap.csv; one chip of 12 is suspect;
    identity 14 has only 4 chips. Embedding row i = the chip's (identity, index) so alignment is checkable."""
    rng = np.random.default_rng(0)
    rows, emb, names = [], [], []
    for ident in range(10, 15):
        for j in range(4 if ident == 14 else 6):
            rel = f"chips112/{ident:05d}/{j}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(root / rel)
            rows.append({"chip": rel, "identity": ident, "suspect": int(ident == 12 and j == 0)})
            emb.append(np.full(128, ident * 100 + j, np.float32))
            names.append(rel)
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["chip", "identity", "suspect"])
        w.writeheader()
        w.writerows(rows)
    (root / "lfw_overlap.csv").write_text("identity,n_chips\n11,6\n")
    np.savez(root / "dlib_resnet128.npz", emb=np.stack(emb), chip=np.array(names))
    return root


def test_exclusions_choice_and_alignment(tmp_path):
    root = _chip_set(tmp_path / "set")
    t = load_chip_task(root, ChipTaskConfig(n_identities=2, min_chips=5, max_chips=5, image_size=24, crop=0.7))
    ds = t.dataset
    assert ds.class_names == ("10", "12")  # 11 excluded (LFW overlap); 12 keeps 5 chips after the suspect one
    assert ds.images.shape == (10, 24, 24, 1) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [5, 5]
    assert t.excluded_identities == ("11",) and t.dropped_suspect == 1
    # the embedding of every image is the one stored for its own chip
    for p, e in zip(ds.paths, t.teacher_embeddings, strict=True):
        ident, j = int(Path(p).parent.name), int(Path(p).stem)
        assert e[0] == ident * 100 + j
    assert not any(p.endswith("00012/0.jpg") for p in ds.paths)
    sp = split_dataset(ds, (0.6, 0.2, 0.2), 0)
    assert len(sp.train.labels) + len(sp.val.labels) + len(sp.test.labels) == 10
    assert t.summary()["with_teacher_embedding"] == 10


def test_too_few_identities_is_a_clear_error(tmp_path):
    root = _chip_set(tmp_path / "set")
    with pytest.raises(DataError, match="identities with >= 5 usable chips"):
        load_chip_task(root, ChipTaskConfig(n_identities=4, min_chips=5, max_chips=5))  # 10, 12, 13
    with pytest.raises(DataError, match="not found"):
        load_chip_task(tmp_path / "missing")
    with pytest.raises(DataError, match="max_chips"):
        ChipTaskConfig(min_chips=20, max_chips=10)
