"""The measurement that chose the detector's input size (`recipes/detection.yaml`: data.image_size).

Usage: python benchmarks/detection_input_size.py [--frames DIR] [--out benchmarks/results/detection_input_size.json]

For each candidate input (H x W, grey) between 96x96 and 120x160: the `face_det` model's params, MACs, int8 flash
and TFLM arena (measured in the TFLM runtime), and what the letterbox does to the pseudo-labelled faces of the
test split (median face side in input pixels; fraction of faces at least 12 px, i.e. 1.5 cells of the stride-8
grid, which is about the smallest face a stride-8 head localises). Not a training run: a cheap, honest screen
of the budgets (arena <= 100 KB) and of the pixels the faces get.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from atalaia.data.frames import letterbox_params, load_frames
from atalaia.deploy.tflite import TFLiteRunner, convert_int8
from atalaia.deploy.tflm import check_tflm
from atalaia.evaluate import profile
from atalaia.ioutil import atomic_write_json
from atalaia.models.detector import build_detector

HERE = Path(__file__).resolve().parent
CANDIDATES = ((96, 96), (96, 128), (128, 96), (120, 160))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default="/work/shared/datasets/face_frames")
    ap.add_argument("--out", default=str(HERE / "results" / "detection_input_size.json"))
    a = ap.parse_args(argv)
    test = load_frames(a.frames, splits=("test",))
    rows = []
    for hw in CANDIDATES:
        sides = []
        for img, b in zip(test.images, test.boxes, strict=True):
            s = letterbox_params(img.shape[:2], hw).scale
            sides += list(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * s)
        sides = np.array(sides)
        m = build_detector((*hw, 1))
        rep = np.random.default_rng(0).random((16, *hw, 1)).astype(np.float32)
        blob = convert_int8(m, rep, per_channel=True, strip=True)
        t = check_tflm(blob, TFLiteRunner(blob).quantize_input(rep[:2]))
        rows.append({"input_hw": list(hw), "params": profile.count_params(m), "macs": int(profile.count_macs(blob)["total"]),
                     "flash_bytes": len(blob), "arena_bytes": int(t.arena_bytes),
                     "arena_ok_100KB": bool(t.arena_bytes <= 100 * 1024),
                     "test_faces": len(sides), "median_face_side_px": round(float(np.median(sides)), 1),
                     "faces_ge_12px": round(float(np.mean(sides >= 12)), 4),
                     "faces_ge_16px": round(float(np.mean(sides >= 16)), 4)})
        print(rows[-1], flush=True)
    atomic_write_json(Path(a.out), {"candidates": rows, "note": "labels are dlib pseudo-labels (miss small and "
                                    "profile faces); arena measured in the TFLM runtime; no training involved"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
