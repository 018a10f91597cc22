"""On-device alignment: from the detector's 5 points to the recogniser's input chip, in one bilinear warp.

The recogniser was trained on `dlib.get_face_chip(img, shape, size=150, padding=0.25)` chips, resized to 112,
centre-cropped by `face.crop` and resized to its input size S (`data.align`, `face.data`). A device cannot
afford three resamplings, so this composes them into one map from each output pixel to the frame:

    output pixel (u, v), centre (u + .5, v + .5)  ->  112-chip point  x0 + (u + .5) * c / S   (c = round(112 crop),
                                                                      x0 = (112 - c) // 2, as face.data.center_crop)
    -> 150-chip point * 150 / 112 - .5 (dlib's pixel-index convention)  ->  frame point by the similarity fitted
    from dlib's template to the 5 points (chip -> image direction, as get_face_chip fits it)

and samples the frame bilinearly there (outside the frame = 0). The similarity is the closed-form 2-D least
squares fit (rotation + uniform scale + translation), which equals `data.align.similarity_transform` (Umeyama)
whenever no reflection is involved. The C twin (`deploy/face_c/atalaia_face_detect.c`,
`atalaia_align_chip`) does the same arithmetic in double precision; the tests require equality within one grey
level. The result differs from dlib's own chip by the resampling filter only (bilinear once instead of dlib's
bilinear + LANCZOS twice).
"""

from __future__ import annotations

import numpy as np

from atalaia.data.align import CHIP_SIZE, DLIB_CHIP_SIZE, DLIB_PADDING, template_points


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity mapping src (n, 2) -> dst (n, 2), closed form (no SVD: the C code's)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = float(np.sum(s * s))
    a = float(np.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1])) / den
    b = float(np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / den
    tx = md[0] - (a * ms[0] - b * ms[1])
    ty = md[1] - (b * ms[0] + a * ms[1])
    return np.array([[a, -b, tx], [b, a, ty]])


def chip_to_frame(landmarks: np.ndarray, out_size: int, crop: float = 1.0) -> np.ndarray:
    """2x3 matrix: output chip pixel index (u, v) -> frame point (pixel-index convention)."""
    m = fit_similarity(template_points(DLIB_CHIP_SIZE, DLIB_PADDING), landmarks)
    c = int(round(CHIP_SIZE * crop))
    x0 = (CHIP_SIZE - c) // 2
    k = c / out_size * DLIB_CHIP_SIZE / CHIP_SIZE  # output pixel -> 150-chip pixel
    off = (x0 + 0.5 * c / out_size) * DLIB_CHIP_SIZE / CHIP_SIZE - 0.5
    pre = np.array([[k, 0.0, off], [0.0, k, off], [0.0, 0.0, 1.0]])
    return m @ pre


def bilinear_sample(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Grey levels at float positions (pixel k at coordinate k); pixels outside the frame count as 0."""
    img = np.asarray(img, np.float64)
    h, w = img.shape
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    fx, fy = xs - x0, ys - y0

    def px(y, x):
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return np.where(ok, img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0.0)

    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bot = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bot * fy


def align_chip(frame: np.ndarray, landmarks: np.ndarray, out_size: int, crop: float = 1.0) -> np.ndarray:
    """The recogniser's (out_size, out_size) uint8 grey input from a frame and dlib-order 5 points."""
    m = chip_to_frame(landmarks, out_size, crop)
    v, u = np.mgrid[0:out_size, 0:out_size].astype(np.float64)
    xs = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    ys = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    return np.clip(np.floor(bilinear_sample(frame, xs, ys) + 0.5), 0, 255).astype(np.uint8)


__all__ = ["align_chip", "bilinear_sample", "chip_to_frame", "fit_similarity"]
