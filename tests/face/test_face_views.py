"""Consistent teaching: every view's target is dlib's embedding of exactly that view, computed once and cached by
content (chip bytes + augmentation ranges + K)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.face.data import grey_resize
from atalaia.face.views import consistent_views, make_view, view_key, view_params

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


class Counting:
    """The real dlib embedder, counting the views it embeds (or refusing to, with `refuse`)."""

    def __init__(self, inner, refuse: bool = False):
        self.inner, self.refuse, self.n = inner, refuse, 0

    def embed_chips(self, chips):
        if self.refuse:
            raise AssertionError("dlib called although every view is cached")
        self.n += len(chips)
        return self.inner.embed_chips(chips)


@pytest.fixture(scope="module")
def dlib_embedder():
    pytest.importorskip("dlib")
    from atalaia.models.dlib_teacher import DlibEmbedder

    return DlibEmbedder(cache=None)


@pytest.fixture
def chips(tmp_path, face_data) -> list[Path]:
    """Two real grey LFW chips and one RGB chip (the generated chip set's), copied so a test may change them."""
    out = []
    for src in (FACES / "lfw" / "Abel_Pacheco_0001.jpg", FACES / "lfw" / "Abel_Pacheco_0004.jpg",
                face_data["chipset"] / "chips112" / "00001" / "0.jpg"):
        out.append(tmp_path / "chips" / src.name.replace("0.jpg", "rgb.jpg"))
        out[-1].parent.mkdir(exist_ok=True)
        shutil.copy(src, out[-1])
    return out


def test_make_view_with_neutral_parameters_is_the_chip():
    chip = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    same = make_view(chip, {"flip": False, "side": 1.0, "cy": 0.5, "cx": 0.5, "contrast": 1.0, "brightness": 0.0})
    assert np.abs(same.astype(int) - chip).max() <= 1
    flipped = make_view(chip[..., 0], {"flip": True, "side": 1.0, "cy": 0.5, "cx": 0.5, "contrast": 1.0,
                                       "brightness": 0.0})
    assert flipped.shape == (112, 112) and np.abs(flipped.astype(int) - chip[:, ::-1, 0]).max() <= 1
    p = view_params("ab" * 32, 3)
    assert p == view_params("ab" * 32, 3) and p != view_params("ab" * 32, 4)  # fixed per (chip, view)
    assert view_key("ab" * 32, 0, 2) != view_key("ab" * 32, 0, 3)  # K is part of the key


def test_each_view_target_is_dlibs_embedding_of_that_exact_view_and_the_cache_is_reused(chips, dlib_embedder,
                                                                                       tmp_path):
    emb = Counting(dlib_embedder)
    cv = consistent_views(chips, 32, k=2, cache_dir=tmp_path / "cache", crop=0.7, embedder=emb)
    assert (cv.views.shape, cv.targets.shape, cv.embedded, emb.n) == ((3, 2, 32, 32, 1), (3, 2, 128), 6, 6)
    for i, v in ((0, 1), (2, 0)):  # a grey chip and an RGB one
        sha = hashlib.sha256(chips[i].read_bytes()).hexdigest()
        view = make_view(np.asarray(Image.open(chips[i])), view_params(sha, v))
        np.testing.assert_allclose(cv.targets[i, v], dlib_embedder.embed_chips([view])[0], atol=1e-5)
        assert np.array_equal(cv.views[i, v], grey_resize(view[None], 32, crop=0.7)[0])
    assert not np.array_equal(cv.views[0, 0], cv.views[0, 1])  # two different views of one chip ...
    d = np.linalg.norm(cv.targets[0, 0] - cv.targets[0, 1])
    assert 1e-3 < d < 0.6  # ... two different targets, still the same person to dlib
    # second run: nothing is embedded again; without the assembled arrays, the per-view cache still serves
    again = consistent_views(chips, 32, k=2, cache_dir=tmp_path / "cache", crop=0.7, embedder=Counting(None, True))
    assert again.embedded == 0 and np.array_equal(again.targets, cv.targets)
    for f in (tmp_path / "cache").glob("view*.npy"):
        f.unlink()
    other_size = consistent_views(chips, 24, k=2, cache_dir=tmp_path / "cache", embedder=Counting(None, True))
    np.testing.assert_array_equal(other_size.targets, cv.targets)
    # a changed chip (new bytes) gets new views: only its K views are embedded
    Image.open(chips[1]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(chips[1], quality=95)
    emb2 = Counting(dlib_embedder)
    changed = consistent_views(chips, 32, k=2, cache_dir=tmp_path / "cache", crop=0.7, embedder=emb2)
    assert emb2.n == 2 and changed.embedded == 2 and np.array_equal(changed.targets[0], cv.targets[0])


def test_views_and_targets_must_match_the_chips(face_data, fit_args):
    from atalaia.errors import RecipeError
    from atalaia.face.data import load_chip_sets
    from atalaia.face.train import train_embedding

    cs = load_chip_sets([face_data["chipset"]], 32)
    views = np.repeat(cs.images[:, None], 2, axis=1)
    with pytest.raises(RecipeError, match="consistent views"):
        train_embedding(None, cs.images, cs.labels, cs.teacher, cs.num_classes, views=views, view_targets=np.zeros((len(cs), 3, 128), np.float32),
                        **fit_args(epochs=1, batch_size=8))


@pytest.mark.slow
def test_training_on_consistent_views_uses_them(face_data, fit_args):
    """The chips' own teacher targets are all missing (NaN: no kd term without views); the views carry them, so
    a kd term exists only because the view targets are used, and it falls."""
    from atalaia.face.data import load_chip_sets
    from atalaia.face.train import build_student, train_embedding

    cs = load_chip_sets([face_data["chipset"]], 32)
    views = np.stack([cs.images, cs.images[:, :, ::-1]], axis=1)
    targets = np.stack([cs.teacher, cs.teacher], axis=1)
    m = build_student(32, width=0.25, embedding_dim=128)
    log = train_embedding(m, cs.images, cs.labels, np.full_like(cs.teacher, np.nan), cs.num_classes, views=views,
                          view_targets=targets, **fit_args(epochs=3, batch_size=8, warmup_epochs=0.0, seed=1))
    assert 0 < log.epochs[-1]["kd"] < log.epochs[0]["kd"] and np.isfinite(log.epochs[-1]["loss"])


@pytest.mark.slow
def test_parallel_workers_give_the_same_targets(chips, dlib_embedder, tmp_path):
    one = consistent_views(chips, 24, k=2, cache_dir=tmp_path / "a", embedder=dlib_embedder)
    two = consistent_views(chips, 24, k=2, cache_dir=tmp_path / "b", workers=2)  # two spawned dlib processes
    assert two.embedded == 6
    np.testing.assert_allclose(two.targets, one.targets, atol=1e-6)
    assert np.array_equal(two.views, one.views)
