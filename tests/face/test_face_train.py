from __future__ import annotations

import numpy as np
import pytest

from atalaia.errors import RecipeError
from atalaia.face.data import load_chip_sets
from atalaia.face.train import TrainSpec, build_student, embed, train_embedding


@pytest.fixture(scope="module")
def chips(face_data):
    return load_chip_sets([face_data["chipset"]], 32)


@pytest.mark.parametrize("name,head", [("ds_cnn", "gap"), ("ds_cnn", "gdc"), ("ds_cnn_deep", "gap")])
def test_student_is_a_prunable_embedding_chain(name, head):
    from atalaia.compress.prune import channel_prune

    m = build_student(32, width=0.25, embedding_dim=16, head=head, name=name)
    assert m.output_shape == (None, 16) and m.layers[-1].name == "embedding"
    assert sum(layer.name.endswith("_pw") for layer in m.layers) == (9 if name == "ds_cnn_deep" else 6)
    assert ("gdc_dw" in [layer.name for layer in m.layers]) == (head == "gdc")
    pruned, summary = channel_prune(m, 0.5)
    assert pruned.output_shape == (None, 16) and summary["params_after"] < summary["params_before"]
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    assert np.isfinite(np.asarray(pruned(x))).all()
    with pytest.raises(RecipeError, match="head"):
        build_student(32, head="flatten")
    with pytest.raises(RecipeError, match="student.name 'code2'"):
        build_student(32, name="code2")


@pytest.mark.slow
@pytest.mark.parametrize("margin,proj", [("cosface", True), ("arcface", False)])
def test_training_step_reduces_loss_and_returns_named_losses(chips, margin, proj):
    m = build_student(32, width=0.25, embedding_dim=128 if not proj else 16)
    spec = TrainSpec(epochs=4, batch_size=8, learning_rate=5e-3, margin=margin, margin_s=8.0, margin_m=0.2,
                     kd_weight=5.0, rkd_weight=1.0, kd_projection=proj, warmup_epochs=0.0, seed=1)
    log = train_embedding(m, chips.images, chips.labels, chips.teacher, chips.num_classes, spec)
    first, last = log.epochs[0], log.epochs[-1]
    assert {"ce", "kd", "rkd", "loss"} <= set(first)
    assert last["loss"] < first["loss"]
    assert log.head.shape == (m.output_shape[-1], chips.num_classes)
    e = embed(m, chips.images)
    assert e.shape == (len(chips), m.output_shape[-1]) and np.isfinite(e).all()


@pytest.mark.slow
def test_chips_without_teacher_and_bad_margin(chips):
    m = build_student(32, width=0.25, embedding_dim=16)
    teacher = chips.teacher.copy()
    teacher[::2] = np.nan  # KD masked on those chips, no NaN leaks into the loss
    log = train_embedding(m, chips.images, chips.labels, teacher, chips.num_classes,
                          TrainSpec(epochs=1, batch_size=8, warmup_epochs=0.0))
    assert all(np.isfinite(v) for v in log.epochs[0].values())
    with pytest.raises(RecipeError, match="margin"):
        train_embedding(m, chips.images, chips.labels, teacher, chips.num_classes, TrainSpec(margin="sphere"))
