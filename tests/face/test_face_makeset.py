"""`atalaia align` + `atalaia make-set` on real fixture faces: the folder a user's photos become is a chip set the
trainer loads, with dlib's embedding of every chip stored beside it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.errors import DataError

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib")
    from atalaia.models.dlib_teacher import DlibEmbedder

    return DlibEmbedder(cache=None)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> Path:
    """What `atalaia align PHOTOS ALIGNED` leaves: ALIGNED/<person>/<photo>.jpg 112x112 chips (here the LFW fixture
    chips, made by the same recipe; `tests/data/test_align.py` runs align itself), its alignment.csv, and one
    chip at the top level (a person without a folder: unlabelled)."""
    out = tmp_path_factory.mktemp("mine") / "aligned"
    for person, f in [("abel", "Abel_Pacheco_0001.jpg"), ("abel", "Abel_Pacheco_0004.jpg"),
                      ("akhmed", "Akhmed_Zakayev_0001.jpg")]:
        (out / person).mkdir(parents=True, exist_ok=True)
        shutil.copy(FACES / "lfw" / f, out / person / f)
    (out / "alignment.csv").write_text("source,chip,status\n")
    Image.open(FACES / "lfw" / "Akhmed_Zakayev_0001.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        out / "stranger.png")
    return out


def test_make_set_writes_the_shared_format_and_the_trainer_loads_it(aligned, embedder, tmp_path):
    from atalaia.face.data import load_chip_sets
    from atalaia.face.makeset import make_chip_set

    dst = tmp_path / "myset"
    s = make_chip_set(aligned, dst, progress=False, embedder=embedder)
    assert (s.chips, s.labelled, s.unlabelled, s.identities, s.names) == (4, 3, 1, 2, ["abel", "akhmed"])
    rows = list(csv.DictReader((dst / "labels.csv").open()))
    assert [(r["chip"], r["identity"], r["name"]) for r in rows] == [
        ("chips112/abel/Abel_Pacheco_0001.jpg", "0", "abel"), ("chips112/abel/Abel_Pacheco_0004.jpg", "0", "abel"),
        ("chips112/akhmed/Akhmed_Zakayev_0001.jpg", "1", "akhmed"), ("unlabeled/stranger.jpg", "-1", "")]
    a = "abel/Abel_Pacheco_0001.jpg"
    assert (dst / "chips112" / a).read_bytes() == (aligned / a).read_bytes()  # a 112 JPEG chip is not re-encoded
    with Image.open(dst / "unlabeled/stranger.jpg") as im:
        assert im.format == "JPEG" and im.size == (112, 112)
    with np.load(dst / "dlib_resnet128.npz") as z:
        emb, chips = z["emb"], list(z["chip"])
    assert emb.shape == (4, 128) and emb.dtype == np.float32 and chips == [r["chip"] for r in rows]
    stored = [np.asarray(Image.open(dst / c)) for c in chips]
    np.testing.assert_allclose(emb, embedder.embed_chips(stored), atol=1e-5)  # dlib's embedding of each chip
    d = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    assert d[0, 1] < 0.6 < min(d[0, 2], d[1, 2])  # dlib: the two Abel chips are one person, Akhmed is not
    cs = load_chip_sets([dst], 32)
    assert len(cs) == 4 and cs.has_teacher.all() and cs.num_classes == 1  # akhmed (1 chip), the stranger: KD only
    # all unlabelled on request
    s2 = make_chip_set(aligned, tmp_path / "unl", unlabelled=True, progress=False, embedder=embedder)
    assert (s2.labelled, s2.unlabelled) == (0, 4)


def test_make_set_refuses_photos_that_are_not_chips(aligned, embedder, tmp_path):
    from atalaia.face.makeset import make_chip_set

    src = tmp_path / "raw"
    (src / "carol").mkdir(parents=True)
    shutil.copy(FACES / "orl" / "s1_1.pgm", src / "carol" / "1.pgm")  # 92x112: a photo, not an aligned chip
    with pytest.raises(DataError, match=r"1\.pgm: 92x112 is not an aligned face chip; run `atalaia align"):
        make_chip_set(src, tmp_path / "out", progress=False, embedder=embedder)
    with pytest.raises(DataError, match="outside the source"):
        make_chip_set(aligned, aligned / "set", progress=False, embedder=embedder)
    with pytest.raises(DataError, match="not found"):
        make_chip_set(tmp_path / "nope", tmp_path / "out", progress=False, embedder=embedder)
