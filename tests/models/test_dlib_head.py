"""dlib_head teacher: the numpy head (learns, deterministic, save/load), centre chips, and dlib alignment of
real ORL originals with the on-disk embedding cache (detector found, second call never touches dlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.errors import DataError
from atalaia.models.dlib_head import DlibHead, DlibHeadConfig, center_chip, train_head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _clusters(n_per=20, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n_per)
    x = 0.6 * centres[y] + 0.04 * rng.normal(0, 1, (len(y), 128)) + 0.3  # shared offset, like dlib's
    return x.astype(np.float32), y


def test_head_learns_separable_embeddings_and_is_deterministic():
    x, y = _clusters()
    x_tr, y_tr, x_te, y_te = x[::2], y[::2], x[1::2], y[1::2]
    cfg = DlibHeadConfig(epochs=150)
    h = train_head(x_tr, y_tr, 5, cfg)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert np.mean(np.argmax(h.logits_from_embeddings(x_te), 1) == y_te) == 1.0
    h2 = train_head(x_tr, y_tr, 5, cfg)
    np.testing.assert_array_equal(h.weight, h2.weight)


def test_save_load_round_trip(tmp_path):
    x, y = _clusters()
    h = train_head(x, y, 5, DlibHeadConfig(epochs=20, align="center", center_scale=1.3))
    p = h.save(tmp_path / "head.npz")
    g = DlibHead.load(p)
    np.testing.assert_allclose(g.logits_from_embeddings(x), h.logits_from_embeddings(x), rtol=1e-6)
    assert g.cfg == h.cfg and g.num_classes == 5
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="unreadable"):
        DlibHead.load(tmp_path / "bad.npz")


def test_bad_inputs_rejected():
    x, y = _clusters()
    with pytest.raises(DataError, match="labels"):
        train_head(x, y + 1, 5)
    with pytest.raises(DataError, match="align"):
        DlibHeadConfig(align="mtcnn")
    with pytest.raises(DataError, match="embeddings"):
        train_head(x, y, 5).logits_from_embeddings(x[:, :64])


def test_load_originals_errors(tmp_path):
    from atalaia.models.dlib_head import load_originals

    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_originals([tmp_path / "x.png"])
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "c.png")
    assert load_originals([tmp_path / "c.png"])[0].shape == (10, 12, 3)


def test_center_chip_geometry():
    img = np.zeros((112, 92), np.uint8)
    img[:, 46:] = 255  # right half white
    c = center_chip(img, 1.0)
    assert c.shape == (150, 150, 3) and c.dtype == np.uint8
    assert c[:, :70].mean() < 5 and c[:, 80:].mean() > 250
    padded = center_chip(img, 1.3)  # edge-padded, still centred
    assert padded.shape == (150, 150, 3) and padded[:, :70].mean() < 5


def test_orl_originals_are_aligned_by_the_detector_and_cached(tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    from atalaia.models import dlib_head

    imgs = dlib_head.load_originals([FIXTURES / "orl" / f for f in ("s1_1.pgm", "s1_2.pgm", "s2_1.pgm")])
    assert imgs[0].shape == (112, 92) and imgs[0].dtype == np.uint8
    cache = tmp_path / "emb.npz"
    emb, how = dlib_head.embed_images(imgs, DlibHeadConfig(), cache=cache)
    assert set(how) <= {"hog", "mmod"}, how  # the x2 upscale lets dlib find ORL faces
    same = np.linalg.norm(emb[0] - emb[1])
    diff = min(np.linalg.norm(emb[0] - emb[2]), np.linalg.norm(emb[1] - emb[2]))
    assert same < 0.6 < diff, (same, diff)

    def boom(*a, **k):
        raise AssertionError("dlib called on a cache hit")

    monkeypatch.setattr(dlib_head, "dlib_input", boom)
    emb2, how2 = dlib_head.embed_images(imgs, DlibHeadConfig(), cache=cache)
    np.testing.assert_array_equal(emb, emb2)
    assert how2 == ["cached"] * 3
    # a different alignment recipe is a different cache key
    with pytest.raises(AssertionError, match="cache hit"):
        dlib_head.embed_images(imgs, DlibHeadConfig(align="center"), cache=cache)
