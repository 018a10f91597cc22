"""`face_det`: a tiny single-stage, anchor-free face detector with 5 landmarks (CenterNet / YuNet style).

One plain chain of depthwise-separable blocks down to stride 8, then a 1x1 head with 15 channels per cell:

    0      heat-map logit (a face centre falls in this cell)
    1, 2   centre offset inside the cell, x and y, in cells      (x OFFSET_GAIN)
    3, 4   log(box side / (4 * stride)), width and height         (x SIZE_GAIN)
    5..14  the 5 landmarks, (point - box centre) / box width      (x LANDMARK_GAIN)

Why one output tensor with gains: the int8 model has one output quantization; the gains spread the regression
targets over the same range as the heat-map logits (about -8..4), so one int8 step is ~0.5 px on a 40 px face's
landmarks instead of several pixels. Why a plain chain of builtin ops (CONV_2D, DEPTHWISE_CONV_2D, no resize,
no concat): TFLM runs it with its int8 reference/esp-nn kernels and channel pruning can rebuild it.
Depthwise kernels are 5x5 at stride 8, so three blocks see ~100 px: the largest faces in a 128 px input.
"""

from __future__ import annotations

import numpy as np

STRIDE = 8
HEAD_CHANNELS = 15
OFFSET_GAIN, SIZE_GAIN, LANDMARK_GAIN = 4.0, 2.0, 6.0
SIZE_UNIT = 4.0 * STRIDE  # box side = SIZE_UNIT * exp(size)
BN_MOMENTUM = 0.9
#: (pointwise channels, stride, depthwise kernel) after the stem (3x3 conv, stride 2, 8 channels).
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (16, 1, 3), (24, 2, 3), (32, 1, 3), (48, 2, 3), (64, 1, 5), (64, 1, 5), (64, 1, 5))


def _ch(c: float, width: float) -> int:
    return max(4, int(round(c * width / 4.0)) * 4)


def build_detector(input_shape: tuple[int, int, int] = (96, 128, 1), width: float = 1.0,
                   name: str = "face_det"):
    """The detector for a (H, W, 1) input in [0, 1]; H and W multiples of 8. Output (H/8, W/8, 15)."""
    import keras
    from keras import layers

    h, w = input_shape[:2]
    if h % STRIDE or w % STRIDE:
        raise ValueError(f"detector input sides must be multiples of {STRIDE}, got {h}x{w}")
    inp = keras.Input(shape=input_shape, name="frame")
    x = layers.Conv2D(_ch(8, width), 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (c, s, k) in enumerate(BLOCKS):
        x = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"b{i}_dw_relu")(x)
        x = layers.Conv2D(_ch(c, width), 1, use_bias=False, name=f"b{i}_pw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_pw_bn")(x)
        x = layers.ReLU(6.0, name=f"b{i}_pw_relu")(x)
    x = layers.Conv2D(_ch(64, width), 1, use_bias=False, name="head_pw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    prior = float(-np.log((1 - 0.01) / 0.01))  # heat-map starts at p = 0.01 (focal-loss init)
    bias = np.zeros(HEAD_CHANNELS, np.float32)
    bias[0] = prior
    out = layers.Conv2D(HEAD_CHANNELS, 1, name="head_out",
                        bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inp, out, name=name)


def encode_targets(boxes: list[np.ndarray], lms: list[np.ndarray], input_hw: tuple[int, int]) -> np.ndarray:
    """Training targets (N, H/8, W/8, 16): channel 0 Gaussian heat map, 1 centre mask, 2..15 the 14 scaled
    regression targets of the output channels 1..14 (valid where the mask is 1)."""
    gh, gw = input_hw[0] // STRIDE, input_hw[1] // STRIDE
    y = np.zeros((len(boxes), gh, gw, 16), np.float32)
    ii, jj = np.mgrid[0:gh, 0:gw]
    for n, (bs, ps) in enumerate(zip(boxes, lms, strict=True)):
        order = np.argsort(-(bs[:, 2] - bs[:, 0])) if len(bs) else []
        for k in order:  # large first: a small face in the same cell overwrites (it needs the cell more)
            x1, y1, x2, y2 = (float(v) for v in bs[k])
            bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            j, i = min(int(cx), gw - 1), min(int(cy), gh - 1)
            sigma = max(0.5, bw / STRIDE / 6.0)
            g = np.exp(-((jj + 0.5 - cx) ** 2 + (ii + 0.5 - cy) ** 2) / (2 * sigma**2))
            y[n, :, :, 0] = np.maximum(y[n, :, :, 0], g)
            y[n, i, j, 0] = 1.0
            y[n, i, j, 1] = 1.0
            y[n, i, j, 2:4] = OFFSET_GAIN * np.array([cx - j - 0.5, cy - i - 0.5])
            y[n, i, j, 4:6] = SIZE_GAIN * np.log(np.array([bw, bh]) / SIZE_UNIT)
            rel = (ps[k] - np.array([(x1 + x2) / 2, (y1 + y2) / 2])) / bw
            y[n, i, j, 6:16] = LANDMARK_GAIN * rel.reshape(-1)
    return y


def detection_loss(y_true, y_pred):
    """CenterNet's penalty-reduced focal loss on the heat map + L1 on the regressions at face centres, each
    normalised by the number of faces in the batch (empty frames contribute only to the heat-map term)."""
    from keras import ops

    heat, mask = y_true[..., 0], y_true[..., 1]
    p = ops.clip(ops.sigmoid(y_pred[..., 0]), 1e-4, 1 - 1e-4)
    pos = ops.cast(ops.equal(heat, 1.0), "float32")
    focal = -(pos * (1 - p) ** 2 * ops.log(p) + (1 - pos) * (1 - heat) ** 4 * p**2 * ops.log(1 - p))
    n = ops.maximum(ops.sum(mask), 1.0)
    reg_w = ops.concatenate([ops.ones_like(y_pred[..., 1:5]), 2.0 * ops.ones_like(y_pred[..., 5:])], -1)
    reg = ops.sum(ops.abs(y_pred[..., 1:] - y_true[..., 2:]) * reg_w, axis=-1) / 14.0
    return (ops.sum(focal) + 4.0 * ops.sum(reg * mask)) / n


__all__ = ["BLOCKS", "HEAD_CHANNELS", "LANDMARK_GAIN", "OFFSET_GAIN", "SIZE_GAIN", "SIZE_UNIT", "STRIDE",
           "build_detector", "detection_loss", "encode_targets"]
