"""Frame loading rules and box/landmark consistency under letterbox and augmentation (fixture frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atalaia.data.frames import FLIP_PERM, FrameAugment, augment_frame, letterbox, load_frames
from atalaia.errors import DataError

FRAMES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
HW = (96, 128)


def test_load_rules():
    fs = load_frames(FRAMES)
    assert len(fs) == 6
    by_name = dict(zip(fs.names, fs.boxes, strict=True))
    assert len(by_name["cmu_mit/original1.jpg"]) == 6
    assert len(by_name["celeba/184637.jpg"]) == 2
    assert len(by_name["nonface/watering_hole_sun_bcfdkbsrughwqwtt.jpg"]) == 0
    assert fs.split("test").names == ("celeba/140894.jpg", "nonface/watering_hole_sun_bcfdkbsrughwqwtt.jpg")
    assert all(lm.shape == (len(b), 5, 2) for b, lm in zip(fs.boxes, fs.landmarks, strict=True))
    # dlib order: points 0/1 are the eye on the image's right, 2/3 the eye on the image's left
    lm = np.concatenate(fs.landmarks)
    assert np.all(lm[:, 0, 0] > lm[:, 2, 0])
    assert fs.fingerprint() == load_frames(FRAMES).fingerprint()
    assert load_frames(FRAMES, max_frames=2).fingerprint() != fs.fingerprint()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="images.csv"):
        load_frames(tmp_path)


def _dots(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """A dark frame with a bright 9x9 dot at each point (still >= 2 px after the smallest zoom)."""
    out = np.zeros_like(img)
    for x, y in pts.reshape(-1, 2):
        out[max(int(y) - 4, 0):int(y) + 5, max(int(x) - 4, 0):int(x) + 5] = 255
    return out


def _near_bright(img: np.ndarray, x: float, y: float, r: int = 2) -> float:
    y0, x0 = int(round(y)), int(round(x))
    return float(img[max(y0 - r, 0):y0 + r + 1, max(x0 - r, 0):x0 + r + 1].max(initial=0))


def test_letterbox_maps_labels_with_pixels():
    fs = load_frames(FRAMES)
    for img, b, lm in zip(fs.images, fs.boxes, fs.landmarks, strict=True):
        x, b2, lm2, lb = letterbox(_dots(img, lm), b, lm, HW)
        assert x.shape == HW
        for x_, y_ in lm2.reshape(-1, 2):
            if 0 <= x_ < HW[1] and 0 <= y_ < HW[0]:
                assert _near_bright(x, x_, y_) > 40
        np.testing.assert_allclose(lb.to_frame(lm2), lm, atol=1e-3)


def test_augmentation_keeps_landmarks_on_their_pixels_and_flip_swaps_eyes():
    fs = load_frames(FRAMES)
    rng = np.random.default_rng(0)
    aug = FrameAugment(brightness=0.0, contrast=0.0, gamma=(1.0, 1.0), noise=0.0)
    checked = 0
    for _ in range(8):
        for img, b, lm in zip(fs.images, fs.boxes, fs.landmarks, strict=True):
            if not len(b):
                continue
            x, b2, lm2 = augment_frame(_dots(img, lm), b, lm, HW, aug, rng)
            for box, pts in zip(b2, lm2, strict=True):
                assert 0 <= box[0] < box[2] <= HW[1] and 0 <= box[1] < box[3] <= HW[0]
                # after any flip, point 0 (the eye on the image's right) is still right of point 2
                assert pts[0, 0] > pts[2, 0]
                for x_, y_ in pts:
                    if 2 <= x_ < HW[1] - 2 and 2 <= y_ < HW[0] - 2:
                        assert _near_bright(x, x_, y_) > 40
                        checked += 1
    assert checked > 50
    assert list(FLIP_PERM[FLIP_PERM]) == [0, 1, 2, 3, 4]


def test_flip_reorders_points():
    """No zoom, no shift: a view is the letterbox itself or its mirror with points 0<->2 and 1<->3 swapped."""
    fs = load_frames(FRAMES).subset([0])
    img, b, lm = fs.images[0], fs.boxes[0], fs.landmarks[0]
    _, _, p0, _ = letterbox(img, b, lm, HW)
    aug = FrameAugment(scale=(1.0, 1.0), shift=0.0, flip=True, brightness=0.0, contrast=0.0, gamma=(1.0, 1.0),
                       noise=0.0)
    kinds = []
    for seed in range(12):
        _, _, p = augment_frame(img, b, lm, HW, aug, np.random.default_rng(seed))
        if np.allclose(p, p0, atol=1e-3):
            kinds.append("plain")
        else:
            np.testing.assert_allclose(p[:, FLIP_PERM, 0], HW[1] - p0[:, :, 0], atol=1e-3)
            np.testing.assert_allclose(p[:, FLIP_PERM, 1], p0[:, :, 1], atol=1e-3)
            kinds.append("mirror")
    assert set(kinds) == {"plain", "mirror"}
