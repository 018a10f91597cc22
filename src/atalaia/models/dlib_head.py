"""`dlib_head`: the closed-set teacher of the thesis' kind — a pretrained, frozen face network plus a trained head.

The thesis' teacher (its Code 1) is a pretrained frozen ResNet-50 with Dropout(0.2) and a Dense head trained on
the task: soft targets from a network that already knows faces. A teacher trained from scratch on 240 ORL
images (`teacher_resnet`, 95.0%) is no better than its own students, and distilling from it loses accuracy.
Here the frozen backbone is dlib's ResNet face embedder (`DlibEmbedder`, weights from the
`face-recognition-models` wheel, nothing downloaded) and the head is Dropout(0.2) -> Dense(num_classes) on the
standardised 128-d embedding, trained with numpy (softmax cross-entropy, Adam, decoupled weight decay): 128 x K
weights need no Keras, and the teacher then runs without TensorFlow.

How an image becomes a dlib input (`align`):
  * ``"detect"`` (default): the recipe of the shared chips — upscale x2 (LANCZOS; ORL's 92x112 faces are too
    small for dlib's HOG detector at 1x), dlib HOG detector (MMOD fallback), 5-point landmarks,
    ``get_face_chip(size=150, padding=0.25)``. When no face is found, the ``"center"`` chip is used instead.
  * ``"center"``: a fixed chip, no detector: the centre square of side ``center_scale`` x the shorter side
    (edge-padded when > 1) resized to 150x150. Right for images that are already aligned face chips (the CelebA
    chips) and the fallback for tightly cropped faces.
  Measured on the default recipe's ORL split (README, "dlib_head teacher"): the choice matters, see the numbers
  there; give the teacher the original images (``FaceDataset.paths``), not the 32x32 student inputs.

Embeddings are cached on disk (`EmbeddingCache`) keyed by the SHA-256 of the *input image's* pixels plus the
alignment recipe, so detection and embedding run once per image.

Knowledge distillation when the student sees augmented images: the teacher's logits are a table, one row per
training image, computed on the un-augmented original (`DlibHead.logits`), and the student's KD target for
an augmented view is its source image's row (`compress.distill.train_classifier(teacher_logits=...)`). The
augmentations (flip, shifts and zooms of a few %, brightness/contrast) keep the identity, and dlib's embedding
is trained to be invariant to exactly such changes, so one row per image is what the teacher would say about
each view up to small noise — and it costs one dlib pass per image instead of one per view per epoch.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from atalaia.data.align import align_face
from atalaia.data.images import open_image, read_8bit
from atalaia.errors import DataError
from atalaia.ioutil import atomic_write_bytes
from atalaia.models.dlib_teacher import (
    EMBED_DIM,
    INPUT_SIZE,
    RECIPE_TAG,
    DlibEmbedder,
    EmbeddingCache,
    chip_key,
)

ALIGN_MODES = ("detect", "center")


@dataclass(frozen=True)
class DlibHeadConfig:
    """How the head is trained and how images are aligned. Defaults measured on the ORL split (README)."""

    align: str = "detect"
    center_scale: float = 1.0
    upscale: int = 2
    dropout: float = 0.2
    epochs: int = 300
    learning_rate: float = 0.01
    weight_decay: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            raise DataError(f"dlib_head align must be one of {ALIGN_MODES}, got {self.align!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise DataError(f"dlib_head dropout must be in [0, 1), got {self.dropout}")
        if self.epochs < 1 or self.learning_rate <= 0 or self.upscale < 1 or self.center_scale <= 0:
            raise DataError("dlib_head epochs, upscale >= 1 and learning_rate, center_scale > 0 are required")

    def to_dict(self) -> dict:
        return asdict(self)

    def align_tag(self) -> str:
        """Part of the embedding cache key: every setting that changes the dlib input."""
        if self.align == "center":
            return f"{RECIPE_TAG}|head-center{self.center_scale:g}"
        return f"{RECIPE_TAG}|head-detect-up{self.upscale}-fallback-center{self.center_scale:g}"


# ------------------------------------------------------------------------------------------- dlib inputs
def _rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise DataError(f"dlib_head images must be uint8 (0..255), got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"an image must be (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    return np.ascontiguousarray(a)


def center_chip(img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Centre square of side ``scale`` x the shorter side (edge-padded if larger than the image) -> 150x150 RGB."""
    a = _rgb(img)
    h, w = a.shape[:2]
    side = max(1, int(round(min(h, w) * scale)))
    pad = max(0, (side - min(h, w) + 1) // 2)
    if pad:
        a = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        h, w = a.shape[:2]
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = a[y0 : y0 + side, x0 : x0 + side]
    return np.asarray(Image.fromarray(crop).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.LANCZOS))


