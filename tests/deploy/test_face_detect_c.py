"""The on-device detection post-processing and alignment (deploy/face_c/atalaia_face_detect.{h,c}), compiled
with the host C compiler: the same boxes, scores and landmarks as `evaluate.detection.decode`, and the same
aligned chip as `face.align5.align_chip` within one grey level, on the fixture frames. CI sets
ATALAIA_REQUIRE_CC=1, so a missing compiler fails there instead of skipping."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from atalaia.data.align import DLIB_CHIP_SIZE, DLIB_PADDING, similarity_transform, template_points
from atalaia.data.frames import load_frames
from atalaia.evaluate.detection import decode, dequantize
from atalaia.face.align5 import align_chip, chip_to_frame, fit_similarity
from atalaia.models.detector import HEAD_CHANNELS, LANDMARK_GAIN, OFFSET_GAIN, SIZE_GAIN, SIZE_UNIT, STRIDE

C_DIR = Path(__file__).resolve().parents[2] / "src" / "atalaia" / "deploy" / "face_c"
FRAMES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
GH, GW = 12, 16


def _run_c(cc: str, tmp_path: Path, main: str) -> list[str]:
    for name in ("atalaia_face_detect.h", "atalaia_face_detect.c"):
        shutil.copy(C_DIR / name, tmp_path / name)
    (tmp_path / "main.c").write_text(main)
    exe = tmp_path / "det_test"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    str(tmp_path / "atalaia_face_detect.c"), str(tmp_path / "main.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


def _outputs(seed: int) -> np.ndarray:
    """Raw int8 head outputs: background logits, a few planted faces, neighbours with tied and close logits."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-40, 40, (GH, GW, HEAD_CHANNELS))
    q[..., 0] = rng.integers(-128, -60, (GH, GW))
    for _ in range(6):
        i, j = rng.integers(0, GH), rng.integers(0, GW)
        q[i, j, 0] = rng.integers(20, 90)
        for di, dj in ((0, 1), (1, 0)):
            if i + di < GH and j + dj < GW:
                q[i + di, j + dj, 0] = q[i, j, 0] - rng.integers(0, 3)  # ties and near-ties
    return q.astype(np.int8)


@pytest.mark.parametrize("thr,nms,max_det", [(0.5, 0.4, 16), (0.3, 0.2, 3), (0.7, 0.6, 16)])
def test_c_decode_equals_python(tmp_path, thr, nms, max_det, cc, c_array):
    scale, zp = 0.0625, -7
    cases = [_outputs(s) for s in range(5)]
    arrays = "".join(c_array(f"q{k}", q, "int8_t") for k, q in enumerate(cases))
    body = "".join(f"""  n = atalaia_face_detect_decode(q{k}, &p, d);
  printf("case %d\\n", n);
  for (int i = 0; i < n; ++i) {{
    printf("%.9f %.9f %.9f %.9f %.12f", d[i].box[0], d[i].box[1], d[i].box[2], d[i].box[3], d[i].score);
    for (int k = 0; k < 5; ++k) printf(" %.9f %.9f", d[i].points[k][0], d[i].points[k][1]);
    printf("\\n");
  }}
""" for k in range(len(cases)))
    main = f"""#include <stdio.h>
#include "atalaia_face_detect.h"
{arrays}
int main(void) {{
  atalaia_det_params_t p = {{{GH}, {GW}, {STRIDE}, {scale}, {zp}, {OFFSET_GAIN}, {SIZE_GAIN}, {LANDMARK_GAIN},
                            {SIZE_UNIT}, {thr}, {nms}, {max_det}}};
  atalaia_detection_t d[64];
  int n;
{body}  return 0;
}}
"""
    lines = _run_c(cc, tmp_path, main)
    total, at = 0, 0
    for q in cases:
        ref = decode(dequantize(q, scale, zp), score_threshold=thr, nms_iou=nms, max_detections=max_det)
        assert lines[at] == f"case {len(ref)}"  # C kept as many detections as Python
        got = np.array([[float(v) for v in ln.split()] for ln in lines[at + 1: at + 1 + len(ref)]]).reshape(-1, 15)
        at += 1 + len(ref)
        np.testing.assert_allclose(got[:, :4], ref.boxes, atol=1e-6)
        np.testing.assert_allclose(got[:, 4], ref.scores, atol=1e-9)
        np.testing.assert_allclose(got[:, 5:].reshape(-1, 5, 2), ref.landmarks, atol=1e-6)
        total += len(ref)
    assert total >= 5  # the cases do produce detections


