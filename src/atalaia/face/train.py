"""Train a face-embedding student: margin-softmax over training identities + embedding distillation.

Loss per batch (every term is returned by name, so it can be logged):

    ce   = CosFace (s * (cos - m) on the true class) or ArcFace (s * cos(theta + m)) cross-entropy,
           on labelled chips only (unlabelled chips have label -1 and are masked out);
    kd   = mean(1 - cos(P e, t))      e: student embedding, t: stored dlib embedding, P: learned linear map
                                      (identity when the dims are equal and face.kd_projection is false);
    rkd  = mean((S_s - S_t)^2)        S: in-batch cosine-similarity matrices of student and teacher
                                      (relational KD: exactly the quantity verification thresholds);
    akd  = KL(softmax(a * t C) || softmax(a * e_n C))   C: fixed unit centroids of the training identities in
                                      the (centred) teacher space, a = anchor_kd_scale: the student's similarity
                                      to every known identity should match the teacher's (Hinton KD with the
                                      identities as classes; off unless anchor_kd_weight > 0);
    loss = ce_weight * ce + kd_weight * kd + rkd_weight * rkd + anchor_kd_weight * akd.

`sampling` = balanced draws every identity equally often (see `epoch_order`); uniform (the default) shows
every chip once per epoch. `images_per_identity` = K >= 2 builds batches of batch_size / K identities x K chips, so the rkd matrix holds
same-person pairs (the pairs verification thresholds); random batches of 128 from 1,139 identities hold ~7.

Teacher centring (`center_teacher`, on by default): dlib's embeddings share one large common direction. On the
CelebA chips every L2-normalised embedding has cosine 0.91 +- 0.02 to their mean, and two random people 0.83.
So `kd` against the raw embeddings is 91 % solved by a constant output, and it was: with raw targets the
kd term sat at 0.087 (= 1 - 0.912) from the second epoch to the last. The targets are therefore the teacher
embeddings minus their mean over the training chips, re-normalised (random pairs then have cosine ~0.00), which
leaves only the identity information to distil. The teacher's own verification is unchanged (it is scored on
its raw embeddings); the student simply learns the centred space.

Augmentation (training only, in-graph): horizontal flip, a random crop of 88-100 % of the side shifted by up to
4 % and resized back, brightness/contrast jitter. It is mild on purpose: the teacher embedding was computed on
the un-augmented chip, and a face flipped or shifted by a few pixels keeps the same dlib embedding (~0.05 L2).
`face.loss.consistent_views` = K > 0 removes that mismatch instead: K fixed views per chip made with the same
ranges, each with dlib's own embedding (`atalaia.face.views`), and no in-graph augmentation.

The student is `atalaia.models.students.ds_cnn` (the registry's MCU student, dropout off) cut at its linear
`embedding` layer: a plain chain, so `atalaia.compress.prune.channel_prune` can narrow it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atalaia.config import FaceLossConfig, TrainConfig
from atalaia.data.dataset import to_float
from atalaia.errors import RecipeError
from atalaia.interrupt import check_interrupt, interruptible


@dataclass
class TrainLog:
    """Per-epoch mean of each named loss, plus wall time."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    head: np.ndarray | None = None  # margin-head weights (D, K): pass back as init_head to fine-tune
    proj: np.ndarray | None = None  # KD projection (D, 128)

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "seconds": self.seconds}


# students (functions of `atalaia.models.students`) that build_student can cut into an embedding model
FACE_STUDENTS = ("ds_cnn", "ds_cnn_deep", "ds_res")


def build_student(input_size: int, *, width: float = 1.0, embedding_dim: int = 128, channels: int = 1,
                  name: str = "ds_cnn", head: str = "gdc", blocks: tuple[tuple[int, int], ...] | None = None):
    """Embedding model (input (S, S, C) float [0, 1] -> linear `embedding` (D,)).

    The body is the registry's MCU student `atalaia.models.students.ds_cnn` (dropout off), cut before its
    global average pooling. `head="gap"` keeps that pooling; `head="gdc"` replaces it by a global depthwise
    convolution (one k x k filter per channel over the whole final map, as MobileFaceNet does): faces are
    aligned, so where a feature fires matters, and GAP throws that away. GDC costs k*k*C weights and MACs.
    Both stay plain chains, so `atalaia.compress.prune.channel_prune` can narrow them. `blocks`: ds_cnn's
    (channels, stride) per block, for a width per stage instead of one multiplier (default: the registry's).
    """
    import keras
    from keras import layers

    from atalaia.models import students

    if name not in FACE_STUDENTS:
        raise RecipeError(f"face students: one of {', '.join(FACE_STUDENTS)} (got student.name '{name}')")
    if head not in ("gap", "gdc"):
        raise RecipeError(f"face student head must be 'gap' or 'gdc', got '{head}'")
    if blocks is not None and name != "ds_cnn":
        raise RecipeError(f"per-block channels are a ds_cnn option (got student.name '{name}')")
    extra = {} if blocks is None else {"blocks": tuple(tuple(b) for b in blocks)}
    full = getattr(students, name)(num_classes=2, input_shape=(input_size, input_size, channels), width=width,
                           embedding_dim=embedding_dim, dropout=0.0, **extra)
    if head == "gap":
        x = full.get_layer("embedding").output
    else:
        x = full.get_layer("gap").input
        k = int(x.shape[1])
        x = layers.DepthwiseConv2D(k, padding="valid", use_bias=False, name="gdc_dw")(x)
        x = layers.BatchNormalization(momentum=students.BN_MOMENTUM, name="gdc_bn")(x)
        x = layers.Flatten(name="gdc_flat")(x)
        x = layers.Dense(embedding_dim, name="embedding")(x)
    return keras.Model(full.inputs[0], x, name=f"face_{name}_{head}_{input_size}_w{width:g}_d{embedding_dim}")