def dlib_input(img: np.ndarray, cfg: DlibHeadConfig) -> tuple[np.ndarray, str]:
    """One image -> (150x150 RGB chip dlib embeds, how it was made: 'hog' | 'mmod' | 'center')."""
    if cfg.align == "center":
        return center_chip(img, cfg.center_scale), "center"
    a = _rgb(img)
    if cfg.upscale > 1:
        h, w = a.shape[:2]
        a = np.asarray(Image.fromarray(a).resize((w * cfg.upscale, h * cfg.upscale), Image.Resampling.LANCZOS))
    res = align_face(a, pick="largest", size=INPUT_SIZE)
    if res is None:
        return center_chip(img, cfg.center_scale), "center"
    return res.chip, res.detector


def embed_images(images: Sequence[np.ndarray] | np.ndarray, cfg: DlibHeadConfig, *,
                 cache: EmbeddingCache | str | Path | None = None,
                 embedder: DlibEmbedder | None = None) -> tuple[np.ndarray, list[str]]:
    """dlib embeddings (N, 128) of images of any size, and per image how it was aligned ('cached' on a hit).

    The cache key is the image's own pixels + `cfg.align_tag()`, so the detector does not run again either.
    """
    store = EmbeddingCache(cache) if isinstance(cache, (str, Path)) else cache
    tag = cfg.align_tag()
    n = len(images)
    out = np.zeros((n, EMBED_DIM), np.float32)
    how = ["cached"] * n
    keys: list[str] = []
    todo: list[int] = []
    for i in range(n):
        k = chip_key(np.asarray(images[i]), tag)
        keys.append(k)
        hit = store.get(k) if store is not None else None
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit
    if todo:
        emb = embedder or DlibEmbedder(cache=None)
        chips = []
        for i in todo:
            chip, how[i] = dlib_input(np.asarray(images[i]), cfg)
            chips.append(chip)
        vecs = emb.embed_chips(np.stack(chips))
        for j, i in enumerate(todo):
            out[i] = vecs[j]
            if store is not None:
                store.put(keys[i], vecs[j])
        if store is not None:
            store.save()
    return out, how


def load_originals(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Read image files at their own size as uint8 (grey stays (H, W), colour becomes (H, W, 3) RGB).

    The teacher's input for a dataset whose student images are downscaled copies: pass
    `FaceDataset.paths` here and the result to `fit_dlib_head` / `DlibHead.logits`."""
    out = []
    for p in paths:
        with open_image(p) as im:  # the same size limit, modes and messages as every other image reader
            grey = im.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F")
        out.append(np.asarray(read_8bit(p, "L" if grey else "RGB"), np.uint8))
    return out


# ------------------------------------------------------------------------------------------------ the head
class DlibHead:
    """Dense head over standardised dlib embeddings. `logits_*` are numpy only (no Keras, no TensorFlow)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 cfg: DlibHeadConfig, history: dict | None = None) -> None:
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self.cfg = cfg
        self.history = history or {}

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[1])

    def logits_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """(N, 128) dlib embeddings -> (N, K) logits (inference: dropout off)."""
        e = np.asarray(emb, np.float32)
        if e.ndim != 2 or e.shape[1] != EMBED_DIM:
            raise DataError(f"expected (N, {EMBED_DIM}) dlib embeddings, got {e.shape}")
        return ((e - self.mean) / self.scale) @ self.weight + self.bias

    def logits(self, images: Sequence[np.ndarray] | np.ndarray, *,
               cache: EmbeddingCache | str | Path | None = None) -> np.ndarray:
        """Images (any size, uint8, grey or RGB) -> (N, K) logits: the KD table for `train_classifier`."""
        emb, _ = embed_images(images, self.cfg, cache=cache)
        return self.logits_from_embeddings(emb)

    def predict(self, images: Sequence[np.ndarray] | np.ndarray, *,
                cache: EmbeddingCache | str | Path | None = None) -> np.ndarray:
        return np.argmax(self.logits(images, cache=cache), axis=1)

    def save(self, path: str | Path) -> Path:
        """One `.npz` (weights, standardisation, config as JSON), written atomically."""
        buf = io.BytesIO()
        np.savez(buf, weight=self.weight, bias=self.bias, mean=self.mean, scale=self.scale,
                 config=np.array(json.dumps(self.cfg.to_dict())))
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> DlibHead:
        try:
            with np.load(path, allow_pickle=False) as z:
                cfg = DlibHeadConfig(**json.loads(str(z["config"])))
                return cls(z["weight"], z["bias"], z["mean"], z["scale"], cfg)
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise DataError(f"dlib_head file {path} is unreadable ({e}); delete it to retrain") from e


