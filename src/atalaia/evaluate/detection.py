"""Face detection: decode + NMS of the detector's output (the reference the C module must equal), and metrics.

Decode (the C module `deploy/face_c/atalaia_face_detect.c` does exactly this, in double precision):
cells whose heat-map logit exceeds logit(score_threshold) are candidates, ordered by logit (ties: lower cell
index first, so the order is the same everywhere), decoded to a box and 5 points in input pixels, then greedy
NMS drops a candidate whose IoU with a kept box exceeds `nms_iou`; at most `max_detections` are kept.

Metrics are against dlib **pseudo-labels**, which miss small and profile faces (README of face_frames): a
"false positive" on a face frame may be an unlabelled face. AP uses all-point interpolation (VOC 2010+/COCO
matching: each detection, by score, takes the unmatched label with the highest IoU >= t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atalaia.models.detector import LANDMARK_GAIN, OFFSET_GAIN, SIZE_GAIN, SIZE_UNIT, STRIDE

SIZE_BINS = (0, 16, 24, 32, 48, 64, 96, 1000)  # longest box side in frame pixels, as in the dataset README
LABEL_NOTE = ("Labels are dlib pseudo-labels (HOG + MMOD, 5-point predictor), not hand boxes: they miss small "
              "(< ~16 px) and profile faces, so recall on those is unmeasured and some 'false positives' on face "
              "frames are real unlabelled faces.")


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x1 y1 x2 y2
    scores: np.ndarray  # (n,)
    landmarks: np.ndarray  # (n, 5, 2)

    def __len__(self) -> int:
        return len(self.scores)

    def mapped(self, fn) -> Detections:
        """Coordinates through `fn` (points (..., 2) -> (..., 2)), e.g. input pixels -> frame pixels."""
        b = fn(self.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return Detections(b, self.scores, fn(self.landmarks))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with (n, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-12)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw int8 outputs -> float64, as the C module does: (q - zero_point) * scale (scale as float32)."""
    return (np.asarray(q).astype(np.float64) - int(zero_point)) * float(np.float32(scale))


def decode(out: np.ndarray, *, score_threshold: float = 0.5, nms_iou: float = 0.4,
           max_detections: int = 16) -> Detections:
    """One frame's head output (H/8, W/8, 15), dequantized, -> detections in input pixels."""
    out = np.asarray(out, np.float64)
    gh, gw, _ = out.shape
    flat = out.reshape(-1, out.shape[-1])
    t = float(np.log(score_threshold / (1.0 - score_threshold)))
    cand = np.nonzero(flat[:, 0] > t)[0]
    cand = cand[np.lexsort((cand, -flat[cand, 0]))]  # logit descending, then cell index ascending
    boxes, scores, pts = [], [], []
    for c in cand:
        v = flat[c]
        i, j = divmod(int(c), gw)
        cx = (j + 0.5 + v[1] / OFFSET_GAIN) * STRIDE
        cy = (i + 0.5 + v[2] / OFFSET_GAIN) * STRIDE
        bw = SIZE_UNIT * np.exp(v[3] / SIZE_GAIN)
        bh = SIZE_UNIT * np.exp(v[4] / SIZE_GAIN)
        box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        if boxes and np.any(iou(box, np.array(boxes)) > nms_iou):
            continue
        boxes.append(box)
        scores.append(1.0 / (1.0 + np.exp(-v[0])))
        pts.append(np.array([cx, cy]) + (v[5:15].reshape(5, 2) / LANDMARK_GAIN) * bw)
        if len(boxes) >= max_detections:
            break
    return Detections(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64),
                      np.array(pts, np.float64).reshape(-1, 5, 2))


def _match(dets: list[Detections], gts: list[np.ndarray], thr: float) -> tuple[np.ndarray, np.ndarray, list]:
    """(scores, is_tp) of every detection over all frames, and per frame the matched label of each detection."""
    scores, tp, frame_matches = [], [], []
    for d, g in zip(dets, gts, strict=True):
        used = np.zeros(len(g), bool)
        m = np.full(len(d), -1)
        for k in np.argsort(-d.scores, kind="stable"):
            if len(g):
                ious = np.where(used, -1.0, iou(d.boxes[k], g))
                best = int(np.argmax(ious))
                if ious[best] >= thr:
                    used[best] = True
                    m[k] = best
            scores.append(d.scores[k])
            tp.append(m[k] >= 0)
        frame_matches.append(m)
    return np.array(scores), np.array(tp, bool), frame_matches


