import numpy as np
import pytest

from atalaia.config import AugmentConfig
from atalaia.data.dataset import load_identity_folder, make_augment, split_dataset, stratified_split
from atalaia.errors import DataError


def test_loads_identity_folders(tiny_faces):
    ds = load_identity_folder(tiny_faces, image_size=(16, 20), channels=1)
    assert ds.images.shape == (32, 16, 20, 1) and ds.images.dtype == np.uint8
    assert ds.class_names == ("person_00", "person_01", "person_02", "person_03")
    assert np.bincount(ds.labels).tolist() == [8, 8, 8, 8]
    rgb = load_identity_folder(tiny_faces, image_size=(16, 16), channels=3)
    assert rgb.images.shape[-1] == 3


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), 10)
    tr, va, te = stratified_split(labels, (0.6, 0.2, 0.2), seed=1)
    assert len(set(tr) | set(va) | set(te)) == 50 and not (set(tr) & set(te)) and not (set(va) & set(te))
    for part, n in ((tr, 6), (va, 2), (te, 2)):
        assert np.bincount(labels[part]).tolist() == [n] * 5
    assert all((a == b).all() for a, b in zip(stratified_split(labels, (0.6, 0.2, 0.2), 1), (tr, va, te), strict=False))
    assert not (stratified_split(labels, (0.6, 0.2, 0.2), 2)[2] == te).all()


def test_split_dataset_keeps_every_class_in_every_part(tiny_faces):
    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.6, 0.2, 0.2), 0)
    for part in (sp.train, sp.val, sp.test):
        assert set(part.labels.tolist()) == {0, 1, 2, 3}


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_identity_folder(tmp_path / "nope", image_size=(16, 16), channels=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no identity sub-folders"):
        load_identity_folder(tmp_path / "empty", image_size=(16, 16), channels=1)


def test_too_few_images_names_identity(tiny_faces):
    for f in sorted((tiny_faces / "person_02").iterdir())[2:]:
        f.unlink()
    with pytest.raises(DataError, match="identity 'person_02'.*2 image"):
        load_identity_folder(tiny_faces, image_size=(16, 16), channels=1, min_images_per_class=3)


def test_unreadable_image_names_file(tiny_faces):
    bad = tiny_faces / "person_01" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)


def test_augment_changes_images_but_keeps_range_and_shape():
    x = np.random.default_rng(0).uniform(0, 1, (6, 16, 16, 1)).astype(np.float32)
    y = make_augment(AugmentConfig())(x).numpy()
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert np.abs(y - x).mean() > 0.01
    ident = make_augment(AugmentConfig(flip=False, shift=0, zoom=0, brightness=0, contrast=0))(x).numpy()
    np.testing.assert_allclose(ident, x, atol=1e-6)
