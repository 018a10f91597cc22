"""Locate dlib and the weights shipped in the `face-recognition-models` wheel, without a download.

`face_recognition_models/__init__.py` imports `pkg_resources`, which setuptools >= 81 no longer ships; the
weight files themselves are plain package data, so we find the package folder with `importlib` and never
execute that `__init__`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

INSTALL_HINT = "the face pipeline needs dlib: pip install 'atalaia[face]' (dlib-bin + face-recognition-models)"


def weights_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{INSTALL_HINT} (face_recognition_models not found)")
    d = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not d.is_dir():
        raise ImportError(f"{INSTALL_HINT} (no models folder in {d.parent})")
    return d


def _weight(name: str) -> str:
    p = weights_dir() / name
    if not p.is_file():
        raise ImportError(f"{INSTALL_HINT} (missing weight file {p})")
    return str(p)


def import_dlib() -> tuple[Any, Any]:
    """Return (dlib module, namespace with the weight-file locators of face_recognition_models)."""
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    weights_dir()
    frm = SimpleNamespace(
        cnn_face_detector_model_location=lambda: _weight("mmod_human_face_detector.dat"),
        pose_predictor_five_point_model_location=lambda: _weight("shape_predictor_5_face_landmarks.dat"),
        pose_predictor_model_location=lambda: _weight("shape_predictor_68_face_landmarks.dat"),
        face_recognition_model_location=lambda: _weight("dlib_face_recognition_resnet_model_v1.dat"),
    )
    return dlib, frm
