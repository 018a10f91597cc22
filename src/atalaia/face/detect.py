"""Training and running the face detector on frames (building blocks of the `task: detection` plan).

Every epoch draws a fresh augmented view of each training frame (`data.frames.augment_frame`), encodes the
CenterNet targets and runs one Keras epoch on them: the augmentation lives in numpy, the model stays a plain
chain that converts to builtin int8 ops. Inference letterboxes each frame into the input (black bars), runs
the model (float Keras, or any `(N, H, W, 1) float -> (N, h, w, 15)` callable such as an int8 LiteRT runner),
decodes in input pixels and maps the detections back to frame pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from atalaia.data.frames import FrameAugment, FrameSet, augment_frame, letterbox
from atalaia.evaluate.detection import Detections, decode
from atalaia.models.detector import detection_loss, encode_targets


@dataclass(frozen=True)
class DetTrainLog:
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"loss": [round(v, 5) for v in self.loss], "seconds": round(self.seconds, 1)}


def letterboxed(frames: FrameSet, input_hw: tuple[int, int]) -> tuple[np.ndarray, list, list, list]:
    """(N, H, W, 1) uint8 inputs, boxes and landmarks in input pixels, and each frame's Letterbox."""
    xs, bs, ps, lbs = [], [], [], []
    for img, b, p in zip(frames.images, frames.boxes, frames.landmarks, strict=True):
        x, b2, p2, lb = letterbox(img, b, p, input_hw)
        xs.append(x)
        bs.append(b2)
        ps.append(p2)
        lbs.append(lb)
    return np.stack(xs)[..., None], bs, ps, lbs


def augmented_epoch(frames: FrameSet, input_hw: tuple[int, int], aug: FrameAugment,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, bs, ps = [], [], []
    for img, b, p in zip(frames.images, frames.boxes, frames.landmarks, strict=True):
        x, b2, p2 = augment_frame(img, b, p, input_hw, aug, rng)
        xs.append(x)
        bs.append(b2)
        ps.append(p2)
    return np.stack(xs)[..., None].astype(np.float32) / 255.0, encode_targets(bs, ps, input_hw)


def train_detector(model, frames: FrameSet, input_hw: tuple[int, int], *, epochs: int, batch_size: int,
                   learning_rate: float, weight_decay: float, aug: FrameAugment, seed: int,
                   progress: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None
                   ) -> DetTrainLog:
    """AdamW with a cosine learning rate, fixed epochs (no test data used to choose anything)."""
    import time

    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=5.0)
    model.compile(optimizer=opt, loss=detection_loss)
    hist = DetTrainLog()
    t0 = time.perf_counter()
    for e in range(epochs):
        lr = learning_rate * 0.5 * (1 + np.cos(np.pi * e / epochs))
        opt.learning_rate.assign(max(lr, learning_rate * 0.02))
        x, y = augmented_epoch(frames, input_hw, aug, rng)
        h = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        hist.loss.append(float(h.history["loss"][-1]))
        if log:
            log(f"  epoch {e + 1}/{epochs}: loss {hist.loss[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
        if progress:
            progress(e + 1)
    return DetTrainLog(hist.loss, time.perf_counter() - t0)


def detect_frames(predict: Callable[[np.ndarray], np.ndarray], frames: FrameSet, input_hw: tuple[int, int], *,
                  score_threshold: float, nms_iou: float, max_detections: int, batch: int = 64
                  ) -> tuple[list[Detections], np.ndarray]:
    """Detections in frame pixels for every frame, and the raw head outputs (N, h, w, 15)."""
    x, _, _, lbs = letterboxed(frames, input_hw)
    outs = []
    for s in range(0, len(x), batch):
        outs.append(np.asarray(predict(x[s:s + batch].astype(np.float32) / 255.0)))
    out = np.concatenate(outs)
    dets = [decode(o, score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
                   ).mapped(lb.to_frame) for o, lb in zip(out, lbs, strict=True)]
    return dets, out


__all__ = ["DetTrainLog", "augmented_epoch", "detect_frames", "letterboxed", "train_detector"]
