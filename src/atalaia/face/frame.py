"""From a camera frame to the recogniser's input, as the device does it: letterbox, int8 detector, decode + NMS,
the face to use, one-warp 5-point alignment (`face.align5`).

Every step has a C twin in `deploy/face_c` (`atalaia_face_frame.c` calls `atalaia_face_detect.c`), and this
module is the reference the C is tested against (`tests/deploy/test_face_frame_c.py`): the same letterbox
(bilinear at output pixel centres, edge pixels replicated inside the frame, black outside it - PIL's affine
bilinear, which made the training inputs, agrees within one grey level), the same box and the same chip.

Which face: the **largest** box above the detector's operating threshold (the person at the door is the one
closest to the camera); ties go to the higher score. The number of faces found is kept so a caller can say
that others were ignored. No face above the threshold: `FrameFace` is None.

`FrameDetector` holds the int8 detector and its operating point (score threshold, NMS IoU, max detections);
`atalaia.face.access.load_detector` builds it from a finished `task: detection` run.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atalaia.data.frames import Letterbox, letterbox_params
from atalaia.deploy.tflite import TFLiteRunner
from atalaia.errors import AtalaiaError
from atalaia.evaluate.detection import Detections, decode, dequantize
from atalaia.face.align5 import align_chip
from atalaia.models.detector import HEAD_CHANNELS

__all__ = ["FrameDetector", "FrameFace", "letterbox_frame", "pick_face"]


def letterbox_frame(frame: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """A grey frame (h, w) uint8 of any size -> the detector's (H, W) uint8 input (aspect kept, centred, black
    bars) and the mapping back. Output pixel centre (u + .5, v + .5) = frame point * scale + pad (continuous
    coordinates); sampled bilinearly with pixel k at k + .5; outside [0, w) x [0, h) = 0, neighbours clamped."""
    img = np.asarray(frame, np.float64)
    h, w = img.shape
    lb = letterbox_params((h, w), input_hw)
    v, u = np.mgrid[0:input_hw[0], 0:input_hw[1]].astype(np.float64)
    xc = (u + 0.5 - lb.pad_x) / lb.scale  # continuous frame coordinates
    yc = (v + 0.5 - lb.pad_y) / lb.scale
    inside = (xc >= 0) & (xc < w) & (yc >= 0) & (yc < h)
    xs, ys = xc - 0.5, yc - 0.5
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)

    def px(y, x):
        return img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]

    top = px(y0i, x0i) * (1 - fx) + px(y0i, x0i + 1) * fx
    bot = px(y0i + 1, x0i) * (1 - fx) + px(y0i + 1, x0i + 1) * fx
    g = np.where(inside, np.floor(top * (1 - fy) + bot * fy + 0.5), 0.0)
    return np.clip(g, 0, 255).astype(np.uint8), lb


def pick_face(dets: Detections) -> int | None:
    """Index of the face to use: the largest box (area), ties -> higher score; None when there is none."""
    if len(dets) == 0:
        return None
    area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
    return int(np.lexsort((-dets.scores, -area))[0])


@dataclass(frozen=True)
class FrameFace:
    """The face a frame gives the recogniser: chip (S, S) uint8, its box / score / 5 points in frame pixels,
    how many faces were found, and the milliseconds of each step."""

    chip: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    faces: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class FrameDetector:
    """An int8 face detector (`.tflite` bytes) with its operating point. runtime: litert | tflm.

    Built from a detection run folder by `atalaia.face.access.load_detector` (checksums verified there)."""

    def __init__(self, blob: bytes, *, output_scale: float, output_zero_point: int, score_threshold: float,
                 nms_iou: float, max_detections: int, runtime: str = "litert", source: str = "the detector") -> None:
        self.blob = bytes(blob)
        self.sha256 = hashlib.sha256(self.blob).hexdigest()
        self._q = TFLiteRunner(self.blob)
        shape = self._q.input_shape
        if len(shape) != 4 or shape[-1] != 1 or tuple(self._q.output_shape[-1:]) != (HEAD_CHANNELS,):
            raise AtalaiaError(f"{source} is not a face detector (input {shape}, output {self._q.output_shape}): "
                               "pass a `task: detection` run as --detector")
        self.input_hw = (int(shape[1]), int(shape[2]))
        self.output_scale, self.output_zero_point = float(output_scale), int(output_zero_point)
        self.score_threshold, self.nms_iou, self.max_detections = float(score_threshold), float(nms_iou), \
            int(max_detections)
        self.runtime = runtime
        self._tflm = None
        if runtime == "tflm":
            from atalaia.deploy.tflm import tflm_runtime

            self._tflm = tflm_runtime().Interpreter.from_bytes(self.blob, arena_size=2 << 20)
        elif runtime != "litert":
            raise AtalaiaError(f"--runtime must be litert or tflm, got '{runtime}'")

    @property
    def input_scale(self) -> float:
        return self._q.input_scale

    @property
    def input_zero_point(self) -> int:
        return self._q.input_zero_point

    def input_q(self, x: np.ndarray) -> np.ndarray:
        """Letterboxed uint8 (H, W) -> the int8 input (1, H, W, 1), as the C module quantizes it."""
        return self._q.quantize_input(np.asarray(x, np.float32)[None, ..., None] / np.float32(255.0))

    def raw(self, xq: np.ndarray) -> np.ndarray:
        """int8 input (1, H, W, 1) -> the raw int8 head output (h, w, 15)."""
        if self._tflm is not None:
            self._tflm.set_input(np.ascontiguousarray(xq), 0)
            self._tflm.invoke()
            return np.asarray(self._tflm.get_output(0))[0].copy()
        return self._q.predict_raw(xq)[0]

    def detect(self, frame: np.ndarray) -> tuple[Detections, dict[str, float], np.ndarray]:
        """Detections in frame pixels (above the operating threshold), step timings (ms), raw output."""
        t0 = time.perf_counter()
        x, lb = letterbox_frame(frame, self.input_hw)
        xq = self.input_q(x)
        t1 = time.perf_counter()
        out = self.raw(xq)
        t2 = time.perf_counter()
        dets = decode(dequantize(out, self.output_scale, self.output_zero_point),
                      score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                      max_detections=self.max_detections).mapped(lb.to_frame)
        t3 = time.perf_counter()
        ms = {"letterbox": 1e3 * (t1 - t0), "detector": 1e3 * (t2 - t1), "decode_nms": 1e3 * (t3 - t2)}
        return dets, ms, out

    def face(self, frame: np.ndarray, out_size: int, crop: float) -> FrameFace | None:
        """The recogniser's chip from the frame's chosen face (`pick_face`), or None when no face is found."""
        dets, ms, _ = self.detect(frame)
        k = pick_face(dets)
        if k is None:
            return None
        t0 = time.perf_counter()
        chip = align_chip(frame, dets.landmarks[k], out_size, crop)
        ms["align"] = 1e3 * (time.perf_counter() - t0)
        box = tuple(float(v) for v in dets.boxes[k])
        return FrameFace(chip, box, float(dets.scores[k]), dets.landmarks[k], len(dets), ms)  # type: ignore[arg-type]

    def facts(self) -> dict[str, Any]:
        """What a firmware needs besides the model (detector_model.h)."""
        return {"input_hw": list(self.input_hw), "input_scale": self.input_scale,
                "input_zero_point": self.input_zero_point, "output_scale": self.output_scale,
                "output_zero_point": self.output_zero_point, "grid_hw": list(self._q.output_shape[1:3]),
                "score_threshold": self.score_threshold, "nms_iou": self.nms_iou,
                "max_detections": self.max_detections, "sha256": self.sha256}

