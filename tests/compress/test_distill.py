import numpy as np
import pytest

from atalaia.compress.distill import accuracy_of, distillation_loss, train_classifier
from atalaia.config import TrainConfig
from atalaia.data.dataset import load_identity_folder, split_dataset, to_float
from atalaia.models import create_model


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_matches_hand_computation():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    t = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, -1.0]], np.float32)
    y = np.array([0, 2])
    alpha, T = 0.25, 4.0
    ce = -np.mean(np.log(_softmax(s)[np.arange(2), y]))
    pt, ps = _softmax(t / T), _softmax(s / T)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1)) * T * T
    total, ce_tf, kd_tf = distillation_loss(y, s, t, alpha, T)
    assert float(ce_tf) == pytest.approx(ce, rel=1e-5)
    assert float(kd_tf) == pytest.approx(kl, rel=1e-5)
    assert float(total) == pytest.approx(alpha * ce + (1 - alpha) * kl, rel=1e-5)


def test_kd_term_is_zero_when_student_equals_teacher():
    z = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    _, _, kd = distillation_loss(np.zeros(4, int), z, z, 0.5, 3.0)
    assert abs(float(kd)) < 1e-6


def test_no_teacher_is_plain_cross_entropy():
    z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    total, ce, kd = distillation_loss(np.array([0, 1, 2]), z, None, 0.3, 2.0)
    assert float(total) == pytest.approx(float(ce)) and float(kd) == 0.0


def test_training_learns_and_kd_runs(tiny_faces):
    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.5, 0.25, 0.25), 0)
    cfg = TrainConfig(epochs=12, batch_size=8, learning_rate=1e-2)
    teacher = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    h = train_classifier(teacher, sp, cfg, seed=0)
    assert len(h.val_accuracy) == 12 and h.loss[-1] < h.loss[0]
    acc = accuracy_of(teacher, to_float(sp.test.images), sp.test.labels)
    assert acc >= 0.5, acc  # chance is 0.25; 4 well-separated synthetic identities (CPU TF is not bit-deterministic)
    student = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    h2 = train_classifier(student, sp, cfg, teacher=teacher, alpha=0.5, temperature=4.0, epochs=3, seed=0)
    assert all(k > 0 for k in h2.kd) and len(h2.kd) == 3


def test_bad_hyper_parameters_rejected(tiny_faces):
    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.5, 0.25, 0.25), 0)
    m = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    with pytest.raises(ValueError, match="alpha"):
        train_classifier(m, sp, TrainConfig(epochs=1), alpha=2.0)
    with pytest.raises(ValueError, match="temperature"):
        train_classifier(m, sp, TrainConfig(epochs=1), temperature=0.0)


def test_teacher_logit_table_is_what_the_student_learns(tiny_faces):
    """A table that names a *different* class per image (a derangement of the labels) must win over the labels
    when alpha = 0: the student then follows the table, which proves each image gets its own row."""
    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.5, 0.25, 0.25), 0)
    perm = np.array([1, 2, 3, 0])
    table = 8.0 * np.eye(4, dtype=np.float32)[perm[sp.train.labels]]
    student = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    cfg = TrainConfig(epochs=15, batch_size=8, learning_rate=1e-2)
    h = train_classifier(student, sp, cfg, teacher_logits=table, alpha=0.0, temperature=2.0, seed=0,
                         restore_best=False)
    assert all(k > 0 for k in h.kd)
    x = to_float(sp.train.images)
    follows_table = accuracy_of(student, x, perm[sp.train.labels])
    follows_labels = accuracy_of(student, x, sp.train.labels)
    assert follows_table >= 0.75 and follows_labels <= 0.25, (follows_table, follows_labels)


def test_teacher_logit_table_checked(tiny_faces):
    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.5, 0.25, 0.25), 0)
    m = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    with pytest.raises(ValueError, match="teacher_logits must be"):
        train_classifier(m, sp, TrainConfig(epochs=1), teacher_logits=np.zeros((3, 4)), alpha=0.5)
    with pytest.raises(ValueError, match="not both"):
        train_classifier(m, sp, TrainConfig(epochs=1), teacher=m, teacher_logits=np.zeros((16, 4)), alpha=0.5)


def test_ctrl_c_stops_after_the_current_batch(tiny_faces):
    """A real SIGINT during epoch 1 (raised from the progress hook) stops training at the next batch end."""
    import signal

    ds = load_identity_folder(tiny_faces, image_size=(16, 16), channels=1)
    sp = split_dataset(ds, (0.5, 0.25, 0.25), 0)
    m = create_model("ds_cnn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    epochs_done = []

    def progress(n):
        epochs_done.append(n)
        signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(m, sp, TrainConfig(epochs=6, batch_size=4), progress=progress, seed=0)
    assert epochs_done == [1]
    assert signal.getsignal(signal.SIGINT) is before
