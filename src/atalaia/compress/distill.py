"""Training with optional Hinton knowledge distillation.

Convention (written in every report):

    loss = alpha * CE(y, softmax(z_s)) + (1 - alpha) * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )

alpha weighs the ground-truth labels, (1 - alpha) the teacher; the T^2 factor keeps the soft-target gradients
on the same scale as the hard ones when T changes (Hinton et al. 2015). alpha = 1 is plain training, which
is how the baseline student is trained, with the same seed and epochs, so "KD gain" compares like with like.
A Keras teacher sees exactly the augmented batch the student sees. A teacher that is not a Keras model on the
student's input (e.g. `models.dlib_head`, a frozen dlib embedder on the original image) is given as a table
`teacher_logits` (one row per training image): the KD target of an augmented view is its source image's row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from atalaia.config import AugmentConfig, TrainConfig
from atalaia.data.dataset import Split, make_augment, to_float
from atalaia.interrupt import defer_sigint, keras_callback


@dataclass
class TrainHistory:
    """Per-epoch named losses and validation accuracy; `best_epoch` is the one whose weights were kept."""

    loss: list[float] = field(default_factory=list)
    ce: list[float] = field(default_factory=list)
    kd: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1

    def to_dict(self) -> dict:
        return {"loss": self.loss, "ce": self.ce, "kd": self.kd, "val_accuracy": self.val_accuracy,
                "best_epoch": self.best_epoch}


def distillation_loss(labels, student_logits, teacher_logits, alpha: float, temperature: float):
    """Return (total, ce, kd) for one batch; `teacher_logits=None` gives plain cross-entropy (kd = 0).

    total = alpha * CE + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch means.
    """
    import tensorflow as tf

    ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True))
    if teacher_logits is None:
        return ce, ce, tf.constant(0.0)
    t = float(temperature)
    p_t = tf.nn.softmax(teacher_logits / t)
    kl = tf.reduce_sum(p_t * (tf.nn.log_softmax(teacher_logits / t) - tf.nn.log_softmax(student_logits / t)), -1)
    kd = tf.reduce_mean(kl) * (t * t)
    return alpha * ce + (1.0 - alpha) * kd, ce, kd


class _KDTrainer(keras.Model):
    """Wraps a student (and an optional frozen teacher) with a train step returning named losses."""

    def __init__(self, student: keras.Model, teacher: keras.Model | None, alpha: float, temperature: float,
                 augment: Callable | None):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.augment = augment
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.kd_tracker = keras.metrics.Mean(name="kd")

    @property
    def metrics(self):
        return [self.loss_tracker, self.ce_tracker, self.kd_tracker]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        import tensorflow as tf

        if len(data) == 3:  # (x, y, row of the teacher-logit table)
            x, y, table_logits = data
        else:
            (x, y), table_logits = data, None
        if self.augment is not None:
            x = self.augment(x)
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            teacher_logits = None
            if table_logits is not None and self.alpha < 1.0:
                teacher_logits = tf.stop_gradient(table_logits)
            elif self.teacher is not None and self.alpha < 1.0:
                teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
            loss, ce, kd = distillation_loss(y, logits, teacher_logits, self.alpha, self.temperature)
            if self.student.losses:
                loss = loss + tf.add_n(self.student.losses)
        variables = self.student.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)
        self.loss_tracker.update_state(loss)
        self.ce_tracker.update_state(ce)
        self.kd_tracker.update_state(kd)
        return {m.name: m.result() for m in self.metrics}


class _EpochEnd(keras.callbacks.Callback):
    """Evaluates on validation each epoch, keeps the best weights, reports to an optional hook."""

    def __init__(self, student: keras.Model, x_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 history: TrainHistory, on_epoch: Callable[[int, float], None] | None,
                 progress: Callable[[int], None] | None):
        super().__init__()
        self.x_train = x_train
        self.student, self.x_val, self.y_val = student, x_val, y_val
        self.history, self.on_epoch, self.progress = history, on_epoch, progress
        self.best = -1.0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        recalibrate_batchnorm(self.student, self.x_train, seed=epoch)
        acc = accuracy_of(self.student, self.x_val, self.y_val)
        self.history.loss.append(float(logs.get("loss", np.nan)))
        self.history.ce.append(float(logs.get("ce", np.nan)))
        self.history.kd.append(float(logs.get("kd", np.nan)))
        self.history.val_accuracy.append(acc)
        if acc >= self.best:  # ties go to the later epoch: more training at equal validation accuracy
            self.best = acc
            self.best_weights = [v.numpy().copy() for v in self.student.weights]
            self.history.best_epoch = epoch
        if self.progress:
            self.progress(epoch + 1)
        if self.on_epoch:
            self.on_epoch(epoch, acc)


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray, max_samples: int = 1024, seed: int = 0) -> None:
    """Set every BatchNormalization's moving statistics to the exact batch statistics of `x` (un-augmented).

    Small face datasets give few optimizer steps, and exponential moving averages started at (0, 1) are then
    far from the real statistics: inference accuracy collapses while training accuracy is fine. One forward
    pass in training mode with momentum 0 fixes that; it does not touch trainable weights.
    """
    bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    saved = [bn.momentum for bn in bns]
    try:
        for bn in bns:
            bn.momentum = 0.0
        model(x, training=True)
    finally:
        for bn, m in zip(bns, saved, strict=True):
            bn.momentum = m


def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def accuracy_of(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict_logits(model, x), axis=1) == y))


def train_classifier(
    student: keras.Model,
    split: Split,
    cfg: TrainConfig,
    *,
    augment: AugmentConfig | None = None,
    teacher: keras.Model | None = None,
    teacher_logits: np.ndarray | None = None,
    alpha: float = 1.0,
    temperature: float = 1.0,
    epochs: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: Callable[[int], None] | None = None,
    restore_best: bool = True,
) -> TrainHistory:
    """Train `student` in place on `split.train` (labels, optionally + KD from `teacher`).

    Keeps the weights of the epoch with the best validation accuracy (`restore_best`); the test split is
    never looked at here. `on_epoch(epoch, val_accuracy)` lets a tuner prune hopeless trials (it may raise).
    `teacher_logits` (N_train, num_classes), aligned with `split.train`, replaces `teacher` by a fixed table.
    """
    import tensorflow as tf

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    keras.utils.set_random_seed(seed)
    epochs = cfg.epochs if epochs is None else epochs
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    x_train, y_train = to_float(split.train.images), split.train.labels
    x_val, y_val = to_float(split.val.images), split.val.labels
    bs = min(cfg.batch_size, len(x_train))
    steps = int(np.ceil(len(x_train) / bs))
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps), alpha=0.01)
    trainer = _KDTrainer(student, teacher, alpha, temperature, make_augment(augment) if augment else None)
    trainer.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay))
    if teacher is not None and teacher_logits is not None:
        raise ValueError("give either a teacher model or a teacher_logits table, not both")
    tensors: tuple = (x_train, y_train)
    if teacher_logits is not None:
        table = np.asarray(teacher_logits, np.float32)
        if table.ndim != 2 or len(table) != len(x_train) or table.shape[1] != student.output_shape[-1]:
            raise ValueError(f"teacher_logits must be (n_train={len(x_train)}, {student.output_shape[-1]}), "
                             f"got {table.shape}")
        tensors = (x_train, y_train, table)
    ds = (tf.data.Dataset.from_tensor_slices(tensors)
          .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
          .batch(bs).prefetch(2))
    history = TrainHistory()
    end = _EpochEnd(student, x_train, x_val, y_val, history, on_epoch, progress)
    with defer_sigint():  # Ctrl-C stops after the current batch (keras_callback), not inside TensorFlow
        trainer.fit(ds, epochs=epochs, verbose=0, shuffle=False,
                    callbacks=[keras_callback(), *(callbacks or []), end])
    if restore_best and end.best_weights is not None:
        for v, w in zip(student.weights, end.best_weights, strict=True):
            v.assign(w)
    return history
