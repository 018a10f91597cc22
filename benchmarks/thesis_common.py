"""Shared pieces of `thesis_table1.py` / `thesis_table2.py`: the CelebA closed-set task, the dlib_head teacher,
scoring with intervals. Building blocks only (no pipeline, no run folder)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from atalaia.config import AugmentConfig, TrainConfig  # noqa: E402
from atalaia.data.chip_task import ChipTask, ChipTaskConfig, load_chip_task  # noqa: E402
from atalaia.data.dataset import Split, split_dataset, stratified_split, to_float  # noqa: E402
from atalaia.deploy.tflite import TFLiteRunner  # noqa: E402
from atalaia.evaluate.intervals import accuracy_interval, bootstrap_macro_f1  # noqa: E402
from atalaia.face.data import representative_inputs  # noqa: E402
from atalaia.models.dlib_head import DlibHead, DlibHeadConfig, embed_images, train_head  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPLIT = (0.6, 0.2, 0.2)
# the default recipe's training settings and augmentation (src/atalaia/recipes/default.yaml)
AUGMENT = AugmentConfig(flip=True, shift=0.05, zoom=0.05, brightness=0.1, contrast=0.1)


def default_chips() -> Path:
    """../shared/datasets/celeba_subset_299ids beside the clone, else the workstation copy."""
    for base in (REPO.parent / "shared", Path("/work/shared")):
        p = base / "datasets" / "celeba_subset_299ids"
        if p.is_dir():
            return p
    return REPO.parent / "shared" / "datasets" / "celeba_subset_299ids"


#: Peak learning rate per student for the thesis tables. Rafael: chosen on the validation split by the probes in
#: `thesis_probes.py` (benchmarks/results/thesis_probes.md): their Dense(32) ReLU head dies at lr >= 0.003 on 100
#: classes (training accuracy stays at chance) and learns at 0.001. code2/code3 (flatten -> Dense(1024)): Table 2
#: at 0.003 left code3 at chance (2.75% test, `thesis_table2_lr0003`), at 0.001 it learns (13.5%); not a
#: validation-split choice, the same head failure seen twice. ds_cnn (global pooling) learns at 0.003.
LEARNING_RATES = {"rafael_base": 0.001, "rafael_1": 0.001, "rafael_2": 0.001, "rafael_3": 0.001,
                  "code2": 0.001, "code3": 0.001}
LEARNING_RATE = 0.003
#: Augmentations the tables may use. The probes: on 1,200 training images and a 15-30 epoch CPU budget the default
#: recipe's augmentation slows learning ~3x (rafael_base 4.8% vs 14.2% test after 15 epochs at lr 0.001).
AUGMENTS = {"default": AUGMENT, "flip": AugmentConfig(flip=True, shift=0.0, zoom=0.0, brightness=0.0, contrast=0.0),
            "none": None}


def learning_rate_for(model: str, override: float | None = None) -> float:
    return override if override is not None else LEARNING_RATES.get(model, LEARNING_RATE)


def train_config(epochs: int, learning_rate: float = LEARNING_RATE) -> TrainConfig:
    """The default recipe's training settings (AdamW, cosine decay, batch 32) at the tables' learning rate."""
    return TrainConfig(epochs=epochs, batch_size=32, learning_rate=learning_rate)


def load_task(chips: str | Path, image_size: int) -> ChipTask:
    return load_chip_task(chips, ChipTaskConfig(image_size=image_size))


def split_for(task: ChipTask, seed: int) -> tuple[Split, dict[str, np.ndarray]]:
    """Stratified split of the task with `seed`, and the split's dlib embeddings (same order)."""
    idx = dict(zip(("train", "val", "test"), stratified_split(task.dataset.labels, SPLIT, seed), strict=True))
    sp = split_dataset(task.dataset, SPLIT, seed)
    return sp, {k: task.teacher_embeddings[v] for k, v in idx.items()} | {"_idx_" + k: v for k, v in idx.items()}


def teacher_for(task: ChipTask, split: Split, emb: dict[str, np.ndarray], seed: int,
                cache: Path) -> tuple[DlibHead, dict]:
    """dlib_head on the training split. Uses the chip set's stored dlib embeddings (computed on the 150x150
    RGB chip, dlib's own input) and embeds with dlib only chips that have none (centre chip of the aligned
    112 chip, cached)."""
    cfg = DlibHeadConfig(align="center", center_scale=1.0, seed=seed)
    full = task.teacher_embeddings.copy()
    missing = ~np.isfinite(full).all(axis=1)
    if missing.any():
        imgs = [np.asarray(Image.open(task.dataset.paths[i]).convert("RGB")) for i in np.flatnonzero(missing)]
        full[missing], _ = embed_images(imgs, cfg, cache=cache)
    e = {k: full[emb["_idx_" + k]] for k in ("train", "val", "test")}
    head = train_head(e["train"], split.train.labels, task.dataset.num_classes, cfg)
    scores = {}
    for k in ("val", "test"):
        pred = np.argmax(head.logits_from_embeddings(e[k]), 1)
        scores[k] = score(getattr(split, k).labels, pred, task.dataset.num_classes)
    info = {"config": cfg.to_dict(), "embeddings": "stored dlib_resnet128.npz (150x150 RGB chip)",
            "embedded_here": int(missing.sum()), **scores}
    return head, info | {"train_logits": head.logits_from_embeddings(e["train"])}


def score(y: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    acc = accuracy_interval(y, pred)
    f1 = bootstrap_macro_f1(y, pred, num_classes, n_boot=1000)
    return {"accuracy": acc.to_dict(), "macro_f1": f1.to_dict(), "n": int(len(y))}


def keras_predict(model, images_uint8: np.ndarray) -> np.ndarray:
    from atalaia.compress.distill import predict_logits

    return np.argmax(predict_logits(model, to_float(images_uint8)), axis=1)


def tflite_predict(blob: bytes, images_uint8: np.ndarray) -> np.ndarray:
    return np.argmax(TFLiteRunner(blob).predict(to_float(images_uint8)), axis=1)


def representative(split: Split, n: int = 128, seed: int = 0) -> np.ndarray:
    """PTQ calibration: n training images plus an all-black and an all-white one (full pixel range)."""
    return representative_inputs(split.train.images, n, seed)


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def pm(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    v = np.asarray(values, float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