def train_head(emb: np.ndarray, labels: np.ndarray, num_classes: int, cfg: DlibHeadConfig = DlibHeadConfig(),
               ) -> DlibHead:
    """Fit Dropout(cfg.dropout) -> Dense(num_classes) on embeddings (full batch, Adam, decoupled weight decay).

    Full batch because a few thousand 128-d rows fit in memory and it makes the fit deterministic given
    `cfg.seed` (the only randomness is the dropout mask and the initial weights).
    """
    x = np.asarray(emb, np.float64)
    y = np.asarray(labels, np.int64).reshape(-1)
    if x.ndim != 2 or x.shape[1] != EMBED_DIM or len(x) != len(y) or len(y) == 0:
        raise DataError(f"train_head needs (N, {EMBED_DIM}) embeddings and N labels; got {x.shape}, {y.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    rng = np.random.default_rng(cfg.seed)
    w = rng.normal(0.0, 1.0 / np.sqrt(EMBED_DIM), (EMBED_DIM, num_classes))
    b = np.zeros(num_classes)
    onehot = np.eye(num_classes)[y]
    params = [w, b]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    losses = []
    keep = 1.0 - cfg.dropout
    for t in range(1, cfg.epochs + 1):
        mask = (rng.random(xs.shape) < keep) / keep if cfg.dropout > 0 else 1.0
        xd = xs * mask
        z = xd @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        losses.append(float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))))
        g = (p - onehot) / len(y)
        grads = [xd.T @ g, g.sum(axis=0)]
        lr = cfg.learning_rate * 0.5 * (1 + np.cos(np.pi * (t - 1) / cfg.epochs))  # cosine decay
        for i, (prm, grd) in enumerate(zip(params, grads, strict=True)):
            m1[i] = b1 * m1[i] + (1 - b1) * grd
            m2[i] = b2 * m2[i] + (1 - b2) * grd * grd
            step = (m1[i] / (1 - b1**t)) / (np.sqrt(m2[i] / (1 - b2**t)) + eps)
            prm -= lr * (step + cfg.weight_decay * prm * (i == 0))
    return DlibHead(w, b, mean, scale, cfg, {"loss": losses})


def fit_dlib_head(train_images: Sequence[np.ndarray] | np.ndarray, labels: np.ndarray, *, num_classes: int,
                  cfg: DlibHeadConfig = DlibHeadConfig(),
                  cache: EmbeddingCache | str | Path | None = None) -> DlibHead:
    """Embed the training images with frozen dlib (cached) and train the head on them.

    `train_images`: uint8 images of any size (grey or RGB), ideally the originals rather than the student's
    downscaled input (see the module docstring). Returns a `DlibHead`; `head.logits(images)` gives the KD table.
    """
    store = EmbeddingCache(cache) if isinstance(cache, (str, Path)) else cache
    emb, how = embed_images(train_images, cfg, cache=store)
    head = train_head(emb, labels, num_classes, cfg)
    head.history["align"] = {k: how.count(k) for k in sorted(set(how))}
    return head


def dlib_costs_ms(image: np.ndarray, cfg: DlibHeadConfig = DlibHeadConfig()) -> tuple[int, float]:
    """(bytes of dlib's ResNet weight file, median milliseconds to align + embed one image on this CPU): the
    teacher's flash and host latency in the report (it is not an MCU model)."""
    import time

    from atalaia.models.dlib_weights import import_dlib

    _, frm = import_dlib()
    dat = Path(frm.face_recognition_model_location()).stat().st_size
    embed_images([image], cfg, cache=None)  # warm-up: loads the networks
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        embed_images([image], cfg, cache=None)
        times.append(1e3 * (time.perf_counter() - t0))
    return int(dat), round(float(np.median(times)), 3)


__all__ = ["ALIGN_MODES", "DlibHead", "DlibHeadConfig", "center_chip", "dlib_input", "embed_images",
           "dlib_costs_ms", "fit_dlib_head", "load_originals", "train_head"]
