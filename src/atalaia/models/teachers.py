"""Teacher networks: wider residual CNNs trained by the pipeline. Accuracy matters here, not size."""

from __future__ import annotations

import keras
from keras import layers

# Small face datasets give few steps per run: Keras' default 0.99 leaves the moving statistics far from
# the batch statistics after a short fine-tune, and inference accuracy collapses. 0.9 converges in ~50 steps.
BN_MOMENTUM = 0.9


def _res_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv0")(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn0")(y)
    y = layers.ReLU(name=f"{name}_relu0")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def teacher_resnet(*, num_classes: int, input_shape, width: float = 1.0) -> keras.Model:
    """ResNet-style teacher: stem conv, three stages of two residual blocks at 32/64/128 x width, GAP, dense."""
    inp = keras.Input(shape=input_shape, name="image")
    stem = int(32 * width)
    stride = 2 if min(input_shape[:2]) >= 64 else 1
    x = layers.Conv2D(stem, 3, strides=stride, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for s, f in enumerate((32, 64, 128)):
        filters = int(f * width)
        for b in range(2):
            x = _res_block(x, filters, 2 if (b == 0 and s > 0) else 1, f"s{s}b{b}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="teacher_resnet")
