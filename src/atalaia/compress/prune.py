"""Keras 3 native pruning: unstructured magnitude pruning with a schedule, and structured channel pruning.

`tensorflow-model-optimization` rejects Keras 3 models, so this module does both kinds itself. As in
Torch-Pruning and tfmot, deciding, cutting and timing are kept apart:

- timing: `PolynomialDecay` answers `(should_prune, sparsity)` for a training step (tfmot semantics);
- deciding: `MagnitudePruner.update` ranks weights by |w|; `channel_importance` scores output channels;
- cutting: `MagnitudePruner.apply` multiplies kernels by masks; `channel_prune` rebuilds a narrower model.

Unstructured sparsity does not shrink a TFLM model (no sparse kernels there): it only helps if a later
compressor exploits the zeros. Structured channel pruning removes whole filters/units, so params, MACs,
flash and arena all go down.

Example::

    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    pruner = MagnitudePruner(model, schedule)
    model.fit(ds, epochs=3, callbacks=[PruningCallback(pruner)])
    pruner.strip()                                # a plain Keras model with zeros in its kernels

    small, summary = channel_prune(model, 0.5, criterion="l1")   # narrower model, fine-tune it next
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from atalaia.errors import RecipeError

DEFAULT_LAYER_TYPES: tuple[type, ...] = (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)
"""Layers whose `kernel` magnitude pruning masks by default."""

CRITERIA: tuple[str, ...] = ("l1", "l2", "bn_gamma")
"""Channel-importance criteria accepted by `channel_importance` and `channel_prune`."""

PROTECTED_LAYERS: tuple[str, ...] = ("logits", "embedding")
"""Layers whose output width `channel_prune` never changes: the classifier and the face read-out."""


def _nearest_hint(name: str, valid: Collection[str]) -> str:
    near = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean '{near[0]}'?" if near else ""


# --------------------------------------------------------------------------------------------------------------
# A. Magnitude (unstructured) pruning
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity schedule `step -> (should_prune_now, sparsity)` with tfmot's PolynomialDecay semantics.

    sparsity(step) = final + (initial - final) * (1 - p) ** power, p = clip((step - begin) / (end - begin), 0, 1).
    Masks are recomputed every `frequency` steps counted from `begin_step`, and once more at `end_step` so the
    final sparsity is always reached even when `end_step - begin_step` is not a multiple of `frequency`.
    Outside [begin_step, end_step] it never prunes (masks are kept, only re-applied).

    >>> PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100)(100)
    (True, 0.5)
    """

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3
    frequency: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial_sparsity < 1.0:
            raise RecipeError(f"initial_sparsity must be in [0, 1), got {self.initial_sparsity}")
        if not 0.0 <= self.final_sparsity < 1.0:
            raise RecipeError(f"final_sparsity must be in [0, 1), got {self.final_sparsity}")
        if self.initial_sparsity > self.final_sparsity:
            raise RecipeError(
                f"initial_sparsity ({self.initial_sparsity}) must be <= final_sparsity ({self.final_sparsity}):"
                " sparsity only grows during pruning")
        if self.begin_step < 0:
            raise RecipeError(f"begin_step must be >= 0, got {self.begin_step}")
        if self.end_step < self.begin_step:
            raise RecipeError(f"end_step ({self.end_step}) must be >= begin_step ({self.begin_step})")
        if self.power <= 0:
            raise RecipeError(f"power must be > 0, got {self.power}")
        if int(self.frequency) != self.frequency or self.frequency < 1:
            raise RecipeError(f"frequency must be an integer >= 1, got {self.frequency}")

    def sparsity(self, step: int) -> float:
        """Target sparsity at `step` (initial before `begin_step`, final after `end_step`)."""
        span = self.end_step - self.begin_step
        p = 1.0 if span == 0 else min(1.0, max(0.0, (step - self.begin_step) / span))
        if step < self.begin_step:
            p = 0.0
        return float(self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power)

    def should_prune(self, step: int) -> bool:
        """True on pruning turns: every `frequency` steps from `begin_step`, and at `end_step`."""
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % int(self.frequency) == 0 or step == self.end_step

    def __call__(self, step: int) -> tuple[bool, float]:
        return self.should_prune(step), self.sparsity(step)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolynomialDecay:
        """Build from a recipe mapping; an unknown key is an error naming the nearest valid key."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in valid:
                raise RecipeError(f"unknown PolynomialDecay key '{key}'{_nearest_hint(key, valid)}"
                                  f" (valid: {', '.join(valid)})")
        return cls(**dict(data))


def _iter_layers(model: keras.Model):
    """All leaf layers of `model`, descending into nested models, in order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def _out_split(layer: keras.layers.Layer) -> int:
    """Number of leading kernel axes that index the inputs of one output unit (the rest index the outputs).

    Conv/Dense kernels end with the output axis; a depthwise kernel (kh, kw, cin, multiplier) has
    cin * multiplier outputs, i.e. its last two axes.
    """
    ndim = len(layer.kernel.shape)
    return ndim - 2 if isinstance(layer, layers.DepthwiseConv2D) else ndim - 1


