"""Whole camera frames with face boxes and 5 landmarks (the `face_frames` layout), for the face detector.

Layout (see the dataset's README): `root/images.csv` (one row per frame: image, width, height, n_faces, source,
split), `root/labels.csv` (one row per face: image, x1, y1, x2, y2, lm5 = "x,y;x,y;..."), `root/images/<image>`.
The labels are dlib pseudo-labels: they miss small and profile faces, so every metric computed on them says so.

Two rules of the dataset are applied here, once, so no caller can forget them:
- `celeba` / `cmu_mit` frames where dlib found nothing are misses, not negatives (every CelebA frame shows a
  face; the CMU+MIT frames are a face test set with human-marked faces): left out;
- `nonface` frames are the clean negatives: their one box (a HOG false alarm on a road sign) is dropped.

Landmarks are dlib's 5 points (`lm5`): 0 outer / 1 inner corner of the eye on the image's right, 2 outer / 3 inner
corner of the eye on the image's left, 4 subnasale: the points dlib's chip template is defined on, so the
detector's points align a face exactly the way the recogniser's training chips were made. A horizontal flip
swaps 0 <-> 2 and 1 <-> 3.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from atalaia.errors import DataError

#: lm5 index permutation under a horizontal flip (the image-right eye becomes the image-left eye).
FLIP_PERM = np.array([2, 3, 0, 1, 4])
N_POINTS = 5


@dataclass(frozen=True)
class FrameSet:
    """Grey frames (uint8, each its own size) with boxes (n, 4) x1 y1 x2 y2 and landmarks (n, 5, 2), in pixels."""

    images: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    sources: tuple[str, ...]
    splits: tuple[str, ...]
    boxes: tuple[np.ndarray, ...]
    landmarks: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx) -> FrameSet:
        idx = [int(i) for i in idx]
        return FrameSet(*(tuple(getattr(self, f)[i] for i in idx)
                          for f in ("images", "names", "sources", "splits", "boxes", "landmarks")))

    def split(self, name: str) -> FrameSet:
        return self.subset([i for i, s in enumerate(self.splits) if s == name])

    def n_faces(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def fingerprint(self) -> str:
        """Content hash (names, labels and pixels): a stage's key changes when the data do."""
        h = hashlib.sha256()
        for n, im, b, lm in zip(self.names, self.images, self.boxes, self.landmarks, strict=True):
            h.update(n.encode())
            h.update(hashlib.sha1(im.tobytes()).digest())
            h.update(np.round(b, 2).astype(np.float32).tobytes())
            h.update(np.round(lm, 2).astype(np.float32).tobytes())
        return h.hexdigest()[:16]

    def info(self) -> dict:
        by_source: dict[str, int] = {}
        for s in self.sources:
            by_source[s] = by_source.get(s, 0) + 1
        return {"frames": len(self), "faces": self.n_faces(), "frames_by_source": by_source,
                "empty_frames": int(sum(len(b) == 0 for b in self.boxes))}


def _points(text: str, where: str) -> np.ndarray:
    try:
        pts = np.array([[float(v) for v in p.split(",")] for p in text.split(";")], np.float32)
    except ValueError:
        raise DataError(f"{where}: landmarks must be 'x,y;x,y;...', got '{text[:40]}'") from None
    if pts.shape != (N_POINTS, 2):
        raise DataError(f"{where}: expected {N_POINTS} landmark points, got {len(pts)}")
    return pts


def load_frames(root: str | Path, *, landmarks: str = "lm5", splits: tuple[str, ...] = ("train", "test"),
                max_frames: int | None = None) -> FrameSet:
    """Read a face_frames folder (path given by the caller: the product never assumes where data live)."""
    root = Path(root)
    for f in ("images.csv", "labels.csv"):
        if not (root / f).is_file():
            raise DataError(f"{root / f}: not found; detection.frames_root must point to a face_frames folder "
                            "(images.csv, labels.csv, images/)")
    faces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and landmarks not in rows[0]:
        raise DataError(f"{root / 'labels.csv'}: no column '{landmarks}' (detection.landmarks)")
    for i, r in enumerate(rows):
        where = f"{root / 'labels.csv'} row {i + 2}"
        box = np.array([float(r[k]) for k in ("x1", "y1", "x2", "y2")], np.float32)
        faces.setdefault(r["image"], []).append((box, _points(r[landmarks], where)))
    with open(root / "images.csv", newline="") as fh:
        frames = [r for r in csv.DictReader(fh) if r["split"] in splits]
    out: dict[str, list] = {k: [] for k in ("images", "names", "sources", "splits", "boxes", "landmarks")}
    for r in frames:
        name, source = r["image"], r["source"]
        labelled = [] if source == "nonface" else faces.get(name, [])
        if source != "nonface" and not labelled:
            continue  # a dlib miss, not a negative (CelebA and CMU+MIT frames all show faces)
        path = root / "images" / name
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("L"), np.uint8)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable frame ({e})") from None
        out["images"].append(img)
        out["names"].append(name)
        out["sources"].append(source)
        out["splits"].append(r["split"])
        out["boxes"].append(np.array([b for b, _ in labelled], np.float32).reshape(-1, 4))
        out["landmarks"].append(np.array([p for _, p in labelled], np.float32).reshape(-1, N_POINTS, 2))
        if max_frames is not None and len(out["images"]) >= max_frames:
            break
    if not out["images"]:
        raise DataError(f"{root}: no frames in splits {list(splits)}")
    return FrameSet(**{k: tuple(v) for k, v in out.items()})


