"""Shared fixtures for the data tests: fixture paths, the shared datasets (skip when absent), a synthetic scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
# ../shared beside the repo (CI and the workstation); a clone elsewhere falls back to the workstation copy
SHARED_DATASETS = next((p for p in (Path(__file__).resolve().parents[3] / "shared" / "datasets",
                         Path("/work/shared/datasets")) if p.is_dir()), Path("/work/shared/datasets"))


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_lfw() -> Path:
    p = SHARED_DATASETS / "lfw"
    if not (p / "pairs.txt").is_file():
        pytest.skip(f"shared LFW not available at {p}")
    return p


@pytest.fixture(scope="session")
def lfw_chip() -> np.ndarray:
    """A real aligned LFW chip (112x112 grey replicated to RGB)."""
    return np.asarray(Image.open(FIXTURES / "lfw" / "Abel_Pacheco_0001.jpg").convert("RGB"))


@pytest.fixture(scope="session")
def face_scene(lfw_chip):
    """(scene, angle_deg, scale): the chip enlarged to 224 px, put on a 320x320 grey canvas, rotated 15 deg.

    The face in the scene is a known similarity transform of an already-aligned chip, so aligning the scene
    must undo it.
    """
    import cv2

    big = cv2.resize(lfw_chip, (224, 224), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((320, 320, 3), 90, np.uint8)
    canvas[40:264, 60:284] = big
    m = cv2.getRotationMatrix2D((172, 152), 15, 1.0)
    return cv2.warpAffine(canvas, m, (320, 320), borderValue=(90, 90, 90)), 15.0, 1.0
