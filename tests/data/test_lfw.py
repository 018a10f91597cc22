"""LFW pairs parsing: both header formats, fold structure, missing images, malformed lines, the shared files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atalaia.data.lfw import image_relpath, load_pairs, resolve_image_root
from atalaia.errors import DataError

TWO_FOLDS = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Cy\t1\tAnn\t2
Bob\t2\t3
Cy\t1\t2
Ann\t2\tCy\t2
Bob\t1\tCy\t1
"""


def _write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _touch_images(root: Path, rels) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_image_relpath():
    assert image_relpath("Abel_Pacheco", 4) == "Abel_Pacheco/Abel_Pacheco_0004.jpg"


def test_parse_two_folds_structure(tmp_path):
    p = load_pairs(_write(tmp_path, TWO_FOLDS))
    assert (p.n_folds, p.per_fold, len(p), p.n_missing, p.n_declared) == (2, 2, 8, 0, 8)
    assert p.is_same.tolist() == [True, True, False, False] * 2
    assert p.fold.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert p.line.tolist() == list(range(2, 10))
    assert p.left[0] == "Ann/Ann_0001.jpg" and p.right[0] == "Ann/Ann_0002.jpg"
    assert p.left[3] == "Cy/Cy_0001.jpg" and p.right[3] == "Ann/Ann_0002.jpg"
    assert p.left_paths()[0] == Path("Ann/Ann_0001.jpg")


def test_single_number_header_is_one_fold(tmp_path):
    p = load_pairs(_write(tmp_path, "2\nAnn 1 2\nBob 1 3\nAnn 1 Bob 2\nCy 1 Ann 2\n\n"))
    assert (p.n_folds, p.per_fold, len(p)) == (1, 2, 4)
    assert p.fold.tolist() == [0, 0, 0, 0] and p.is_same.tolist() == [True, True, False, False]


def test_missing_images_are_counted_not_fatal(tmp_path):
    pairs = _write(tmp_path, TWO_FOLDS)
    root = tmp_path / "imgs"
    every = {image_relpath(n, i) for n in ("Ann", "Bob", "Cy") for i in (1, 2, 3)}
    _touch_images(root, every - {"Bob/Bob_0003.jpg"})
    p = load_pairs(pairs, root)
    # Bob_0003 is used by line 3 (Bob 1 3) and line 6 (Bob 2 3)
    assert len(p) == 6 and p.n_missing == 2
    assert [(m.line, m.fold, m.missing) for m in p.missing] == [
        (3, 0, ("Bob/Bob_0003.jpg",)),
        (6, 1, ("Bob/Bob_0003.jpg",)),
    ]
    assert 3 not in p.line and 6 not in p.line
    assert all(x.is_file() for x in p.left_paths() + p.right_paths())


def test_root_with_shared_chips_subfolder_is_resolved(tmp_path):
    _touch_images(tmp_path / "lfw" / "chips112_gray", ["Ann/Ann_0001.jpg"])
    assert resolve_image_root(tmp_path / "lfw") == tmp_path / "lfw" / "chips112_gray"
    with pytest.raises(DataError, match="not found"):
        resolve_image_root(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1 1\nAnn 1\nAnn 1 Bob 1\n", 2, "same-person"),
        ("1 1\nAnn 1 2\nAnn 1 Bob\n", 3, "different-person"),
        ("1 1\nAnn 1 Bob 2\nAnn 1 Bob 1\n", 2, "same-person"),  # a different line where a same line is due
        ("1 1\nAnn one 2\nAnn 1 Bob 1\n", 2, "integer"),
        ("1 1\nAnn 0 2\nAnn 1 Bob 1\n", 2, ">= 1"),
        ("1 2\nAnn 1 2\nAnn 1 Bob 1\n", 3, "found 2"),
        ("ten 300\n", 1, "integer"),
        ("10 300 7\n", 1, "header"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, what):
    path = _write(tmp_path, text, "bad_pairs.txt")
    with pytest.raises(DataError, match=rf"bad_pairs\.txt:{line}:.*{what}"):
        load_pairs(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pairs(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="empty"):
        load_pairs(_write(tmp_path, "\n\n"))


def test_shared_lfw_pairs_files(shared_lfw):
    p = load_pairs(shared_lfw / "pairs.txt", shared_lfw)
    assert (p.n_folds, p.per_fold, len(p), p.n_missing) == (10, 300, 6000, 0)
    assert np.bincount(p.fold).tolist() == [600] * 10
    assert p.is_same.sum() == 3000
    assert (
        p.left[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
        and p.right[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    )
    assert p.root == shared_lfw / "chips112_gray"
    for name, n in (("pairsDevTrain.txt", 1100), ("pairsDevTest.txt", 500)):
        d = load_pairs(shared_lfw / name, shared_lfw)
        assert (d.n_folds, d.per_fold, len(d), d.n_missing) == (1, n, 2 * n, 0)
