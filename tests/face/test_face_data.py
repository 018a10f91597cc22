from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atalaia.errors import DataError
from atalaia.face.data import grey_resize, load_chip_sets, load_images, read_grey


def test_chip_set_loads_grey_resized_with_labels_and_teacher(face_data, tmp_path):
    cs = load_chip_sets([face_data["chipset"]], 32, cache_dir=tmp_path)
    assert cs.images.shape == (25, 32, 32, 1) and cs.images.dtype == np.uint8
    assert cs.num_classes == 4
    assert (cs.labels == -1).sum() == 1  # the unlabelled chip is kept (feeds KD) with label -1
    assert sorted(set(cs.labels[cs.labels >= 0].tolist())) == [0, 1, 2, 3]
    assert cs.has_teacher.all()
    np.testing.assert_allclose(np.linalg.norm(cs.teacher, axis=1), 1.0, atol=1e-5)
    # second load comes from the cache and is identical
    cs2 = load_chip_sets([face_data["chipset"]], 32, cache_dir=tmp_path)
    assert list(tmp_path.glob("chips_*.npz")) and np.array_equal(cs.images, cs2.images)
    assert cs.fingerprint() == cs2.fingerprint()


def test_two_sets_keep_identities_apart_and_rare_ids_become_unlabelled(face_data):
    cs = load_chip_sets([face_data["chipset"], face_data["chipset"]], 24, min_images_per_identity=7)
    assert cs.num_classes == 0 and (cs.labels == -1).all()  # 6 chips per id < 7: all KD-only
    cs = load_chip_sets([face_data["chipset"], face_data["chipset"]], 24)
    assert cs.num_classes == 8  # same raw ids in two sets are different people


def test_unreadable_chip_is_listed_not_fatal(face_data, tmp_path):
    import shutil

    cs_dir = tmp_path / "cs"
    shutil.copytree(face_data["chipset"], cs_dir)
    (cs_dir / "chips112" / "00000" / "0.jpg").write_bytes(b"garbage")
    (cs_dir / "chips112" / "00001" / "0.jpg").unlink()
    cs = load_chip_sets([cs_dir], 24)
    assert len(cs) == 23 and len(cs.skipped) == 2
    assert any("not found" in why for _, why in cs.skipped)


def test_errors_name_the_problem(tmp_path, face_data):
    with pytest.raises(DataError, match="not found"):
        load_chip_sets([tmp_path / "nope"], 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="labels.csv"):
        load_chip_sets([tmp_path / "empty"], 32)
    with pytest.raises(DataError, match="empty"):
        load_chip_sets([], 32)
    with pytest.raises(DataError, match="cannot read"):
        read_grey(face_data["lfw"] / "Cid_C" / "Cid_C_0003.jpg", 32)