# ------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Letterbox:
    """How a frame maps into the model input: input = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        """Input-pixel coordinates (..., 2) back to frame pixels."""
        p = np.asarray(pts, np.float64)
        return (p - np.array([self.pad_x, self.pad_y])) / self.scale


def letterbox_params(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    h, w = frame_hw
    ih, iw = input_hw
    s = min(iw / w, ih / h)
    return Letterbox(s, (iw - w * s) / 2.0, (ih - h * s) / 2.0)


def _warp(img: np.ndarray, m: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Output pixel centre (u+.5, v+.5) = m @ (x, y, 1) of the frame (continuous coordinates); bilinear, black fill."""
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    data = tuple(float(v) for v in inv.reshape(-1))
    out = Image.fromarray(img).transform((out_hw[1], out_hw[0]), Image.Transform.AFFINE, data=data,
                                         resample=Image.Resampling.BILINEAR, fillcolor=0)
    return np.asarray(out, np.uint8)


def transform_labels(boxes: np.ndarray, lms: np.ndarray, m: np.ndarray, flipped: bool,
                     out_hw: tuple[int, int], *, min_visible: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and landmarks through the affine `m` (scale + translation [+ x flip]); faces less than
    `min_visible` inside the output are dropped, the rest clipped. A flip reorders the points (FLIP_PERM)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), lms.reshape(0, N_POINTS, 2)
    a = m[:, :2]
    c1 = boxes[:, :2] @ a.T + m[:, 2]
    c2 = boxes[:, 2:] @ a.T + m[:, 2]
    b = np.concatenate([np.minimum(c1, c2), np.maximum(c1, c2)], 1)
    p = lms.reshape(-1, 2) @ a.T + m[:, 2]
    p = p.reshape(-1, N_POINTS, 2)
    if flipped:
        p = p[:, FLIP_PERM]
    h, w = out_hw
    clipped = np.stack([np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h), np.clip(b[:, 2], 0, w),
                        np.clip(b[:, 3], 0, h)], 1)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    vis = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) / area
    keep = vis >= min_visible
    return clipped[keep].astype(np.float32), p[keep].astype(np.float32)


def letterbox(img: np.ndarray, boxes: np.ndarray, lms: np.ndarray, input_hw: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Letterbox]:
    """The frame scaled (aspect kept) and centred in the input, black bars; labels mapped the same way."""
    lb = letterbox_params(img.shape[:2], input_hw)
    m = np.array([[lb.scale, 0, lb.pad_x], [0, lb.scale, lb.pad_y]])
    x = _warp(img, m, input_hw)
    b, p = transform_labels(boxes, lms, m, False, input_hw, min_visible=0.0)
    return x, b, p, lb


@dataclass(frozen=True)
class FrameAugment:
    """Training-only augmentation: zoom (a door camera sees faces from 15 cm to 2 m), shift, mirror, light.

    Geometry is one affine applied to pixels, boxes and landmarks alike (and the points reordered on a flip),
    so labels stay on the face: `tests/data/test_frames.py` checks it on the fixture frames."""

    scale: tuple[float, float] = (0.5, 1.4)  # relative to the letterbox scale
    shift: float = 0.25  # fraction of the input side
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.6)
    noise: float = 6.0  # std of Gaussian pixel noise (grey levels), drawn per frame in [0, noise]


def augment_frame(img: np.ndarray, boxes: np.ndarray, lms: np.ndarray, input_hw: tuple[int, int],
                  aug: FrameAugment, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random view of a frame at the input size (uint8), with its labels."""
    lb = letterbox_params(img.shape[:2], input_hw)
    ih, iw = input_hw
    s = lb.scale * float(np.exp(rng.uniform(np.log(aug.scale[0]), np.log(aug.scale[1]))))
    h, w = img.shape[:2]
    flip = bool(aug.flip and rng.random() < 0.5)
    tx = (iw - w * s) / 2.0 + rng.uniform(-aug.shift, aug.shift) * iw
    ty = (ih - h * s) / 2.0 + rng.uniform(-aug.shift, aug.shift) * ih
    m = np.array([[s, 0.0, tx], [0.0, s, ty]])
    if flip:
        m = np.array([[-1.0, 0.0, iw], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    x = _warp(img, m, input_hw).astype(np.float32)
    g = rng.uniform(*aug.gamma)
    x = 255.0 * (x / 255.0) ** g
    x = (x - 128.0) * (1.0 + rng.uniform(-aug.contrast, aug.contrast)) + 128.0
    x = x + rng.uniform(-aug.brightness, aug.brightness) * 255.0
    if aug.noise > 0:
        x = x + rng.normal(0.0, rng.uniform(0, aug.noise), x.shape)
    b, p = transform_labels(boxes, lms, m, flip, input_hw)
    return np.clip(np.round(x), 0, 255).astype(np.uint8), b, p


__all__ = ["FLIP_PERM", "FrameAugment", "FrameSet", "Letterbox", "N_POINTS", "augment_frame", "letterbox",
           "letterbox_params", "load_frames", "transform_labels"]
