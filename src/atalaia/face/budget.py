"""Size tiers of the face student and a check of a recipe's student against its tier, without training.

    tier  int8 flash (.tflite as flashed)  TFLM arena   MACs per face (mirror TTA included)
    S     <= 256 KiB                        <= 160 KiB   <= 30 M     every MCU we target, also 1-2 MB flash parts
    M     <= 1 MiB                          <= 160 KiB   <= 60 M     ESP32 / ESP32-S3 modules without PSRAM

Flash, arena and MACs depend on the architecture and the input size, not on the weights' values, with one
catch: the converter stores identical constant buffers once, and a freshly built model's BatchNorm and bias
parameters are all zeros/ones, so its folded biases are identical and its .tflite comes out smaller (measured:
249,568 B untrained vs 255,600 B for the trained S student). `student_costs` therefore gives the BatchNorm
statistics and the biases random values (seeded) before converting, as training would: the S student then
measures 255,600 B and a 92,528 B arena, byte for byte the trained model's (`runs/lfw_v4`, smoke runs). The
quantized model (random calibration images plus an all-black and an all-white one, as the pipeline does) is
loaded in the TFLM runtime for the arena. So a recipe can be checked against its tier in seconds, before a
2-hour training run (`student_costs`, `check_tier`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from atalaia.config import Recipe
from atalaia.errors import RecipeError


@dataclass(frozen=True)
class Tier:
    """One size tier's limits (bytes, bytes, multiply-accumulates per face) and where it fits."""

    name: str
    flash_bytes_max: int
    arena_bytes_max: int
    macs_per_face_max: int
    fits: str


TIERS: dict[str, Tier] = {
    "S": Tier("S", 256 * 1024, 160 * 1024, 30_000_000, "every MCU target, also 1-2 MB flash parts"),
    "M": Tier("M", 1024 * 1024, 160 * 1024, 60_000_000, "ESP32 / ESP32-S3 modules without PSRAM (4-16 MB flash)"),
}


def get_tier(name: str) -> Tier:
    if name not in TIERS:
        raise RecipeError(f"face.tier must be one of {', '.join(TIERS)} (or empty), got '{name}'")
    return TIERS[name]


def _trained_like(model, rng: np.random.Generator) -> None:
    """Random BatchNorm statistics and biases (in place), so no two folded bias buffers are identical."""
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif isinstance(layer, layers.Dense) and layer.use_bias:
            w, b = layer.get_weights()
            layer.set_weights([w, rng.normal(0, 0.1, b.shape)])


def model_costs(model, size: int, *, per_face: int = 2, per_channel: bool = True, strip: bool = True,
                seed: int = 0) -> dict[str, Any]:
    """Params, MACs per inference and per face, int8 flash bytes and measured TFLM arena of a face model with
    input (size, size, 1), untrained but with trained-like BatchNorm/bias values (see the module docstring).
    `model` is left as it was: the values are set on a clone."""
    import keras

    from atalaia.deploy.tflite import convert_int8
    from atalaia.deploy.tflm import check_tflm
    from atalaia.evaluate import profile

    probe = keras.models.clone_model(model)
    rng = np.random.default_rng(seed)
    _trained_like(probe, rng)
    rep = np.concatenate([rng.uniform(0, 1, (8, size, size, 1)), np.zeros((1, size, size, 1)),
                          np.ones((1, size, size, 1))]).astype(np.float32)
    blob = convert_int8(probe, rep, per_channel=per_channel, strip=strip)
    macs = int(profile.count_macs(blob)["total"])
    return {"model": model.name, "params": int(profile.count_params(model)), "macs": macs,
            "inferences_per_face": per_face, "macs_per_face": macs * per_face, "flash_bytes": len(blob),
            "arena_bytes": int(check_tflm(blob).arena_bytes), "input_size": size}


def student_costs(recipe: Recipe, *, seed: int = 0) -> dict[str, Any]:
    """`model_costs` of the recipe's face student (built as the pipeline builds it)."""
    from atalaia.face.train import build_student

    f, size = recipe.face, int(recipe.data.image_size[0])
    model = build_student(size, width=recipe.student.width, embedding_dim=f.embedding_dim, name=recipe.student.name,
                          head=f.student_head)
    return model_costs(model, size, per_face=2 if f.mirror_tta else 1, per_channel=recipe.quantize.per_channel,
                       strip=recipe.quantize.strip_strings, seed=seed)


def keras_macs(model) -> int:
    """Multiply-accumulates of one inference, counted from the Keras layers (Conv2D, DepthwiseConv2D, Dense):
    the same count `atalaia.evaluate.profile.count_macs` makes on the .tflite, without the seconds-long int8
    conversion (a quick pre-check; `student_costs` measures the real thing)."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            per_pixel = kh * kw * (1 if isinstance(layer, layers.DepthwiseConv2D) else int(layer.input.shape[-1]))
            total += int(h) * int(w) * int(c_out) * per_pixel
        elif isinstance(layer, layers.Dense):
            total += int(layer.input.shape[-1]) * int(layer.units)
    return total


def check_tier(costs: dict[str, Any], tier: str) -> dict[str, Any]:
    """Each limit of `tier` against `costs` (from `student_costs`): the values, the limits and ok flags."""
    t = get_tier(tier)
    ok = {"flash_ok": costs["flash_bytes"] <= t.flash_bytes_max, "arena_ok": costs["arena_bytes"] <= t.arena_bytes_max,
          "macs_per_face_ok": costs["macs_per_face"] <= t.macs_per_face_max}
    return {"tier": asdict(t), **costs, **ok, "ok": all(ok.values())}


__all__ = ["TIERS", "Tier", "check_tier", "get_tier", "keras_macs", "model_costs", "student_costs"]