def test_rgb_rgba_and_grey_inputs_give_the_same_grey(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "b.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "c.png")
    imgs, bad = load_images([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png", tmp_path / "x.png"], 48)
    assert imgs.shape == (4, 48, 48, 1) and len(bad) == 1 and bad[0][0].endswith("x.png")
    assert np.array_equal(imgs[0], imgs[1]) and np.abs(imgs[0].astype(int) - imgs[2]).max() <= 1
    assert np.array_equal(grey_resize(rgb[None], 48)[0], imgs[0])


def test_aligned_identity_folders_without_labels_csv(face_data, tmp_path):
    import shutil

    shutil.copytree(face_data["chipset"] / "chips112", tmp_path / "aligned")
    cs = load_chip_sets([tmp_path / "aligned"], 24)
    assert len(cs) == 24 and cs.num_classes == 4 and not cs.has_teacher.any()


def test_centre_crop_keeps_the_middle_and_is_cached_apart(face_data, tmp_path):
    from PIL import Image

    # a 112x112 chip whose central 78x78 square (crop 0.7: offset 17) is white, the border black
    img = np.zeros((112, 112), np.uint8)
    img[17:95, 17:95] = 255
    Image.fromarray(img).save(tmp_path / "c.png")
    assert read_grey(tmp_path / "c.png", 39, crop=0.7).min() == 255  # only the white square survives
    assert read_grey(tmp_path / "c.png", 39).min() == 0
    assert np.array_equal(grey_resize(img[None], 39, crop=0.7)[0, ..., 0], read_grey(tmp_path / "c.png", 39, crop=0.7))
    with pytest.raises(DataError, match="face.crop"):
        read_grey(tmp_path / "c.png", 39, crop=1.5)
    full = load_chip_sets([face_data["chipset"]], 24, cache_dir=tmp_path)
    cropped = load_chip_sets([face_data["chipset"]], 24, cache_dir=tmp_path, crop=0.7)
    assert len(list(tmp_path.glob("chips_*.npz"))) == 2  # the crop is part of the cache key
    assert not np.array_equal(full.images, cropped.images)


def _grey_f16_copy(src, dst):
    """The fixture chip set re-stored like more_ids_gray: grey chips, float16 embeddings, an identity listed in
    lfw_overlap.csv and an unlabeled/ chip that labels.csv (wrongly) gives an identity."""
    import csv
    import shutil

    from PIL import Image

    shutil.copytree(src, dst)
    for f in (dst / "chips112").rglob("*.jpg"):
        Image.open(f).convert("L").save(f, quality=95)
    with np.load(dst / "dlib_resnet128.npz") as z:
        np.savez(dst / "dlib_resnet128.npz", emb=z["emb"].astype(np.float16), chip=z["chip"], identity=z["identity"])
    rows = list(csv.reader((dst / "labels.csv").open()))
    rows = [r if r[0] != "unlabeled/u0.jpg" else [r[0], "3"] for r in rows]
    with (dst / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (dst / "lfw_overlap.csv").write_text("identity,nearest_lfw_person\n1,Someone_Famous\n")


def test_grey_float16_set_combines_with_rgb_set_and_leaves_lfw_overlap_out(face_data, tmp_path):
    grey = tmp_path / "grey"
    _grey_f16_copy(face_data["chipset"], grey)
    cs = load_chip_sets([face_data["chipset"], grey], 32)
    rgb_only = load_chip_sets([face_data["chipset"]], 32)
    assert len(cs) == 25 + 25 - 6  # identity 1 of the grey set (6 chips) is gone
    assert cs.num_classes == 4 + 3  # set-local ids kept apart; the overlap identity is not a class
    assert cs.teacher.dtype == np.float32 and cs.has_teacher.all()
    # same pixels whether the chip was stored RGB or grey (within JPEG re-encoding), same teacher up to float16
    np.testing.assert_allclose(cs.teacher[25:25 + 6], rgb_only.teacher[:6], atol=2e-3)
    assert np.abs(cs.images[25].astype(int) - rgb_only.images[0].astype(int)).mean() < 3
    assert not [p for p in cs.paths if p.startswith("grey/chips112/00001/")]
    assert (cs.labels[[p.endswith("unlabeled/u0.jpg") for p in cs.paths]] == -1).all()  # unlabeled/ is never a class
    info = {p["set"]: p for p in cs.per_set}[str(grey)]
    assert (info["excluded_identities"], info["excluded_chips"], info["lfw_overlap_listed"]) == (1, 6, 1)
    assert info["identities"] == 3 and info["unlabelled_chips"] == 1
    kept = load_chip_sets([grey], 32, exclude_lfw_overlap=False)
    assert len(kept) == 25 and kept.per_set[0]["excluded_chips"] == 0
    assert len(cs.files) == len(cs) and all(Path(f).is_file() for f in cs.files)


@pytest.mark.parametrize("problem, match", [
    ("dup", "listed twice"), ("emptychip", "empty 'chip'"), ("badoverlap", "lfw_overlap.csv.*identity"),
    ("npzshape", r"'emb' must be \(N, 128\)"), ("npzpaths", "none of its"), ("npzids", "disagrees"),
    ("npzkeys", "missing"),
])
def test_malformed_set_files_are_one_clear_error_naming_the_file(face_data, tmp_path, problem, match):
    import shutil

    d = tmp_path / "cs"
    shutil.copytree(face_data["chipset"], d)
    labels, npz = d / "labels.csv", d / "dlib_resnet128.npz"
    with np.load(npz) as z:
        emb, chip, ident = z["emb"], z["chip"], z["identity"]
    if problem == "dup":
        labels.write_text(labels.read_text() + "chips112/00000/0.jpg,0\n")
    elif problem == "emptychip":
        labels.write_text(labels.read_text() + ",2\n")
    elif problem == "badoverlap":
        (d / "lfw_overlap.csv").write_text("person\nx\n")
    elif problem == "npzshape":
        np.savez(npz, emb=emb[:, :64], chip=chip)
    elif problem == "npzpaths":
        np.savez(npz, emb=emb, chip=np.array(["other/" + c for c in chip]))
    elif problem == "npzids":
        np.savez(npz, emb=emb, chip=chip, identity=(ident + 1))
    elif problem == "npzkeys":
        np.savez(npz, embeddings=emb, chip=chip)
    with pytest.raises(DataError, match=match) as e:
        load_chip_sets([d], 24)
    assert str(d) in str(e.value)

