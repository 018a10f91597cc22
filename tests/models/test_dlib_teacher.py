"""dlib ResNet teacher: shapes, grey handling, same/different sanity, on-disk cache, drift vs stored embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.errors import DataError

pytest.importorskip("dlib")
from atalaia.models.dlib_teacher import DlibEmbedder, EmbeddingCache, chip_key  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
# ../shared beside the repo (CI and the workstation); a clone elsewhere falls back to the workstation copy
SHARED = next((p for p in (Path(__file__).resolve().parents[3] / "shared" / "datasets",
                Path("/work/shared/datasets")) if p.is_dir()), Path("/work/shared/datasets"))
LFW_FIX = ["Abel_Pacheco_0001.jpg", "Abel_Pacheco_0004.jpg", "Akhmed_Zakayev_0001.jpg"]


@pytest.fixture(scope="module")
def embedder() -> DlibEmbedder:
    return DlibEmbedder()


@pytest.fixture(scope="module")
def grey_chips() -> np.ndarray:
    return np.stack([np.asarray(Image.open(FIXTURES / "lfw" / f).convert("L")) for f in LFW_FIX])


def test_embed_shapes_and_same_vs_different(embedder, grey_chips):
    e = embedder.embed_chips(grey_chips[..., None])  # (N, 112, 112, 1)
    assert e.shape == (3, 128) and e.dtype == np.float32
    same = np.linalg.norm(e[0] - e[1])
    diff = min(np.linalg.norm(e[0] - e[2]), np.linalg.norm(e[1] - e[2]))
    assert same < 0.6 < diff, (same, diff)  # dlib's documented threshold


def test_grey_layouts_agree(embedder, grey_chips):
    g1 = embedder.embed_chips(grey_chips[:1][..., None])
    g2 = embedder.embed_chips(grey_chips[:1])  # (N, H, W)
    g3 = embedder.embed_chips(np.repeat(grey_chips[:1][..., None], 3, axis=3))
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(g1, g3)


def test_bad_chips_raise(embedder):
    with pytest.raises(DataError, match="uint8"):
        embedder.embed_chips(np.zeros((1, 112, 112, 3), np.float32))
    with pytest.raises(DataError, match="square"):
        embedder.embed_chips(np.zeros((1, 112, 100, 3), np.uint8))
    with pytest.raises(DataError):
        embedder.embed_chips(np.zeros((112, 112 * 3), np.uint8).reshape(-1))


def test_cache_round_trip_skips_the_network(tmp_path, grey_chips, monkeypatch):
    path = tmp_path / "cache" / "emb.npz"
    emb = DlibEmbedder(cache=path)
    first = emb.embed_chips(grey_chips[:2])
    assert path.is_file() and len(EmbeddingCache(path)) == 2
    again = DlibEmbedder(cache=path)

    def boom(*a, **k):
        raise AssertionError("network called for cached chips")

    monkeypatch.setattr(again, "_rec", type("R", (), {"compute_face_descriptor": boom})())
    np.testing.assert_array_equal(again.embed_chips(grey_chips[:2]), first)
    assert chip_key(grey_chips[0]) != chip_key(grey_chips[1])
    assert chip_key(grey_chips[0]) != chip_key(grey_chips[0][..., None])  # shape is part of the key


def test_corrupt_cache_is_a_clear_error(tmp_path):
    bad = tmp_path / "emb.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="delete it"):
        EmbeddingCache(bad)


def test_drift_vs_stored_lfw_embeddings(embedder):
    lfw = SHARED / "lfw"
    if not (lfw / "dlib_resnet128.npz").is_file():
        pytest.skip("shared LFW not available")
    z = np.load(lfw / "dlib_resnet128.npz")
    idx = np.arange(0, len(z["chip"]), 2207)[:6]
    chips = np.stack([np.asarray(Image.open(lfw / str(z["chip"][i])).convert("L")) for i in idx])
    d = np.linalg.norm(embedder.embed_chips(chips) - z["emb"][idx], axis=1)
    # README: ~0.04 L2 drift from the 112 -> 150 round trip; dlib's same-person threshold is 0.6
    assert d.max() < 0.08 and d.mean() < 0.06, d


def test_align_then_embed_orl_matches_stored(embedder):
    """End to end on a raw ORL image: our alignment + teacher vs the stored ORL teacher embedding."""
    orl = SHARED / "orl_att_faces" / "dlib_resnet128.npz"
    if not orl.is_file():
        pytest.skip("shared ORL not available")
    from atalaia.data.align import align_face, load_image_rgb

    z = np.load(orl)
    rgb = load_image_rgb(FIXTURES / "orl" / "s1_1.pgm")
    big = np.asarray(Image.fromarray(rgb).resize((184, 224), Image.Resampling.BICUBIC))  # the ORL recipe: x2
    res = align_face(big)
    assert res is not None
    e = embedder.embed_chips(res.chip[None])[0]
    subj, fn = z["subject"].astype(str), z["filename"].astype(str)
    k = np.flatnonzero(fn == "s1/1.pgm")
    assert len(k) == 1, fn[:3]
    d_same = np.linalg.norm(e - z["emb"][k[0]])
    others = np.linalg.norm(z["emb"][subj != subj[k[0]]] - e, axis=1)
    assert d_same < 0.15 and d_same < others.min(), (d_same, others.min())