def test_closed_form_similarity_equals_umeyama():
    fs = load_frames(FRAMES)
    src = template_points(DLIB_CHIP_SIZE, DLIB_PADDING)
    for lm in np.concatenate(fs.landmarks):
        np.testing.assert_allclose(fit_similarity(src, lm), similarity_transform(src, lm), atol=1e-9)


def _points_c(pts: np.ndarray) -> str:
    return "{" + ", ".join(f"{{{float(x)!r}, {float(y)!r}}}" for x, y in np.asarray(pts, float)) + "}"


@pytest.mark.parametrize("size,crop", [(64, 0.7), (112, 1.0), (150, 1.0)])
def test_c_alignment_equals_python_within_one_grey_level(tmp_path, size, crop, cc, c_array):
    fs = load_frames(FRAMES)
    rng = np.random.default_rng(1)
    jobs = []  # (frame index, points): the labels, and labels moved by up to 2 px (a detector's error)
    for f, lms in enumerate(fs.landmarks):
        for lm in lms[:2]:
            jobs.append((f, lm.astype(np.float64)))
            jobs.append((f, lm + rng.uniform(-2, 2, lm.shape)))
    frames = "".join(c_array(f"f{f}", img, "uint8_t") for f, img in enumerate(fs.images) if len(fs.landmarks[f]))
    body = ""
    for f, pts in jobs:
        h, w = fs.images[f].shape
        body += f"""  {{ const double pts[5][2] = {_points_c(pts)};
    atalaia_align_chip(f{f}, {w}, {h}, pts, {size}, {crop!r}, chip);
    for (int i = 0; i < {size * size}; ++i) printf("%d ", chip[i]);
    printf("\\n"); }}
"""
    main = f"""#include <stdio.h>
#include "atalaia_face_detect.h"
{frames}
static uint8_t chip[{size * size}];
int main(void) {{
{body}  return 0;
}}
"""
    lines = _run_c(cc, tmp_path, main)
    assert len(lines) == len(jobs)
    worst, exact = 0, []
    for (f, pts), ln in zip(jobs, lines, strict=True):
        got = np.array(ln.split(), int).reshape(size, size)
        ref = align_chip(fs.images[f], pts, size, crop).astype(int)
        worst = max(worst, int(np.abs(got - ref).max()))
        exact.append(float(np.mean(got == ref)))
        assert ref.std() > 5  # a real face chip, not an empty warp
    assert worst <= 1
    assert np.mean(exact) > 0.99


def test_alignment_frames_the_face_like_dlib():
    """Our one-warp chip (150 px, no crop) against dlib.get_face_chip with the same 5 points: the same framing
    (only the resampling differs), clearly closer than the same warp moved by one frame pixel."""
    dlib = pytest.importorskip("dlib")
    fs = load_frames(FRAMES)
    same, moved = [], []
    for img, lms in zip(fs.images, fs.landmarks, strict=True):
        for lm in lms[:2]:
            rect = dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
            shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in lm])
            rgb = np.repeat(img[..., None], 3, axis=2)
            ref = np.asarray(dlib.get_face_chip(rgb, shape, size=DLIB_CHIP_SIZE, padding=DLIB_PADDING))[..., 0]
            ref = ref.astype(int)
            same.append(np.mean(np.abs(align_chip(img, np.round(lm), DLIB_CHIP_SIZE, 1.0).astype(int) - ref)))
            moved.append(np.mean(np.abs(align_chip(img, np.round(lm) + 1.0, DLIB_CHIP_SIZE, 1.0).astype(int) - ref)))
    assert np.median(same) < 5.0, same
    assert np.median(same) < 0.6 * np.median(moved), (same, moved)


def test_chip_corners_follow_the_template():
    """The template's eye points land where dlib's chip puts them (150 px, no crop): the map is the inverse."""
    lm = template_points(DLIB_CHIP_SIZE, DLIB_PADDING) * 0.5 + 20  # a face at half scale, shifted
    m = chip_to_frame(lm, DLIB_CHIP_SIZE, 1.0)
    p = template_points(DLIB_CHIP_SIZE, DLIB_PADDING)
    uv = p - 0.5 + 0.5  # chip pixel index of a template point (index = point), through our half-pixel shift
    np.testing.assert_allclose(uv @ m[:, :2].T + m[:, 2], lm, atol=1e-9)