def pr_curve(dets: list[Detections], gts: list[np.ndarray], iou_threshold: float = 0.5
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, score) at each detection, detections sorted by score."""
    scores, tp, _ = _match(dets, gts, iou_threshold)
    order = np.argsort(-scores, kind="stable")
    tp = tp[order]
    n_gt = max(sum(len(g) for g in gts), 1)
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    return ctp / np.maximum(ctp + cfp, 1), ctp / n_gt, scores[order]


def average_precision(dets: list[Detections], gts: list[np.ndarray], iou_threshold: float = 0.5) -> float:
    """All-point interpolated AP (area under the monotone precision envelope)."""
    prec, rec, _ = pr_curve(dets, gts, iou_threshold)
    if len(rec) == 0:
        return 0.0
    r = np.concatenate([[0.0], rec, [rec[-1]]])
    p = np.concatenate([[1.0], prec, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def inter_ocular(lms: np.ndarray) -> np.ndarray:
    """Distance between the two eye centres of dlib's 5 points (mean of corners 0,1 and of 2,3)."""
    lms = np.asarray(lms, np.float64)
    return np.linalg.norm(lms[..., :2, :].mean(-2) - lms[..., 2:4, :].mean(-2), axis=-1)


def detection_metrics(dets: list[Detections], gts: list[np.ndarray], gt_lms: list[np.ndarray],
                      empty: list[bool], *, score_threshold: float = 0.5) -> dict:
    """AP@0.5, AP@0.5:0.95, and at `score_threshold`: precision, recall, recall by face size, landmark NME
    (inter-ocular), and false positives per empty frame. `dets` hold all detections down to a low score;
    `empty` marks the clean negative frames (no face); their detections are all false positives."""
    ap = {f"{t:.2f}": average_precision(dets, gts, t) for t in np.arange(0.5, 0.96, 0.05)}
    op = [Detections(d.boxes[d.scores >= score_threshold], d.scores[d.scores >= score_threshold],
                     d.landmarks[d.scores >= score_threshold]) for d in dets]
    _, tp, matches = _match(op, gts, 0.5)
    n_gt = sum(len(g) for g in gts)
    found = [np.zeros(len(g), bool) for g in gts]
    nme = []
    for f, (d, m) in enumerate(zip(op, matches, strict=True)):
        for k, gi in enumerate(m):
            if gi >= 0:
                found[f][gi] = True
                g = gt_lms[f][gi]
                nme.append(float(np.mean(np.linalg.norm(d.landmarks[k] - g, axis=-1)) / max(inter_ocular(g), 1e-6)))
    sizes = np.concatenate([np.maximum(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]) for g in gts if len(g)] or [[]])
    hit = np.concatenate([f for f in found if len(f)] or [[]]).astype(bool)
    by_size = {}
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
        sel = (sizes >= lo) & (sizes < hi)
        if sel.any():
            by_size[f"{lo}-{hi}"] = {"faces": int(sel.sum()), "recall": float(hit[sel].mean())}
    n_empty = int(sum(empty))
    fp_empty = int(sum(len(d) for d, e in zip(op, empty, strict=True) if e))
    return {
        "ap50": ap["0.50"], "ap50_95": float(np.mean(list(ap.values()))), "ap_by_iou": ap,
        "score_threshold": score_threshold, "faces": int(n_gt), "frames": len(gts),
        "precision": float(tp.mean()) if len(tp) else 0.0, "recall": float(hit.mean()) if len(hit) else 0.0,
        "recall_by_size": by_size,
        "nme": float(np.mean(nme)) if nme else None, "nme_median": float(np.median(nme)) if nme else None,
        "nme_faces": len(nme), "empty_frames": n_empty,
        "fp_per_empty_frame": fp_empty / n_empty if n_empty else None,
        "label_note": LABEL_NOTE,
    }


def plot_pr(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """PNG of precision-recall curves at IoU 0.5, one per stage."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.add_subplot()
    for name, (prec, rec) in curves.items():
        ax.plot(rec, prec, label=name)
    ax.set_xlabel("recall (vs dlib pseudo-labels)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Face detection PR, IoU 0.5 (pseudo-labels miss small/profile faces)", fontsize=8)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def draw_examples(frames: list[np.ndarray], dets: list[Detections], gts: list[np.ndarray], *, cols: int = 4,
                  scale: int = 2) -> bytes:
    """PNG grid: each frame with its labels (thin green) and detections (red box + 5 yellow points + score)."""
    import io

    from PIL import Image, ImageDraw

    tiles = []
    for img, d, g in zip(frames, dets, gts, strict=True):
        im = Image.fromarray(img).convert("RGB")
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.BILINEAR)
        dr = ImageDraw.Draw(im)
        for b in g:
            dr.rectangle([float(v) * scale for v in b], outline=(0, 200, 0), width=1)
        for b, s, p in zip(d.boxes, d.scores, d.landmarks, strict=True):
            dr.rectangle([float(v) * scale for v in b], outline=(255, 40, 40), width=2)
            dr.text((float(b[0]) * scale + 2, float(b[1]) * scale + 1), f"{s:.2f}", fill=(255, 40, 40))
            for x, y in p:
                r = 2
                dr.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], fill=(255, 220, 0))
        tiles.append(im)
    tw = max(t.width for t in tiles)
    th = max(t.height for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tw, rows * th), (40, 40, 40))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * tw, (k // cols) * th))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["Detections", "LABEL_NOTE", "SIZE_BINS", "average_precision", "decode", "dequantize", "detection_metrics",
           "draw_examples", "inter_ocular", "iou", "plot_pr", "pr_curve"]
