"""Identity-folder datasets (`root/<identity>/<image>`), stratified splits and training augmentation.

Images are kept as uint8 (N, H, W, C) after resizing: that is what a camera on the MCU delivers, and the int8
model's input quantisation (scale 1/255, zero point -128) maps those pixels exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from atalaia.config import AugmentConfig
from atalaia.data.images import check_header, read_8bit
from atalaia.errors import DataError

IMAGE_SUFFIXES = {".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass(frozen=True)
class FaceDataset:
    """Images (uint8, N x H x W x C), integer labels, identity names, source paths."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    paths: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx: np.ndarray) -> FaceDataset:
        return FaceDataset(self.images[idx], self.labels[idx], self.class_names,
                           tuple(self.paths[i] for i in idx))

    def fingerprint(self) -> str:
        """Content hash: a cached stage is reused only on the very same pixels and labels."""
        h = hashlib.sha256()
        h.update(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:12]


@dataclass(frozen=True)
class Split:
    train: FaceDataset
    val: FaceDataset
    test: FaceDataset


def read_image(path: Path, image_size: tuple[int, int], channels: int, max_pixels: int | None = None) -> np.ndarray:
    """Read any common image format as uint8 H x W x C (grey or RGB), resized to `image_size` (H, W).

    16-bit and float images are scaled by their declared range (`images.to_8bit`); a file declaring more than
    `max_pixels` (default: the run's `data.max_image_pixels`) is refused before it is decoded."""
    im = read_8bit(path, "L" if channels == 1 else "RGB", max_pixels)
    h, w = image_size
    arr = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


def list_identity_folder(root: str | Path, *, min_images_per_class: int = 3, max_classes: int | None = None
                         ) -> list[tuple[str, list[Path]]]:
    """`[(identity, [image files])]` of `root/<identity>/<image>`, sorted, checked for counts; nothing decoded."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: '{root}'. Set data.root in the recipe to a folder "
                        "holding one sub-folder per identity.")
    try:
        identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"cannot list dataset folder '{root}': {e.strerror or e}") from None
    if not identities:
        raise DataError(f"dataset folder '{root}' has no identity sub-folders; expected root/<identity>/<image>.")
    if max_classes is not None:
        identities = identities[:max_classes]
    out = []
    for identity in identities:
        try:
            files = sorted(f for f in identity.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        except OSError as e:
            raise DataError(f"cannot list identity folder '{identity}': {e.strerror or e}") from None
        if len(files) < min_images_per_class:
            raise DataError(
                f"identity '{identity.name}' in '{root}' has {len(files)} image(s); at least "
                f"{min_images_per_class} are needed (one each for train/val/test). Add images, remove the "
                "folder, or lower data.min_images_per_class."
            )
        out.append((identity.name, files))
    if len(out) < 2:
        raise DataError(f"dataset '{root}' has {len(out)} identity; classification needs at least 2.")
    return out


def check_identity_folder(root: str | Path, *, min_images_per_class: int = 3, max_classes: int | None = None,
                          max_pixels: int | None = None) -> int:
    """Everything `load_identity_folder` would refuse that headers can tell, without decoding a pixel: the
    listing, the counts, and every file's header (readable, size within `max_pixels`, a mode we convert).

    Seconds instead of minutes: run it before TensorFlow is imported. Returns the number of images."""
    listing = list_identity_folder(root, min_images_per_class=min_images_per_class, max_classes=max_classes)
    n = 0
    for _, files in listing:
        for f in files:
            check_header(f, max_pixels)
            n += 1
    return n


def load_identity_folder(
    root: str | Path,
    *,
    image_size: tuple[int, int],
    channels: int,
    min_images_per_class: int = 3,
    max_classes: int | None = None,
    max_pixels: int | None = None,
) -> FaceDataset:
    """Load `root/<identity>/<image>`; every identity folder is one class (sorted by name)."""
    images, labels, paths, names = [], [], [], []
    for name, files in list_identity_folder(root, min_images_per_class=min_images_per_class,
                                            max_classes=max_classes):
        label = len(names)
        names.append(name)
        for f in files:
            images.append(read_image(f, image_size, channels, max_pixels))
            labels.append(label)
            paths.append(str(f))
    return FaceDataset(np.stack(images), np.asarray(labels, dtype=np.int32), tuple(names), tuple(paths))


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per identity: shuffle with `seed`, give val and test at least one image each, the rest by fraction."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = len(idx)
        n_val = max(1, int(round(fractions[1] * n)))
        n_test = max(1, int(round(fractions[2] * n)))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"class {c} has only {n} images: too few for a train/val/test split")
        parts[0].extend(idx[:n_train])
        parts[1].extend(idx[n_train:n_train + n_val])
        parts[2].extend(idx[n_train + n_val:])
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def split_dataset(ds: FaceDataset, fractions: tuple[float, float, float], seed: int) -> Split:
    tr, va, te = stratified_split(ds.labels, fractions, seed)
    return Split(ds.subset(tr), ds.subset(va), ds.subset(te))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], the models' input convention (the one place it is written).

    The int8 models' input quantization is then scale 1/255, zero point -128: raw pixel - 128 on the MCU."""
    return np.asarray(images).astype(np.float32) / 255.0


def mirrored(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) images flipped left-right, contiguous (interpreters need it): mirror test-time augmentation."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def make_augment(cfg: AugmentConfig):
    """A tf function (batch of float images in [0,1]) -> augmented batch. Training only.

    Flip, small shifts and zoom (one random affine crop per image), brightness and contrast jitter.
    """
    import tensorflow as tf

    def augment(x):
        n = tf.shape(x)[0]
        h = tf.cast(tf.shape(x)[1], tf.float32)
        w = tf.cast(tf.shape(x)[2], tf.float32)
        if cfg.flip:
            flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
            x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        if cfg.shift > 0 or cfg.zoom > 0:
            scale = 1.0 + tf.random.uniform([n], -cfg.zoom, cfg.zoom)
            dx = tf.random.uniform([n], -cfg.shift, cfg.shift) * w
            dy = tf.random.uniform([n], -cfg.shift, cfg.shift) * h
            cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
            # output pixel (u, v) samples input at (a*u + b*v + c, d*u + e*v + f); pure scale about centre + shift
            a = 1.0 / scale
            zeros = tf.zeros_like(a)
            transform = tf.stack([a, zeros, cx - a * cx + dx, zeros, a, cy - a * cy + dy, zeros, zeros], axis=1)
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x, transforms=transform, output_shape=tf.shape(x)[1:3], fill_value=0.0,
                interpolation="BILINEAR", fill_mode="REFLECT")
        if cfg.brightness > 0:
            x = x + tf.random.uniform([n, 1, 1, 1], -cfg.brightness, cfg.brightness)
        if cfg.contrast > 0:
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            x = (x - mean) * tf.random.uniform([n, 1, 1, 1], 1 - cfg.contrast, 1 + cfg.contrast) + mean
        return tf.clip_by_value(x, 0.0, 1.0)

    return augment