def _prunable_layers(model: keras.Model, layer_types: tuple[type, ...]) -> list[keras.layers.Layer]:
    found = [layer for layer in _iter_layers(model) if isinstance(layer, layer_types)]
    for layer in found:
        if getattr(layer, "kernel", None) is None:
            raise RecipeError(f"layer '{layer.name}' ({type(layer).__name__}) has no built `kernel` to prune")
    return found


def _fraction_zero(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    per_layer = {name: float(np.mean(a == 0)) if a.size else 0.0 for name, a in arrays.items()}
    total = sum(a.size for a in arrays.values())
    zeros = sum(int(np.sum(a == 0)) for a in arrays.values())
    return {"overall": zeros / total if total else 0.0, "per_layer": per_layer}


def sparsity_report(model: keras.Model, *,
                    layer_types: tuple[type, ...] = DEFAULT_LAYER_TYPES) -> dict[str, Any]:
    """Fraction of exact zeros in the kernels of `layer_types`: `{"overall": f, "per_layer": {name: f}}`.

    `overall` is weighted by kernel size (zeros / weights over all prunable kernels). Biases and BN are not
    counted: magnitude pruning never touches them.
    """
    return _fraction_zero({layer.name: np.asarray(layer.kernel.numpy())
                           for layer in _prunable_layers(model, layer_types)})


class MagnitudePruner:
    """Unstructured magnitude pruning of every kernel of `layer_types` in `model`, driven by `schedule`.

    Holds one 0/1 mask per kernel (numpy, same shape). `update(step)` re-ranks |w| and recomputes masks when the
    schedule says so, with a layer-wise threshold (each layer reaches the scheduled sparsity on its own, so no
    small layer is wiped out by a global threshold). `apply()` multiplies kernels by their masks: call it after
    every optimizer step, otherwise gradients and optimizer momentum regrow pruned weights (`PruningCallback`
    does both). `strip()` applies the masks a last time and forgets them; the pruner adds no variables to the
    model, so what is left is a plain Keras model whose kernels contain zeros.

    The logits layer is pruned too, but no layer ever loses every weight of one output unit (output channel,
    or depthwise channel): the largest-|w| weight of an otherwise empty unit is kept, so no channel/class is
    silently turned into a constant. That rule keeps slightly more weights than the target in very small
    units (e.g. 3x3 depthwise filters at >= 89% sparsity); `sparsity()` reports what the masks really hold.
    """

    def __init__(self, model: keras.Model, schedule: PolynomialDecay, *,
                 layer_types: tuple[type, ...] = DEFAULT_LAYER_TYPES) -> None:
        if not model.built:
            raise RecipeError("build the model (call it once or give it an Input) before pruning")
        self.model = model
        self.schedule = schedule
        self.layer_types = tuple(layer_types)
        self._layers = _prunable_layers(model, self.layer_types)
        if not self._layers:
            names = ", ".join(t.__name__ for t in self.layer_types)
            raise RecipeError(f"model '{model.name}' has no layer of types ({names}) to prune")
        self.masks: dict[str, np.ndarray] = {
            layer.name: np.ones(layer.kernel.shape, dtype=np.float32) for layer in self._layers}
        self._mask_tensors: dict[str, Any] = {}
        self.last_step: int | None = None

    def _mask_for(self, layer: keras.layers.Layer, sparsity: float) -> np.ndarray:
        weights = np.abs(np.asarray(layer.kernel.numpy(), dtype=np.float32) * self.masks[layer.name])
        n = weights.size
        n_keep = max(1, int(round((1.0 - sparsity) * n)))
        order = np.argsort(weights, axis=None, kind="stable")
        flat = np.zeros(n, dtype=np.float32)
        flat[order[n - n_keep:]] = 1.0
        split = _out_split(layer)
        rows = int(np.prod(weights.shape[:split]))
        mask2d, w2d = flat.reshape(rows, -1), weights.reshape(rows, -1)
        dead = np.flatnonzero(mask2d.sum(axis=0) == 0)
        if dead.size:
            mask2d[np.argmax(w2d[:, dead], axis=0), dead] = 1.0
        return mask2d.reshape(weights.shape)

    def update(self, step: int) -> bool:
        """Recompute the masks if `schedule(step)` says so; return whether it did. Does not touch weights."""
        self.last_step = step
        prune_now, sparsity = self.schedule(step)
        if not prune_now:
            return False
        for layer in self._layers:
            self.masks[layer.name] = self._mask_for(layer, sparsity)
        self._mask_tensors.clear()
        return True

    def apply(self) -> None:
        """Zero the masked weights (kernel *= mask) of every pruned layer."""
        for layer in self._layers:
            mask = self._mask_tensors.get(layer.name)
            if mask is None:
                mask = keras.ops.convert_to_tensor(self.masks[layer.name], dtype=layer.kernel.dtype)
                self._mask_tensors[layer.name] = mask
            layer.kernel.assign(keras.ops.multiply(layer.kernel, mask))

    def strip(self) -> keras.Model:
        """Apply the masks a last time, forget them, and return the (same, now plain) model."""
        self.apply()
        self.masks.clear()
        self._mask_tensors.clear()
        self._layers = []
        return self.model

    def sparsity(self) -> dict[str, Any]:
        """Fraction of masked-out weights: `{"overall": f, "per_layer": {name: f}}` (overall weighted by size)."""
        return _fraction_zero(self.masks)


class PruningCallback(keras.callbacks.Callback):
    """Drive a `MagnitudePruner` from `model.fit`: after every train batch, `update(step)` then `apply()`.

    `step` is a global counter of train batches seen by this callback, starting at `initial_step` and kept
    across `fit` calls (reuse the same callback to continue a schedule). Masks are also applied at the start
    and end of training. With `steps_per_execution > 1`, Keras calls batch hooks once per execution, so the
    counter counts executions: size the schedule accordingly.
    """

    def __init__(self, pruner: MagnitudePruner, *, initial_step: int = 0) -> None:
        super().__init__()
        self.pruner = pruner
        self.step = int(initial_step)

    def on_train_begin(self, logs=None) -> None:
        self.pruner.apply()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.pruner.update(self.step)
        self.pruner.apply()
        self.step += 1

    def on_train_end(self, logs=None) -> None:
        self.pruner.apply()


# --------------------------------------------------------------------------------------------------------------
# B. Structured channel pruning
# --------------------------------------------------------------------------------------------------------------

_PASS_THROUGH: tuple[type, ...] = (
    layers.ReLU, layers.Activation, layers.MaxPooling2D, layers.AveragePooling2D, layers.Dropout,
    layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D,
)
"""Layers that act on each channel independently and have no weights (SpatialDropout2D is a Dropout)."""

_SUPPORTED: tuple[type, ...] = (
    layers.InputLayer, layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.Flatten,
    layers.Dense, *_PASS_THROUGH,
)
_MERGE_NAMES = ("Add", "Concatenate", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Dot")


def _is_producer(layer: keras.layers.Layer) -> bool:
    """A layer whose output width is a free hyper-parameter (filters/units)."""
    return isinstance(layer, layers.Dense) or (
        isinstance(layer, layers.Conv2D) and getattr(layer, "groups", 1) == 1)


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers as a single chain (input layer first), or a RecipeError naming the first obstacle."""
    if not model.built or not getattr(model, "inputs", None):
        raise RecipeError(f"channel pruning needs a built functional/Sequential model; '{model.name}' is not")
    body = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    for layer in body:  # merges first, so the message names the merging layer, not the fan-out before it
        nodes = layer._inbound_nodes
        n_inputs = max((len(node.input_tensors) for node in nodes), default=0)
        if n_inputs > 1 or type(layer).__name__ in _MERGE_NAMES:
            raise RecipeError(f"channel pruning supports chain models; layer '{layer.name}' merges branches")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise RecipeError("channel pruning supports chain models with one input and one output; "
                          f"'{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    first_parent = body[0]._inbound_nodes[0].input_tensors[0]._keras_history.operation if body else None
    chain: list[keras.layers.Layer] = [first_parent]
    for layer in body:
        if isinstance(layer, keras.Model):
            raise RecipeError(f"channel pruning does not descend into nested model '{layer.name}'")
        if not isinstance(layer, _SUPPORTED):
            allowed = ", ".join(t.__name__ for t in _SUPPORTED) + ", SpatialDropout2D"
            raise RecipeError(f"channel pruning cannot handle layer '{layer.name}' ({type(layer).__name__});"
                              f" supported: {allowed}")
        if len(layer._inbound_nodes) != 1:
            raise RecipeError(f"channel pruning supports chain models; layer '{layer.name}' is shared"
                              f" ({len(layer._inbound_nodes)} call sites)")
        parent = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if parent is not chain[-1]:
            raise RecipeError(f"channel pruning supports chain models; '{parent.name}' feeds more than one"
                              f" layer (seen again at '{layer.name}')")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise RecipeError(f"channel pruning needs channels_last; layer '{layer.name}' is channels_first")
        if isinstance(layer, layers.BatchNormalization) and layer.axis not in (-1, len(layer.input.shape) - 1):
            raise RecipeError(f"channel pruning needs BatchNormalization on the last axis; '{layer.name}'"
                              f" normalizes axis {layer.axis}")
        chain.append(layer)
    if not isinstance(chain[0], layers.InputLayer):
        raise RecipeError(f"channel pruning expects the chain to start at an Input; '{model.name}' does not")
    return chain


def _groups(chain: list[keras.layers.Layer]) -> dict[str, tuple[int, int]]:
    """For every prunable producer: (its chain index, the index of the Conv2D/Dense that consumes it).

    A producer whose channels reach the model output without a consumer (the logits), and the protected
    `logits`/`embedding` layers, are not prunable.
    """
    out: dict[str, tuple[int, int]] = {}
    for i, layer in enumerate(chain):
        if not _is_producer(layer) or layer.name in PROTECTED_LAYERS:
            continue
        for j in range(i + 1, len(chain)):
            if isinstance(chain[j], (layers.Conv2D, layers.Dense)):
                if isinstance(chain[j], layers.Conv2D) and not _is_producer(chain[j]):
                    break  # grouped conv consumer: channel groups would no longer line up
                out[layer.name] = (i, j)
                break
    return out


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise RecipeError(f"unknown channel-importance criterion '{criterion}'{_nearest_hint(criterion, CRITERIA)}"
                          f" (allowed: {', '.join(CRITERIA)})")


def _importance(chain, groups, criterion: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    scores: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    for name, (i, j) in groups.items():
        layer = chain[i]
        kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
        axes = tuple(range(kernel.ndim - 1))
        crit = criterion
        if criterion == "bn_gamma":
            bn = next((chain[k] for k in range(i + 1, j)
                       if isinstance(chain[k], (layers.BatchNormalization, layers.DepthwiseConv2D))), None)
            if isinstance(bn, layers.BatchNormalization) and bn.gamma is not None:
                scores[name] = np.abs(np.asarray(bn.gamma.numpy(), dtype=np.float64))
                used[name] = "bn_gamma"
                continue
            crit = "l1"  # no BN (e.g. a hidden Dense): fall back to the kernel's L1 norm, recorded in the summary
        if crit == "l1":
            scores[name] = np.sum(np.abs(kernel), axis=axes)
        else:
            scores[name] = np.sqrt(np.sum(kernel ** 2, axis=axes))
        used[name] = crit
    return scores, used


def channel_importance(model: keras.Model, criterion: str = "l1") -> dict[str, np.ndarray]:
    """Score every output channel/unit of every prunable layer: `{layer_name: scores[out_channels]}`.

    Prunable: each Conv2D (groups=1) or Dense whose output feeds another Conv2D/Dense, except the `logits` and
    `embedding` layers. For ds_cnn that is the stem and the pointwise convs; for code2/3 every conv and `fc`.
    Criteria: "l1" / "l2" norm of the kernel slice producing the channel; "bn_gamma" |gamma| of the
    BatchNormalization right after the layer (network slimming). A layer without such a BN (code2's `fc`) is
    scored by "l1" instead. Higher = more important. Raises RecipeError for an unknown criterion or a
    non-chain model.
    """
    _check_criterion(criterion)
    chain = _chain(model)
    return _importance(chain, _groups(chain), criterion)[0]


def _n_keep(channels: int, ratio: float, min_channels: int, round_to: int) -> int:
    """Channels kept: ceil((1 - ratio) * c) rounded UP to a multiple of `round_to`, at least `min_channels`,
    never more than c. Rounding up means a layer is never pruned harder than asked."""
    keep = math.ceil(round((1.0 - ratio) * channels, 9))
    keep = math.ceil(keep / round_to) * round_to
    return min(channels, max(min_channels, keep))


def _slice(arr: np.ndarray, idx: np.ndarray | None, axis: int) -> np.ndarray:
    return arr if idx is None else np.take(arr, idx, axis=axis)


def _new_weights(layer, in_keep: np.ndarray | None, out_keep: np.ndarray | None) -> dict[str, np.ndarray]:
    """The layer's weights by name, sliced to the kept input/output channels."""
    w = {v.name: np.asarray(v.numpy()) for v in layer.weights}
    if isinstance(layer, layers.BatchNormalization):
        return {k: _slice(a, in_keep, 0) for k, a in w.items()}
    if isinstance(layer, layers.DepthwiseConv2D):
        out = {"kernel": _slice(w["kernel"], in_keep, 2)}
        if "bias" in w:
            out["bias"] = _slice(w["bias"], out_keep, 0)
        return out
    if isinstance(layer, (layers.Conv2D, layers.Dense)):
        kernel = w["kernel"]
        out = {"kernel": _slice(_slice(kernel, in_keep, kernel.ndim - 2), out_keep, kernel.ndim - 1)}
        if "bias" in w:
            out["bias"] = _slice(w["bias"], out_keep, 0)
        return out
    return w


def channel_prune(model: keras.Model, ratio: float, criterion: str = "l1", *, min_channels: int = 4,
                  round_to: int = 4, exclude: Collection[str] = ()) -> tuple[keras.Model, dict[str, Any]]:
    """Remove the least important `ratio` of output channels of every prunable layer; return a NEW model.

    The new model is rebuilt layer by layer from each layer's config with smaller `filters`/`units`, and the
    surviving weights are copied: a pruned conv/dense keeps its kernel's output slices and bias; the BNs that
    follow keep gamma/beta/moving stats of the kept channels; a DepthwiseConv2D (and its BN) in between keeps
    the same channels; the consuming Conv2D keeps the matching input slices; a Dense after Flatten keeps the
    rows of the kept channels in flatten order (h, w, c — channel last), after global pooling the rows directly.
    The `logits` and `embedding` layers keep their width, as does any layer named in `exclude`.

    Channels kept per layer = `_n_keep`: ceil((1 - ratio) * c), rounded UP to a multiple of `round_to`
    (4 suits SIMD int8 kernels), at least `min_channels`, at most c. The kept channels are the top-scoring
    ones under `criterion` (see `channel_importance`), in their original order.

    Only chain models are supported (students are chains); a model with Add/Concatenate/... raises RecipeError
    naming the merging layer. The returned model is uncompiled (no optimizer state): compile and fine-tune it.

    Returns (new_model, summary) with summary = {"ratio", "criterion", "min_channels", "round_to",
    "params_before", "params_after", "layers": {name: {"before", "after", "kept", "criterion"}}}.
    """
    _check_criterion(criterion)
    if not 0.0 <= float(ratio) < 1.0:
        raise RecipeError(f"ratio must be in [0, 1), got {ratio}")
    if int(min_channels) != min_channels or min_channels < 1:
        raise RecipeError(f"min_channels must be an integer >= 1, got {min_channels}")
    if int(round_to) != round_to or round_to < 1:
        raise RecipeError(f"round_to must be an integer >= 1 (1 disables rounding), got {round_to}")
    chain = _chain(model)
    names = {layer.name for layer in chain}
    for name in exclude:
        if name not in names:
            raise RecipeError(f"exclude names unknown layer '{name}'{_nearest_hint(name, names)}")
    groups = {k: v for k, v in _groups(chain).items() if k not in set(exclude)}
    scores, used = _importance(chain, groups, criterion)

    decisions: dict[str, np.ndarray | None] = {}
    report: dict[str, dict[str, Any]] = {}
    for name, score in scores.items():
        c = int(score.shape[0])
        n = _n_keep(c, float(ratio), int(min_channels), int(round_to))
        keep = np.sort(np.argsort(-score, kind="stable")[:n]) if n < c else None
        decisions[name] = keep
        report[name] = {"before": c, "after": n, "kept": (keep if keep is not None else np.arange(c)).tolist(),
                        "criterion": used[name]}

    # Rebuild the chain with the new widths, tracking which channels of the current tensor survive.
    src_input = model.inputs[0]
    x = new_input = keras.Input(batch_shape=tuple(src_input.shape), dtype=src_input.dtype, name=chain[0].name)
    pending: list[tuple[keras.layers.Layer, keras.layers.Layer, dict[str, np.ndarray]]] = []
    cur: np.ndarray | None = None  # indices kept along the last axis of the current tensor; None = all
    for layer in chain[1:]:
        config = layer.get_config()
        in_keep, out_keep = cur, cur
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            out_keep = decisions.get(layer.name)  # None: not pruned (logits, embedding, grouped conv, ...)
            if out_keep is not None:
                config["filters" if isinstance(layer, layers.Conv2D) else "units"] = int(out_keep.size)
        elif isinstance(layer, layers.DepthwiseConv2D):
            mult = int(layer.depth_multiplier)
            out_keep = None if cur is None else (cur[:, None] * mult + np.arange(mult)[None, :]).ravel()
        elif isinstance(layer, layers.Flatten) and cur is not None:
            shape = layer.input.shape
            if any(d is None for d in shape[1:]):
                raise RecipeError(f"Flatten '{layer.name}' needs a static input shape to map channels to rows")
            channels, positions = int(shape[-1]), int(np.prod(shape[1:-1]))
            out_keep = (np.arange(positions)[:, None] * channels + cur[None, :]).ravel()
        elif isinstance(layer, layers.Activation) and cur is not None:
            act = getattr(layer.activation, "__name__", str(layer.activation))
            if act in ("softmax", "log_softmax"):
                raise RecipeError(f"Activation '{layer.name}' ({act}) couples channels; cannot prune before it")
        new_layer = type(layer).from_config(config)
        kwargs = dict(layer._inbound_nodes[0].arguments.kwargs)
        x = new_layer(x, **kwargs)
        if layer.weights:
            pending.append((layer, new_layer, _new_weights(layer, in_keep, out_keep)))
        cur = out_keep
    new_model = keras.Model(new_input, x, name=model.name)
    for old, new, weights in pending:
        try:
            new.set_weights([weights[v.name] for v in new.weights])
        except (KeyError, ValueError) as err:  # pragma: no cover - a bug here must not pass silently
            raise RuntimeError(f"copying weights of '{old.name}' failed: {err}") from err

    summary = {"ratio": float(ratio), "criterion": criterion, "min_channels": int(min_channels),
               "round_to": int(round_to), "params_before": int(model.count_params()),
               "params_after": int(new_model.count_params()), "layers": report}
    return new_model, summary


__all__ = [
    "CRITERIA", "DEFAULT_LAYER_TYPES", "PROTECTED_LAYERS", "MagnitudePruner", "PolynomialDecay",
    "PruningCallback", "channel_importance", "channel_prune", "sparsity_report",
]
