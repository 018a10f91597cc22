"""The "Rafael" students of the thesis' Table 1: a best-effort reconstruction, not a copy.

Source: the thesis uses the family of Silva (2022): *Rafael-base* is Silva's traffic-sign CNN (59 KB int8,
85.91% accuracy, 80 ms on an ESP32) "adapted with some variations"; *Rafael-1* adds one 9x9 convolution,
*Rafael-2* two 3x3 convolutions, *Rafael-3* three 3x3 convolutions; the figure (only its text survives) lists a
stack of six convolutions with three max-pools ending in a flatten of 800 features, with feature maps of 64 and
32 channels. Nothing else is given, so:

What is taken from the thesis
  * three conv stages each closed by a 2x2 max-pool, a flatten, a small dense head (VGG-style, no global pooling);
  * channel counts from {32, 64}; the last stage has 32 channels;
  * Rafael-1 = base + one 9x9 conv, Rafael-2 = base + two 3x3 convs, Rafael-3 = base + three 3x3 convs
    (so Rafael-3 has the figure's six convolutions);
  * flatten = 800 features = 5 x 5 x 32, which these models give for a **40x40** input (40 -> 20 -> 10 -> 5 with
    'same' padding); at other sizes the flatten scales with the input (32x32 -> 512).

What is assumed (ours, not the thesis')
  * 'same' padding everywhere (so added convolutions never change the flatten size);
  * stage widths 32 / 64 / 32 and where the extra convolutions go: Rafael-1's 9x9 conv (32 channels) is the
    first layer, at full resolution (a large receptive field on the raw pixels, cheap with 1 input channel);
    Rafael-2 doubles the conv of stages 2 and 3; Rafael-3 doubles all three stages;
  * BatchNorm after every conv (folded into the conv by the TFLite converter: no flash or MAC cost) and ReLU;
  * head: Dropout(0.2) -> Dense(32, ReLU) -> Dense(n). The 32-unit hidden layer keeps Rafael-base near the
    quoted 59 KB int8 (about 66 K parameters for 43 classes at 40x40; ~69 K for 100 classes).

All four are plain chains (structured channel pruning can rebuild them) and run in TFLM with int8 builtins only
(CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED).
"""

from __future__ import annotations

import keras
from keras import layers

BN_MOMENTUM = 0.9  # same reason as in `students`: few steps per run on small face sets

#: per variant: list of stages; each stage is a list of (kernel, channels) convs followed by a 2x2 max-pool
RAFAEL_STAGES: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = {
    "rafael_base": (((3, 32),), ((3, 64),), ((3, 32),)),
    "rafael_1": (((9, 32), (3, 32)), ((3, 64),), ((3, 32),)),
    "rafael_2": (((3, 32),), ((3, 64), (3, 64)), ((3, 32), (3, 32))),
    "rafael_3": (((3, 32), (3, 32)), ((3, 64), (3, 64)), ((3, 32), (3, 32))),
}
HIDDEN_UNITS = 32


def _scale(c: int, width: float) -> int:
    return max(4, int(round(c * width / 4.0)) * 4)


def rafael(variant: str, *, num_classes: int, input_shape, width: float = 1.0,
           embedding_dim: int | None = None) -> keras.Model:
    """Build one Rafael variant (see the module docstring for what is reconstructed and what is assumed)."""
    if variant not in RAFAEL_STAGES:
        raise ValueError(f"unknown Rafael variant {variant!r}; one of {sorted(RAFAEL_STAGES)}")
    inp = keras.Input(shape=input_shape, name="image")
    x = inp
    for s, stage in enumerate(RAFAEL_STAGES[variant]):
        for k, (kernel, ch) in enumerate(stage):
            x = layers.Conv2D(_scale(ch, width), kernel, padding="same", use_bias=False, name=f"s{s}_conv{k}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"s{s}_bn{k}")(x)
            x = layers.ReLU(name=f"s{s}_relu{k}")(x)
        x = layers.MaxPooling2D(2, name=f"s{s}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    x = layers.Dense(_scale(HIDDEN_UNITS, width), activation="relu", name="fc")(x)
    if embedding_dim:
        x = layers.Dense(embedding_dim, name="embedding")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=variant)


def rafael_base(**kw) -> keras.Model:
    """Rafael-base: three conv3x3 stages (32/64/32) + max-pools, flatten (800 at 40x40), dense 32, dense n."""
    return rafael("rafael_base", **kw)


def rafael_1(**kw) -> keras.Model:
    """Rafael-base + one 9x9 conv (32 ch) as the first layer (placement assumed)."""
    return rafael("rafael_1", **kw)


def rafael_2(**kw) -> keras.Model:
    """Rafael-base + two 3x3 convs, one in stage 2 (64 ch) and one in stage 3 (32 ch) (placement assumed)."""
    return rafael("rafael_2", **kw)


def rafael_3(**kw) -> keras.Model:
    """Rafael-base + three 3x3 convs, one per stage: the figure's six convolutions and three max-pools."""
    return rafael("rafael_3", **kw)


__all__ = ["RAFAEL_STAGES", "rafael", "rafael_base", "rafael_1", "rafael_2", "rafael_3"]
