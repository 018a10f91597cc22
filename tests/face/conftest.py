"""Tiny generated face-chip fixtures: a chip set (labels.csv + chips + stored teacher embeddings) and an
LFW-style folder (Name/Name_NNNN.jpg + a 2-fold pairs file), with one corrupt image and one missing image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N_IDS = 4
PER_ID = 6
SIZE = 112


def _face(i: int, j: int, rng: np.random.Generator) -> np.ndarray:
    """Identity = orientation/frequency of a grating; sample = phase + noise (texture, not position)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    theta = np.pi * i / N_IDS
    freq = 2 * np.pi * (3 + i % 3) / SIZE
    wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi))
    return np.clip(128 + 80 * wave + rng.normal(0, 10, wave.shape), 0, 255).astype(np.uint8)


def _teacher(i: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    v = centers[i] + rng.normal(0, 0.15, 128)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="session")
def face_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("face")
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (N_IDS + 3, 128))
    # chip set
    cs = root / "chipset"
    rows, embs, chips = [], [], []
    for i in range(N_IDS):
        d = cs / "chips112" / f"{i:05d}"
        d.mkdir(parents=True)
        for j in range(PER_ID):
            rel = f"chips112/{i:05d}/{j}.jpg"
            Image.fromarray(np.stack([_face(i, j, rng)] * 3, axis=2)).save(cs / rel, quality=95)
            rows.append((rel, i))
            embs.append(_teacher(i, rng, centers))
            chips.append(rel)
    (cs / "unlabeled").mkdir()
    Image.fromarray(_face(0, 99, rng)).save(cs / "unlabeled" / "u0.jpg")
    rows.append(("unlabeled/u0.jpg", -1))
    embs.append(_teacher(0, rng, centers))
    chips.append("unlabeled/u0.jpg")
    with (cs / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chip", "identity"])
        w.writerows(rows)
    np.savez(cs / "dlib_resnet128.npz", emb=np.stack(embs), chip=np.array(chips), identity=np.array([r[1] for r in rows]))
    # LFW-like folder: people P0..P2 with 3 images (P0..P1 enrolable), one corrupt image
    lfw = root / "lfw"
    names = ["Ann_A", "Bob_B", "Cid_C"]
    lchips, lembs = [], []
    for k, name in enumerate(names):
        (lfw / name).mkdir(parents=True)
        for n in range(1, 4):
            rel = f"{name}/{name}_{n:04d}.jpg"
            Image.fromarray(_face(k % N_IDS, n, rng)).save(lfw / rel, quality=95)
            lchips.append(rel)
            lembs.append(_teacher(N_IDS + k, rng, centers))
    (lfw / "Cid_C" / "Cid_C_0003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    np.savez(lfw / "dlib_resnet128.npz", emb=np.stack(lembs), chip=np.array(lchips), person=np.array(["x"] * len(lchips)))
    pairs = [
        "2\t2",
        "Ann_A\t1\t2", "Bob_B\t1\t2", "Ann_A\t1\tBob_B\t1", "Ann_A\t2\tCid_C\t1",
        "Bob_B\t2\t3", "Cid_C\t1\t2", "Bob_B\t3\tCid_C\t2", "Ann_A\t3\tCid_C\t3",  # Cid_C_0003 is corrupt
    ]
    (lfw / "pairs.txt").write_text("\n".join(pairs) + "\n")
    (lfw / "pairs_missing.txt").write_text("\n".join(pairs[:-1] + ["Ann_A\t3\tNobody_N\t1"]) + "\n")
    return {"root": root, "chipset": cs, "lfw": lfw}


@pytest.fixture
def fit_args():
    """`fit_args(epochs=2, kd_weight=5.0, ...)` -> keyword arguments of `train_embedding`."""
    return make_fit_args


def make_fit_args(*, epochs: int = 30, batch_size: int = 128, learning_rate: float = 3e-3, weight_decay: float = 5e-5,
             seed: int = 42, **loss) -> dict:
    """Keyword arguments of `train_embedding`: the recipe sections it consumes (`face.loss`, `train`) + seed."""
    from atalaia.config import FaceLossConfig, TrainConfig

    return {"loss": FaceLossConfig(**loss), "seed": seed,
            "train": TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                 weight_decay=weight_decay)}