def _augment(tf, x, seed_gen):
    """x: (B, S, S, C) float [0, 1] -> augmented batch (same shape)."""
    b = tf.shape(x)[0]
    s = x.shape[1]
    flip = seed_gen.uniform((b, 1, 1, 1)) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    side = seed_gen.uniform((b,), 0.88, 1.0)
    cy = 0.5 + seed_gen.uniform((b,), -0.04, 0.04)
    cx = 0.5 + seed_gen.uniform((b,), -0.04, 0.04)
    boxes = tf.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2], axis=1)
    x = tf.image.crop_and_resize(x, boxes, tf.range(b), (s, s))
    c = seed_gen.uniform((b, 1, 1, 1), 0.75, 1.25)
    br = seed_gen.uniform((b, 1, 1, 1), -0.12, 0.12)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((x - mean) * c + mean + br, 0.0, 1.0)


def kd_targets(teacher_emb: np.ndarray, *, center: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings (N, 128), NaN rows = none -> (unit-norm KD targets, row has a target). With `center`
    the mean of the normalised embeddings is subtracted first (see the module docstring for why)."""
    ok = np.isfinite(teacher_emb).all(axis=1)
    t = np.where(ok[:, None], teacher_emb, 0.0).astype(np.float32)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)
    if center and ok.any():
        t = np.where(ok[:, None], t - t[ok].mean(axis=0), 0.0).astype(np.float32)
        t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)
    return t, ok


def identity_batches(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's chip order made of shuffled groups of up to `k` chips of one identity, so consecutive batch
    slices hold whole groups (every chip once; unlabelled chips, label -1, form groups of their own). The
    trainer slices this order exactly like a random permutation."""
    labels = np.asarray(labels)
    groups: list[np.ndarray] = []
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        groups += [idx[i : i + k] for i in range(0, len(idx), k)]
    return np.concatenate([groups[i] for i in rng.permutation(len(groups))]) if groups else np.zeros(0, np.int64)


def epoch_order(labels: np.ndarray, *, sampling: str, images_per_identity: int,
                rng: np.random.Generator) -> np.ndarray:
    """One epoch's chip indices (len(labels) of them). `uniform`: every chip once. `balanced`: drawn with
    replacement so every labelled identity is drawn equally often (weight 1 / its chip count) while labelled
    and unlabelled chips keep their share of the epoch: with 756 identities of 4-14 chips beside 1,139 of
    ~20, uniform sampling shows the margin head the big identities 2-5x more often. With images_per_identity
    K >= 2 the drawn chips are then grouped K per identity (`identity_batches`)."""
    labels = np.asarray(labels)
    n = len(labels)
    if sampling == "uniform":
        drawn = np.arange(n)
    elif sampling == "balanced":
        lab = labels >= 0
        w = np.ones(n, np.float64)
        if lab.any():
            uniq, inv, cnt = np.unique(labels[lab], return_inverse=True, return_counts=True)
            w[lab] = (lab.sum() / len(uniq)) / cnt[inv.reshape(-1)]
        drawn = rng.choice(n, size=n, replace=True, p=w / w.sum())
    else:
        raise RecipeError(f"face.sampling must be uniform or balanced, got '{sampling}'")
    if images_per_identity >= 2:
        return drawn[identity_batches(labels[drawn], images_per_identity, rng)]
    return drawn[rng.permutation(len(drawn))]


def train_embedding(student, images_uint8: np.ndarray, labels: np.ndarray, teacher_emb: np.ndarray,
                    num_classes: int, *, loss: FaceLossConfig, train: TrainConfig, seed: int,
                    epochs: int | None = None, learning_rate: float | None = None,
                    warmup_epochs: float | None = None,
                    progress: Callable[[int], None] | None = None,
                    log: Callable[[str], None] | None = None,
                    init_head: np.ndarray | None = None, init_proj: np.ndarray | None = None,
                    views: np.ndarray | None = None, view_targets: np.ndarray | None = None) -> TrainLog:
    """Train `student` (an embedding model) in place. images (N, S, S, C) uint8; labels (N,) int (-1 =
    unlabelled); teacher_emb (N, 128) float32, NaN rows = no teacher target (KD masked for that chip).
    Returns the per-epoch loss log. BatchNorm statistics are recalibrated on un-augmented data at the end.

    `loss` is the recipe's `face.loss` and `train` its `train` section, used as they are; `epochs`,
    `learning_rate` and `warmup_epochs` override them for a fine-tune (the channel-pruning stage).

    Consistent teaching (`atalaia.face.views`): `views` (N, K, S, S, C) uint8 and `view_targets` (N, K, 128)
    replace the chip and its teacher embedding: each step shows one random view of each chip against the
    teacher's embedding of that view, with no further augmentation (it would break the match). The KD
    targets, their centring and the anchor centroids then all come from the view embeddings."""
    import keras
    import tensorflow as tf

    from atalaia.compress.distill import recalibrate_batchnorm

    epochs = train.epochs if epochs is None else int(epochs)
    lr = train.learning_rate if learning_rate is None else float(learning_rate)
    warmup = loss.warmup_epochs if warmup_epochs is None else float(warmup_epochs)
    batch_size = train.batch_size
    if loss.margin not in ("cosface", "arcface", "none"):
        raise RecipeError(f"face.margin must be cosface, arcface or none; got '{loss.margin}'")
    n = len(images_uint8)
    if n == 0:
        raise RecipeError("no training chips")
    labels = np.asarray(labels, np.int64)
    teacher, t_ok = kd_targets(teacher_emb, center=loss.center_teacher)
    consistent = views is not None
    if consistent:
        if view_targets is None or len(views) != n or tuple(view_targets.shape[:2]) != tuple(views.shape[:2]):
            raise RecipeError(f"consistent views {None if views is None else views.shape} need targets of the same "
                              f"(N, K) for the {n} chips; got {None if view_targets is None else view_targets.shape}")
        k_views = int(views.shape[1])
        vt, v_ok = kd_targets(np.asarray(view_targets).reshape(n * k_views, -1), center=loss.center_teacher)
        vt, v_ok = vt.reshape(n, k_views, -1), v_ok.reshape(n, k_views)
    use_ce = loss.margin != "none" and loss.ce_weight > 0 and num_classes >= 2
    d = int(student.outputs[0].shape[-1])
    td = teacher.shape[1]
    keras.utils.set_random_seed(seed)
    head = tf.Variable(tf.random.normal((d, max(num_classes, 2)), stddev=0.01, seed=seed), name="margin_head")
    use_proj = loss.kd_projection or d != td
    proj = tf.Variable(tf.random.normal((d, td), stddev=1.0 / math.sqrt(d), seed=seed + 1), name="kd_proj")
    cent = np.zeros((td, max(num_classes, 2)), np.float32)
    c_lab, c_t, c_ok = (np.repeat(labels, k_views), vt.reshape(n * k_views, -1), v_ok.reshape(-1)) if consistent \
        else (labels, teacher, t_ok)
    ok = (c_lab >= 0) & c_ok
    np.add.at(cent.T, c_lab[ok], c_t[ok])
    cent /= np.maximum(np.linalg.norm(cent, axis=0, keepdims=True), 1e-6)
    if use_ce and loss.head_init == "teacher" and not use_proj and d == td:
        head.assign(cent)
    use_akd = loss.anchor_kd_weight > 0 and num_classes >= 2
    anchors = tf.constant(cent)
    if init_head is not None and tuple(init_head.shape) == tuple(head.shape):
        head.assign(init_head)
    if init_proj is not None and tuple(init_proj.shape) == tuple(proj.shape):
        proj.assign(init_proj)
    extra_vars = ([head] if use_ce else []) + ([proj] if use_proj else [])
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, steps_per_epoch * epochs)
    warm = int(warmup * steps_per_epoch)
    sched = keras.optimizers.schedules.CosineDecay(
        0.0 if warm else lr, decay_steps=max(1, total - warm), alpha=0.01,
        warmup_target=lr if warm else None, warmup_steps=warm)
    opt = keras.optimizers.AdamW(learning_rate=sched, weight_decay=train.weight_decay)
    seed_gen = tf.random.Generator.from_seed(seed)
    variables = list(student.trainable_variables) + extra_vars
    cos_m, sin_m = math.cos(loss.margin_m), math.sin(loss.margin_m)

    @tf.function(reduce_retracing=True)
    def step(xb, yb, tb, tmask):
        x = tf.cast(xb, tf.float32) / 255.0
        if loss.augment and not consistent:
            x = _augment(tf, x, seed_gen)
        with tf.GradientTape() as tape:
            e = student(x, training=True)
            en = tf.math.l2_normalize(e, axis=1)
            losses = {}
            total_loss = 0.0
            if use_ce:
                wn = tf.math.l2_normalize(head, axis=0)
                cos = tf.clip_by_value(tf.matmul(en, wn), -1.0 + 1e-6, 1.0 - 1e-6)
                lab = yb >= 0
                yl = tf.where(lab, yb, tf.zeros_like(yb))
                onehot = tf.one_hot(yl, tf.shape(wn)[1])
                if loss.margin == "cosface":
                    target = cos - loss.margin_m
                else:
                    sin = tf.sqrt(1.0 - cos * cos)
                    target = tf.where(cos > -cos_m, cos * cos_m - sin * sin_m, cos - loss.margin_m * sin_m)
                logits = loss.margin_s * tf.where(onehot > 0, target, cos)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yl, logits=logits)
                labf = tf.cast(lab, tf.float32)
                ce = tf.reduce_sum(ce * labf) / tf.maximum(tf.reduce_sum(labf), 1.0)
                losses["ce"] = ce
                total_loss += loss.ce_weight * ce
            if loss.kd_weight > 0 or loss.rkd_weight > 0:
                p = tf.matmul(e, proj) if use_proj else e
                pn = tf.math.l2_normalize(p, axis=1)
                m = tf.cast(tmask, tf.float32)
                kd = tf.reduce_sum((1.0 - tf.reduce_sum(pn * tb, axis=1)) * m) / tf.maximum(tf.reduce_sum(m), 1.0)
                losses["kd"] = kd
                total_loss += loss.kd_weight * kd
                if loss.rkd_weight > 0:
                    ss = tf.matmul(en, en, transpose_b=True)
                    st = tf.matmul(tb, tb, transpose_b=True)
                    mm = m[:, None] * m[None, :]
                    rkd = tf.reduce_sum(tf.square(ss - st) * mm) / tf.maximum(tf.reduce_sum(mm), 1.0)
                    losses["rkd"] = rkd
                    total_loss += loss.rkd_weight * rkd
            if use_akd:
                pa = tf.math.l2_normalize(tf.matmul(e, proj) if use_proj else e, axis=1)
                lt = tf.nn.log_softmax(loss.anchor_kd_scale * tf.matmul(tb, anchors), axis=1)
                ls = tf.nn.log_softmax(loss.anchor_kd_scale * tf.matmul(pa, anchors), axis=1)
                m = tf.cast(tmask, tf.float32)
                akd = tf.reduce_sum(tf.reduce_sum(tf.exp(lt) * (lt - ls), axis=1) * m) / tf.maximum(
                    tf.reduce_sum(m), 1.0)
                losses["akd"] = akd
                total_loss += loss.anchor_kd_weight * akd
            losses["loss"] = total_loss
        grads = tape.gradient(total_loss, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        return losses

    rng = np.random.default_rng(seed)
    tlog = TrainLog()
    t0 = time.perf_counter()
    for ep in interruptible(range(epochs)):  # Ctrl-C: stop after the current batch (check_interrupt)
        order = epoch_order(labels, sampling=loss.sampling, images_per_identity=loss.images_per_identity, rng=rng)
        sums: dict[str, float] = {}
        nb = 0
        for s in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = order[s : s + batch_size]
            if consistent:
                v = rng.integers(k_views, size=len(idx))
                out = step(views[idx, v], labels[idx], vt[idx, v], v_ok[idx, v])
            else:
                out = step(images_uint8[idx], labels[idx], teacher[idx], t_ok[idx])
            check_interrupt()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            nb += 1
        row = {k: v / max(nb, 1) for k, v in sums.items()}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        tlog.epochs.append(row)
        if log:
            log(f"epoch {ep + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in row.items()))
        if progress:
            progress(ep + 1)
    recalibrate_batchnorm(student, to_float(images_uint8[rng.permutation(n)[:1024]]))
    tlog.seconds = time.perf_counter() - t0
    tlog.head, tlog.proj = head.numpy(), proj.numpy()
    return tlog


def embed(model, images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float Keras embedding model on uint8 images (N, S, S, C) -> (N, D) float32."""
    return np.asarray(model.predict(to_float(images_uint8), batch_size=batch_size, verbose=0), np.float32)


__all__ = ["TrainLog", "build_student", "embed", "epoch_order", "identity_batches", "kd_targets", "train_embedding"]
