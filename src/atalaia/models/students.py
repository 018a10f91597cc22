"""Student networks.

- `code2` / `code3`: the thesis' students: three blocks of conv3x3-BN-conv3x3-BN-maxpool at 32/64/128 filters,
  flatten, dropout 0.2, dense 1024 relu, dropout 0.2, dense n. The seed describes both with the same block
  structure; here `code3` differs only by a 0.1 spatial dropout after each block (our reading, not the thesis').
  The 1024-unit dense on a flattened map makes them large: they show why MCU students need global pooling.
- `ds_cnn`: our MCU student: depthwise-separable blocks, global average pooling, no big dense layer,
  channels scaled by a width multiplier. Cost grows ~linearly in width for the pointwise convs.

All students are chains without residual adds, so `atalaia.compress.prune` can remove channels and rebuild.
"""

from __future__ import annotations

import keras
from keras import layers

# Small face datasets give few steps per run: Keras' default 0.99 leaves the moving statistics far from
# the batch statistics after a short fine-tune, and inference accuracy collapses. 0.9 converges in ~50 steps.
BN_MOMENTUM = 0.9


def _ch(c: float, width: float, minimum: int = 4) -> int:
    """Scale a channel count by `width`, rounded to a multiple of 4 (friendlier to SIMD kernels)."""
    return max(minimum, int(round(c * width / 4.0)) * 4)


def _thesis_cnn(name: str, num_classes: int, input_shape, width: float, spatial_dropout: float,
                embedding_dim: int | None = None) -> keras.Model:
    inp = keras.Input(shape=input_shape, name="image")
    x = inp
    for b, f in enumerate((32, 64, 128)):
        for k in range(2):
            x = layers.Conv2D(_ch(f, width), 3, padding="same", use_bias=False, name=f"b{b}_conv{k}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{b}_bn{k}")(x)
            x = layers.ReLU(name=f"b{b}_relu{k}")(x)
        x = layers.MaxPooling2D(2, name=f"b{b}_pool")(x)
        if spatial_dropout:
            x = layers.SpatialDropout2D(spatial_dropout, name=f"b{b}_sdrop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.2, name="drop0")(x)
    x = layers.Dense(_ch(1024, width), activation="relu", name="fc")(x)
    x = layers.Dropout(0.2, name="drop1")(x)
    if embedding_dim:
        x = layers.Dense(embedding_dim, name="embedding")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


def code2(*, num_classes: int, input_shape, width: float = 1.0, embedding_dim: int | None = None) -> keras.Model:
    return _thesis_cnn("code2", num_classes, input_shape, width, 0.0, embedding_dim)


def code3(*, num_classes: int, input_shape, width: float = 1.0, embedding_dim: int | None = None) -> keras.Model:
    return _thesis_cnn("code3", num_classes, input_shape, width, 0.1, embedding_dim)


# (pointwise channels, stride) per depthwise-separable block; the stem conv has stride 2 when input >= 64.
DS_CNN_BLOCKS: tuple[tuple[int, int], ...] = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2))
# `ds_cnn_deep`: three more blocks at the 16x16 and 8x8 stages (for a 64x64 input). Depth at low resolution is
# cheap: each extra 128-channel block at 8x8 costs ~1.1 M MACs and 17 k weights. Measured on LFW face
# embeddings at 6 epochs it trained worse than a wider `ds_cnn` (a plain chain this deep converges slower).
DS_CNN_DEEP_BLOCKS: tuple[tuple[int, int], ...] = (
    (32, 1), (64, 2), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (256, 2))


def ds_cnn(*, num_classes: int, input_shape, width: float = 1.0, embedding_dim: int | None = None,
           dropout: float = 0.2, blocks: tuple[tuple[int, int], ...] = DS_CNN_BLOCKS,
           residual: bool = False, name: str = "ds_cnn") -> keras.Model:
    """Depthwise-separable CNN: conv3x3 stem, DS blocks (dw3x3-BN-ReLU-pw1x1-BN-ReLU), GAP, dense.

    `blocks` lists (pointwise channels, stride) per block (before the width multiplier). `residual` adds an
    identity shortcut around every block that keeps its shape (stride 1, same channels): deep plain chains
    train slowly, shortcuts cost no weights and one int8 ADD each. The model is then no longer a chain, so
    structured channel pruning refuses it."""
    inp = keras.Input(shape=input_shape, name="image")
    stem_stride = 2 if min(input_shape[:2]) >= 64 else 1
    x = layers.Conv2D(_ch(16, width), 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, (c, s) in enumerate(blocks):
        shortcut = x
        x = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=f"ds{i}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"ds{i}_dw_bn")(x)
        x = layers.ReLU(name=f"ds{i}_dw_relu")(x)
        x = layers.Conv2D(_ch(c, width), 1, use_bias=False, name=f"ds{i}_pw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"ds{i}_pw_bn")(x)
        if residual and s == 1 and shortcut.shape[-1] == x.shape[-1]:
            x = layers.Add(name=f"ds{i}_add")([shortcut, x])
        x = layers.ReLU(name=f"ds{i}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="drop")(x)
    if embedding_dim:
        x = layers.Dense(embedding_dim, name="embedding")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


def ds_cnn_deep(*, num_classes: int, input_shape, width: float = 1.0, embedding_dim: int | None = None,
                dropout: float = 0.2) -> keras.Model:
    """`ds_cnn` with the 9 blocks of `DS_CNN_DEEP_BLOCKS` (for experiments; see the note above)."""
    return ds_cnn(num_classes=num_classes, input_shape=input_shape, width=width, embedding_dim=embedding_dim,
                  dropout=dropout, blocks=DS_CNN_DEEP_BLOCKS, name="ds_cnn_deep")


def ds_res(*, num_classes: int, input_shape, width: float = 1.0, embedding_dim: int | None = None,
           dropout: float = 0.2) -> keras.Model:
    """`ds_cnn_deep` with identity shortcuts around its shape-keeping blocks (`ds_cnn(residual=True)`)."""
    return ds_cnn(num_classes=num_classes, input_shape=input_shape, width=width, embedding_dim=embedding_dim,
                  dropout=dropout, blocks=DS_CNN_DEEP_BLOCKS, residual=True, name="ds_res")

