"""Face alignment: image loading edge cases, Umeyama geometry, dlib chip geometry, folder alignment + cache."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atalaia.data import align as A
from atalaia.data.align import (
    CHIP_SIZE,
    align_face,
    align_folder,
    apply_transform,
    load_image_rgb,
    similarity_transform,
    template_points,
)
from atalaia.errors import DataError

dlib = pytest.importorskip("dlib")


# ------------------------------------------------------------------------------------------ geometry
def _rot(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    scale, theta, t = 1.7, 0.4, np.array([12.0, -30.0])
    dst = scale * src @ _rot(theta).T + t
    m = similarity_transform(src, dst)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m[:, :2], scale * _rot(theta), atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    np.testing.assert_allclose(apply_transform(m, src), dst, atol=1e-7)


def test_similarity_transform_never_reflects_and_is_least_squares():
    rng = np.random.default_rng(1)
    src = rng.uniform(-1, 1, size=(6, 2))
    mirrored = src * np.array([-1.0, 1.0])
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # a reflection is not a similarity
    noisy = 2.0 * src + rng.normal(0, 0.01, size=src.shape)
    m2 = similarity_transform(src, noisy)
    resid = np.linalg.norm(apply_transform(m2, src) - noisy)
    for eps in (1e-3, -1e-3):  # perturbing the fitted scale can only make the fit worse
        m3 = m2.copy()
        m3[:, :2] *= 1 + eps
        assert np.linalg.norm(apply_transform(m3, src) - noisy) > resid


def test_similarity_transform_rejects_degenerate_input():
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))


def test_template_points_match_dlib_formula():
    t150 = template_points(150, 0.25)
    # (0.25 + x) / 1.5 * 150 for dlib's first template point (0.8595674595992, 0.2134981538014)
    np.testing.assert_allclose(t150[0], [(0.25 + 0.8595674595992) * 100, (0.25 + 0.2134981538014) * 100])
    np.testing.assert_allclose(template_points(112), t150 * 112 / 150)


# ------------------------------------------------------------------------------------------ loading
def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture()
def face_pil(faces_dir) -> Image.Image:
    return Image.open(faces_dir / "orl" / "s1_1.pgm").convert("RGB")


def test_load_pgm_grey_is_replicated(faces_dir):
    rgb = load_image_rgb(faces_dir / "orl" / "s1_1.pgm")
    assert rgb.shape == (112, 92, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_load_image_modes(tmp_path, face_pil, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    if mode == "I;16":
        grey = np.asarray(face_pil.convert("L")).astype(np.uint16) * 257
        img = Image.fromarray(grey)
        assert img.mode.startswith("I;16")
    elif mode == "P":
        img = face_pil.quantize(64)  # adaptive palette (convert("P") would use the coarse web palette)
    else:
        img = face_pil.convert(mode)
    path = _save(img, tmp_path / f"x.{ext}")
    with Image.open(path) as chk:
        assert chk.mode == img.mode or (mode == "I;16" and chk.mode in ("I", "I;16"))
    rgb = load_image_rgb(path)
    assert rgb.shape == (112, 92, 3) and rgb.dtype == np.uint8
    ref = np.asarray(face_pil.convert("L"), dtype=np.float64)
    if mode in ("L", "LA", "I;16"):
        np.testing.assert_allclose(rgb[..., 0], ref, atol=1)  # 16-bit must be scaled back, not clipped
    elif mode != "1":
        assert np.abs(rgb.mean(2) - ref).mean() < 8


def test_load_rgba_drops_alpha(tmp_path):
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 255
    rgb = load_image_rgb(_save(Image.fromarray(a, "RGBA"), tmp_path / "a.png"))
    assert rgb.shape == (40, 40, 3) and (rgb[..., 0] == 200).all()


def test_corrupt_jpeg_names_the_file(tmp_path, face_pil):
    buf = io.BytesIO()
    face_pil.save(buf, format="JPEG")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])  # truncated
    with pytest.raises(DataError, match="broken.jpg"):
        load_image_rgb(bad)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 10)
    with pytest.raises(DataError, match="junk.jpg"):
        load_image_rgb(junk)


def test_tiny_and_missing_images_raise(tmp_path):
    tiny = _save(Image.new("RGB", (10, 10)), tmp_path / "tiny.png")
    with pytest.raises(DataError, match=r"tiny\.png.*10x10"):
        load_image_rgb(tiny)
    with pytest.raises(DataError, match="nope.jpg"):
        load_image_rgb(tmp_path / "nope.jpg")


# ------------------------------------------------------------------------------------------ alignment
def _landmarks(img: np.ndarray, rect) -> np.ndarray:
    sp = A._Models.get("sp5")
    return np.array([[p.x, p.y] for p in sp(np.ascontiguousarray(img), rect).parts()], dtype=np.float64)


def test_align_face_undoes_a_known_similarity(face_scene, lfw_chip):
    scene, _, _ = face_scene
    res = align_face(scene)
    assert res is not None and res.detector == "hog" and res.n_faces == 1
    assert res.chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and res.chip.dtype == np.uint8
    # the scene is a rotated/enlarged copy of an aligned chip: aligning it must give that chip back
    a = res.chip.mean(2).ravel() - res.chip.mean()
    b = lfw_chip.mean(2).ravel() - lfw_chip.mean()
    corr = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert corr > 0.9, corr


def test_align_geometry_matches_dlib_template(face_scene):
    """Landmarks land on dlib's template; our Umeyama matrix reproduces dlib's own chip geometry."""
    import cv2

    scene, _, _ = face_scene
    res = align_face(scene)
    assert res is not None
    tmpl = template_points(CHIP_SIZE)
    # 1) source landmarks mapped by the matrix sit on the template (least-squares residual of 5 points)
    mapped = apply_transform(res.matrix, res.landmarks)
    assert np.linalg.norm(mapped - tmpl, axis=1).max() < 4.0
    # 2) landmarks re-detected on the 150 chip sit on the 150 template; a template without padding would not
    shape = dlib.full_object_detection(
        dlib.rectangle(*res.box), [dlib.point(int(x), int(y)) for x, y in res.landmarks]
    )
    chip150 = dlib.get_face_chip(np.ascontiguousarray(scene), shape, size=150, padding=0.25)
    redet = _landmarks(chip150, dlib.rectangle(0, 0, 149, 149))
    err = np.linalg.norm(redet - template_points(150), axis=1)
    assert err.max() < 6.0 and err.mean() < 3.5, err
    assert np.linalg.norm(redet - template_points(150, padding=0.0), axis=1).mean() > 10
    # 3) scale and angle equal dlib's chip_details (dlib fits chip -> image)
    det = dlib.get_face_chip_details(shape, 150, 0.25)
    chip_to_img = cv2.invertAffineTransform(res.matrix)
    scale = float(np.hypot(chip_to_img[0, 0], chip_to_img[1, 0]))
    angle = float(np.arctan2(chip_to_img[1, 0], chip_to_img[0, 0]))
    assert scale * CHIP_SIZE == pytest.approx(det.rect.width(), rel=1e-6)
    assert angle == pytest.approx(det.angle, abs=1e-6)
    # 4) warping with the matrix gives (nearly) the same pixels as dlib's chip
    warped = cv2.warpAffine(scene, res.matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(int) - res.chip.astype(int)).mean() < 8


def test_align_face_grey_input_and_no_face(faces_dir):
    grey = np.asarray(Image.open(faces_dir / "orl" / "s2_1.pgm"))
    assert grey.ndim == 2
    res = align_face(grey)
    assert res is not None and res.chip.shape == (112, 112, 3)
    assert np.array_equal(res.chip[..., 0], res.chip[..., 1])
    flat = np.full((48, 48, 3), 127, np.uint8)  # small: the MMOD fallback runs too and stays fast
    assert align_face(flat) is None


def test_align_face_rejects_bad_arrays():
    with pytest.raises(DataError):
        align_face(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(DataError):
        align_face(np.zeros((50, 50, 2), np.uint8))


# ------------------------------------------------------------------------------------------ folders
@pytest.fixture()
def src_tree(tmp_path, faces_dir) -> Path:
    src = tmp_path / "src"
    (src / "s1").mkdir(parents=True)
    (src / "s2").mkdir()
    shutil.copy(faces_dir / "orl" / "s1_1.pgm", src / "s1" / "1.pgm")
    shutil.copy(faces_dir / "orl" / "s1_2.pgm", src / "s1" / "2.pgm")
    shutil.copy(faces_dir / "orl" / "s2_1.pgm", src / "s2" / "1.pgm")
    Image.new("RGB", (48, 48), (127, 127, 127)).save(src / "s2" / "blank.png")
    (src / "s2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    Image.new("RGB", (10, 10)).save(src / "s2" / "tiny.png")
    (src / "s2" / "notes.txt").write_text("not an image: ignored")
    return src


def test_align_folder_counts_lists_and_cache(src_tree, tmp_path, monkeypatch):
    dst = tmp_path / "dst"
    s = align_folder(src_tree, dst, progress=False)
    assert (s.aligned, s.cached, s.no_face, s.unreadable) == (3, 0, 1, 2)
    assert s.total == 6
    for rel in ("s1/1.jpg", "s1/2.jpg", "s2/1.jpg"):
        with Image.open(dst / rel) as im:
            assert im.size == (112, 112) and im.mode == "RGB"
    assert (dst / "no_face_found.txt").read_text().split() == ["s2/blank.png"]
    failed = (dst / "failed.txt").read_text().splitlines()
    assert sorted(x.split("\t")[0] for x in failed) == ["s2/broken.jpg", "s2/tiny.png"]
    assert "10x10" in "".join(failed)
    assert len((dst / "alignment.csv").read_text().splitlines()) == 7

    # re-run: nothing is detected again (cache keyed by the source bytes)
    def boom(*a, **k):
        raise AssertionError("align_face called on a cached file")

    monkeypatch.setattr(A, "align_face", boom)
    s2 = align_folder(src_tree, dst, progress=False)
    assert (s2.aligned, s2.cached, s2.no_face, s2.unreadable) == (0, 3, 1, 2)
    monkeypatch.undo()

    # a changed file is re-aligned, the others still come from the cache
    Image.open(src_tree / "s1" / "2.pgm").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        src_tree / "s1" / "2.pgm"
    )
    s3 = align_folder(src_tree, dst, progress=False)
    assert (s3.aligned, s3.cached) == (1, 2)
    # the cache is by content, not by name: a copy of an aligned file is a cache hit
    shutil.copy(src_tree / "s2" / "1.pgm", src_tree / "s1" / "3.pgm")
    s3b = align_folder(src_tree, dst, progress=False)
    assert (s3b.aligned, s3b.cached) == (0, 4)
    (src_tree / "s1" / "3.pgm").unlink()
    s4 = align_folder(src_tree, dst, progress=False, cache=False)
    assert (s4.aligned, s4.cached) == (3, 0)


def test_align_folder_missing_or_empty_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        align_folder(tmp_path / "nope", tmp_path / "dst", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        align_folder(tmp_path / "empty", tmp_path / "dst", progress=False)
