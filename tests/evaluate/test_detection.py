"""Decode (targets round-trip), NMS, AP and the operating-point metrics on hand-made cases."""

from __future__ import annotations

import numpy as np

from atalaia.evaluate.detection import Detections, average_precision, decode, detection_metrics, inter_ocular
from atalaia.models.detector import HEAD_CHANNELS, encode_targets

HW = (96, 128)


def _face(x1, y1, side):
    b = np.array([x1, y1, x1 + side, y1 + side], np.float32)
    lm = np.array([[0.75, 0.35], [0.6, 0.37], [0.25, 0.35], [0.4, 0.37], [0.5, 0.65]], np.float32) * side
    return b, lm + b[:2]


def _output_from_targets(y: np.ndarray) -> np.ndarray:
    """A perfect head output: logit +6 at face centres, -6 elsewhere, the regression targets at the centres."""
    out = np.zeros((*y.shape[:2], HEAD_CHANNELS))
    out[..., 0] = np.where(y[..., 1] > 0, 6.0, -6.0)
    out[..., 1:] = y[..., 2:]
    return out


def test_decode_recovers_encoded_faces():
    faces = [_face(10, 12, 30), _face(70, 40, 44), _face(50, 5, 14)]
    b = np.stack([f[0] for f in faces])
    lm = np.stack([f[1] for f in faces])
    y = encode_targets([b], [lm], HW)[0]
    d = decode(_output_from_targets(y), score_threshold=0.5, nms_iou=0.4)
    assert len(d) == 3
    order = [int(np.argmin(np.abs(d.boxes[:, 0] - bx[0]))) for bx in b]
    np.testing.assert_allclose(d.boxes[order], b, atol=1e-4)
    np.testing.assert_allclose(d.landmarks[order], lm, atol=1e-4)


def test_nms_keeps_the_best_of_overlapping_cells():
    out = np.full((12, 16, HEAD_CHANNELS), 0.0)
    out[..., 0] = -6.0
    out[5, 5, 0], out[5, 6, 0], out[2, 12, 0] = 3.0, 2.0, 1.0  # two neighbours (same 32 px box), one far away
    d = decode(out, score_threshold=0.5, nms_iou=0.4)
    assert len(d) == 2
    assert d.scores[0] == 1 / (1 + np.exp(-3.0))
    assert decode(out, score_threshold=0.5, nms_iou=0.4, max_detections=1).scores.tolist() == [d.scores[0]]
    assert len(decode(out, score_threshold=0.5, nms_iou=0.99)) == 3


def _dets(boxes, scores, lms=None):
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    lms = np.zeros((len(boxes), 5, 2)) if lms is None else np.asarray(lms, float)
    return Detections(boxes, np.asarray(scores, float), lms)


def test_average_precision_cases():
    g = [np.array([[0, 0, 10, 10]], float), np.array([[20, 20, 40, 40]], float)]
    perfect = [_dets([[0, 0, 10, 10]], [0.9]), _dets([[20, 20, 40, 40]], [0.8])]
    assert average_precision(perfect, g) == 1.0
    # a false positive scored above the second hit: precision 1 at recall 0.5, 2/3 at recall 1
    fp_first = [_dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.85]), _dets([[20, 20, 40, 40]], [0.8])]
    assert abs(average_precision(fp_first, g) - (0.5 * 1 + 0.5 * 2 / 3)) < 1e-9
    # a box shifted to IoU 0.68 counts at 0.5, not at 0.75
    shifted = [_dets([[2, 0, 12, 10]], [0.9]), _dets([[20, 20, 40, 40]], [0.8])]
    assert average_precision(shifted, g, 0.5) == 1.0
    assert average_precision(shifted, g, 0.75) == 0.25  # FP first, then a hit: precision 1/2 at recall 1/2
    # duplicates are false positives
    dup = [_dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.7]), _dets([], [])]
    assert abs(average_precision(dup, g) - 0.5) < 1e-9


def test_operating_point_metrics():
    b1, lm1 = _face(0, 0, 40)
    b2, lm2 = _face(60, 60, 14)
    gts = [np.stack([b1, b2]), np.zeros((0, 4))]
    glm = [np.stack([lm1, lm2]), np.zeros((0, 5, 2))]
    iod = float(inter_ocular(lm1))
    moved = lm1 + np.array([iod * 0.1, 0.0])
    dets = [_dets([b1, b2 + 30], [0.9, 0.3], [moved, lm2]), _dets([[5, 5, 20, 20], [40, 40, 60, 60]], [0.7, 0.2])]
    m = detection_metrics(dets, gts, glm, [False, True], score_threshold=0.5)
    assert m["recall"] == 0.5 and m["precision"] == 0.5
    assert abs(m["nme"] - 0.1) < 1e-9 and m["nme_faces"] == 1
    assert m["recall_by_size"] == {"0-16": {"faces": 1, "recall": 0.0}, "32-48": {"faces": 1, "recall": 1.0}}
    assert m["fp_per_empty_frame"] == 1.0 and m["empty_frames"] == 1
    assert "pseudo-labels" in m["label_note"]
