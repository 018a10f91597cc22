"""Model registry: `create_model(name, num_classes=..., input_shape=..., width=...)`.

Students are plain chains (no residual adds) so structured channel pruning can rebuild them narrower;
the teacher is a wider residual CNN that only has to be accurate.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import keras

from atalaia.errors import RecipeError
from atalaia.models import rafael, students, teachers

_REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "code2": students.code2,
    "code3": students.code3,
    "ds_cnn": students.ds_cnn,
    "ds_cnn_deep": students.ds_cnn_deep,
    "ds_res": students.ds_res,
    "rafael_base": rafael.rafael_base,
    "rafael_1": rafael.rafael_1,
    "rafael_2": rafael.rafael_2,
    "rafael_3": rafael.rafael_3,
    "teacher_resnet": teachers.teacher_resnet,
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: float = 1.0,
    embedding_dim: int | None = None,
) -> keras.Model:
    """Build an untrained model. Output: logits (no softmax) over `num_classes`.

    `embedding_dim` (students only) inserts a linear embedding layer named `embedding` before the classifier,
    which face-recognition recipes read out instead of the logits.
    """
    if name not in _REGISTRY:
        near = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise RecipeError(f"unknown model '{name}'{hint} (available: {', '.join(available_models())})")
    if num_classes < 2:
        raise RecipeError(f"a classifier needs >= 2 classes, got {num_classes}")
    kwargs = {"num_classes": num_classes, "input_shape": tuple(input_shape), "width": width}
    if embedding_dim is not None:
        kwargs["embedding_dim"] = embedding_dim
    return _REGISTRY[name](**kwargs)


__all__ = ["available_models", "create_model"]
