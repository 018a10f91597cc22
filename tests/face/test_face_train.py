from __future__ import annotations

import numpy as np
import pytest

from atalaia.errors import RecipeError
from atalaia.face.data import load_chip_sets
from atalaia.face.train import build_student, embed, kd_targets, train_embedding


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


def test_residual_student_adds_shortcuts_and_is_refused_by_channel_pruning():
    from atalaia.compress.prune import channel_prune

    m = build_student(32, width=0.25, embedding_dim=16, name="ds_res")
    adds = [layer.name for layer in m.layers if layer.name.endswith("_add")]
    # DS_CNN_DEEP_BLOCKS: (64,1) after (64,2), (64,1) again, three (128,1) after (128,2) keep their shape
    assert adds == ["ds2_add", "ds3_add", "ds5_add", "ds6_add", "ds7_add"]
    assert m.output_shape == (None, 16)
    with pytest.raises(RecipeError, match="chain"):
        channel_prune(m, 0.5)


def test_kd_targets_remove_the_shared_teacher_direction():
    rng = np.random.default_rng(0)
    common = 3.0 * rng.standard_normal(128)
    ids = rng.standard_normal((4, 128))
    emb = (common + ids[np.repeat(np.arange(4), 5)] + 0.1 * rng.standard_normal((20, 128))).astype(np.float32)
    emb[7] = np.nan
    raw, ok = kd_targets(emb, center=False)
    cen, ok2 = kd_targets(emb, center=True)
    assert ok.tolist() == ok2.tolist() and not ok[7] and ok.sum() == 19
    assert np.allclose(np.linalg.norm(cen[ok], axis=1), 1.0, atol=1e-5) and not cen[7].any()
    diff = np.repeat(np.arange(4), 5)[:, None] != np.repeat(np.arange(4), 5)[None, :]
    pair = diff & ok[:, None] & ok[None, :]
    assert (raw @ raw.T)[pair].mean() > 0.8  # raw: everyone looks alike
    assert abs((cen @ cen.T)[pair].mean()) < 0.4  # centred: different people are far apart
    same = ~diff & ok[:, None] & ok[None, :] & ~np.eye(20, dtype=bool)
    assert (cen @ cen.T)[same].mean() > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("margin,proj", [("cosface", True), ("arcface", False)])
def test_training_step_reduces_loss_and_returns_named_losses(chips, margin, proj, fit_args):
    m = build_student(32, width=0.25, embedding_dim=128 if not proj else 16)
    spec = fit_args(epochs=4, batch_size=8, learning_rate=5e-3, margin=margin, margin_s=8.0, margin_m=0.2,
                     kd_weight=5.0, rkd_weight=1.0, kd_projection=proj, warmup_epochs=0.0, seed=1)
    log = train_embedding(m, chips.images, chips.labels, chips.teacher, chips.num_classes, **spec)
    first, last = log.epochs[0], log.epochs[-1]
    assert {"ce", "kd", "rkd", "loss"} <= set(first)
    assert last["loss"] < first["loss"]
    assert log.head.shape == (m.output_shape[-1], chips.num_classes)
    e = embed(m, chips.images)
    assert e.shape == (len(chips), m.output_shape[-1]) and np.isfinite(e).all()


@pytest.mark.slow
def test_chips_without_teacher_and_bad_margin(chips, fit_args):
    m = build_student(32, width=0.25, embedding_dim=16)
    teacher = chips.teacher.copy()
    teacher[::2] = np.nan  # KD masked on those chips, no NaN leaks into the loss
    log = train_embedding(m, chips.images, chips.labels, teacher, chips.num_classes,
                          **fit_args(epochs=1, batch_size=8, warmup_epochs=0.0))
    assert all(np.isfinite(v) for v in log.epochs[0].values())
    with pytest.raises(RecipeError, match="margin"):
        train_embedding(m, chips.images, chips.labels, teacher, chips.num_classes, **fit_args(margin="sphere"))


def test_identity_batches_group_k_chips_of_one_person_and_cover_every_chip_once():
    from atalaia.face.train import identity_batches

    labels = np.array([0] * 9 + [1] * 4 + [2] * 2 + [-1] * 3)
    order = identity_batches(labels, 4, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(len(labels)))
    # 6 groups (label 0: 4+4+1, label 1: 4, label 2: 2, unlabelled: 3), each contiguous: at most 5 label
    # changes along the order (a random order of these 18 chips has ~12)
    assert int((np.diff(labels[order]) != 0).sum()) <= 5


@pytest.mark.slow
def test_anchor_kd_and_identity_batches_train(chips, fit_args):
    m = build_student(32, width=0.25, embedding_dim=128)
    spec = fit_args(epochs=2, batch_size=8, learning_rate=5e-3, anchor_kd_weight=2.0, images_per_identity=4,
                     warmup_epochs=0.0, seed=1)
    log = train_embedding(m, chips.images, chips.labels, chips.teacher, chips.num_classes, **spec)
    assert "akd" in log.epochs[0] and all(np.isfinite(v) for v in log.epochs[-1].values())
    assert log.epochs[-1]["akd"] < log.epochs[0]["akd"]


def test_ctrl_c_stops_after_the_current_batch(chips, fit_args):
    import signal

    m = build_student(32, width=0.25, embedding_dim=16)
    epochs_done = []

    def progress(n):
        epochs_done.append(n)
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_embedding(m, chips.images, chips.labels, chips.teacher, chips.num_classes,
                        **fit_args(epochs=5, batch_size=8, warmup_epochs=0.0), progress=progress)
    assert epochs_done == [1]


def test_balanced_sampling_draws_identities_equally_often_uniform_keeps_every_chip_once():
    from atalaia.face.train import epoch_order

    labels = np.array([0] * 60 + [1] * 4 + [2] * 4 + [3] * 4 + [-1] * 28)  # one big identity, 3 small, unlabelled
    uni = epoch_order(labels, sampling="uniform", images_per_identity=0, rng=np.random.default_rng(0))
    assert sorted(uni.tolist()) == list(range(len(labels)))
    counts = np.zeros(4)
    n_unl = 0
    for seed in range(50):
        order = epoch_order(labels, sampling="balanced", images_per_identity=0, rng=np.random.default_rng(seed))
        assert len(order) == len(labels)
        counts += np.bincount(labels[order][labels[order] >= 0], minlength=4)
        n_unl += int((labels[order] < 0).sum())
    share = counts / counts.sum()
    assert np.abs(share - 0.25).max() < 0.05  # uniform sampling would give identity 0 a share of 0.83
    assert abs(n_unl / (50 * len(labels)) - 0.28) < 0.03  # unlabelled chips keep their share of the epoch
    grouped = epoch_order(labels, sampling="balanced", images_per_identity=4, rng=np.random.default_rng(1))
    assert len(grouped) == len(labels) and int((np.diff(labels[grouped]) != 0).sum()) < 40
    with pytest.raises(RecipeError, match="sampling"):
        epoch_order(labels, sampling="weighted", images_per_identity=0, rng=np.random.default_rng(0))
