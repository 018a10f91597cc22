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
