"""Shared fixtures: a tiny generated identity-folder dataset, fixed seeds, quiet TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repo (CI and the workstation); a clone elsewhere falls back to the workstation copy
SHARED = next((p for p in (REPO.parent / "shared", Path("/work/shared")) if p.is_dir()), REPO.parent / "shared")


def make_identity_folder(root: Path, n_ids: int = 4, per_id: int = 8, size: int = 24, seed: int = 0) -> Path:
    """Synthetic 'faces': each identity is a grating of its own orientation and frequency plus noise.

    Texture rather than position distinguishes them, so globally pooled students learn them in a few epochs.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    for i in range(n_ids):
        d = root / f"person_{i:02d}"
        d.mkdir(parents=True)
        theta = np.pi * i / n_ids
        freq = 2 * np.pi * (2 + i % 3) / size
        for j in range(per_id):
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
            img = 128 + 80 * wave + rng.normal(0, 10, wave.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{j}.png")
    return root


@pytest.fixture
def tiny_faces(tmp_path: Path) -> Path:
    return make_identity_folder(tmp_path / "faces")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (vendored TFLM tree, calibration models, datasets) for tests that need it."""
    return SHARED


def _bn_from_data(model, x: np.ndarray):
    """Set every BatchNorm's moving statistics to those of `x` (one training-mode call with momentum 0), so an
    untrained model's features are not ~0."""
    import keras

    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    saved = [la.momentum for la in bns]
    for la in bns:
        la.momentum = 0.0
    model(x, training=True)
    for la, m in zip(bns, saved, strict=True):
        la.momentum = m
    return model


@pytest.fixture(scope="session")
def frame_models(tmp_path_factory) -> dict:
    """A tiny int8 face detector (64x96 grey in, untrained, fixed seed) and a tiny int8 recogniser (32x32 in,
    16-d), each in a run folder holding only what `atalaia access` / `export --detector` read. The detector is
    untrained with a random head: it returns a few boxes (not faces) on the fixture frames at its threshold
    0.5, enough to check the path; `no_face_run` is the same detector at 0.999 (nothing passes)."""
    import json

    import keras

    from atalaia.data.frames import load_frames
    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.deploy.tflm import check_tflm
    from atalaia.face.frame import letterbox_frame
    from atalaia.face.train import build_student
    from atalaia.models.detector import build_detector
    from atalaia.pipeline.runfolder import write_marker

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    frames = load_frames(REPO / "tests" / "fixtures" / "frames")
    x = np.stack([letterbox_frame(f, (64, 96))[0] for f in frames.images])[..., None].astype(np.float32) / 255
    det = _bn_from_data(build_detector((64, 96, 1), width=0.25), x)
    k, b = det.get_layer("head_out").get_weights()  # a random head: a few confident cells, ~32 px boxes
    k = rng.normal(0, 0.5, k.shape).astype(np.float32)
    k[..., 1:] *= 0.1
    b[:] = 0.0
    b[0] = -1.0
    det.get_layer("head_out").set_weights([k, b])
    det_blob = convert_int8(det, x)
    chips = rng.uniform(0, 1, (16, 32, 32, 1)).astype(np.float32)
    rec_blob = convert_int8(_bn_from_data(build_student(32, width=0.25, embedding_dim=16), chips), chips)
    root = tmp_path_factory.mktemp("frame_runs")

    arenas = {blob: check_tflm(blob).arena_bytes for blob in (det_blob, rec_blob)}

    def stage(d: Path, blob: bytes, extra: dict, files: dict, x1: np.ndarray | None = None) -> None:
        d.mkdir(parents=True)
        (d / "model.tflite").write_bytes(blob)
        r = TFLiteRunner(blob)
        x1 = rng.uniform(0, 1, (1, *r.input_shape[1:])) if x1 is None else x1
        xq = r.quantize_input(np.asarray(x1, np.float32))
        np.savez(d / "self_test.npz", input_q=xq[0], output_q=r.predict_raw(xq)[0])
        result = {"arena_bytes": arenas[blob]}
        (d / "metrics.json").write_text(json.dumps({"result": result, "extra": extra}))
        for name, text in files.items():
            (d / name).write_text(text)
        write_marker(d, "test")

    det_q = TFLiteRunner(det_blob)
    oq = {"output_quantization": {"scale": det_q.output_scale, "zero_point": det_q.output_zero_point}}
    runs = {}
    for name, thr in (("det_run", 0.5), ("no_face_run", 0.999)):
        stage(root / name / "int8", det_blob, oq, {}, x[:1])  # self-test input: a letterboxed fixture frame
        (root / name / "recipe.yaml").write_text(f"name: tiny_det\ntask: detection\ndata:\n  image_size: [64, 96]\n  channels: 1\n"
                                                 f"detection:\n  frames_root: frames\n  score_threshold: {thr}\n  nms_iou: 0.4\n")
        runs[name] = root / name
    rq = TFLiteRunner(rec_blob)
    facts = {"grey": True, "crop": 0.875, "input_size": 32, "embedding_dim": 16, "chip": "tiny test recogniser",
             "input_scale": rq.input_scale, "input_zero_point": rq.input_zero_point,
             "output_scale": rq.output_scale, "output_zero_point": rq.output_zero_point, "mirror_tta": True,
             "threshold_lfw_accuracy": 0.5, "threshold_far_1e-3": 0.9, "threshold_far_1e-2": 0.8,
             "impostor_tail": {"pairs": 10**6, "thresholds": {"0.01": 0.6, "0.001": 0.8, "0.0001": 0.95}}}
    stage(root / "face_run" / "int8_litert", rec_blob, {}, {"face_model.json": json.dumps(facts)})
    return {"det_blob": det_blob, "rec_blob": rec_blob, "facts": facts, "face_run": root / "face_run", **runs}
