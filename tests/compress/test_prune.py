"""Tests for atalaia.compress.prune: schedule, magnitude pruner, and structured channel pruning.

Models are tiny (16x16x1 inputs, width 0.25-0.5) and seeds are fixed so the whole file runs in seconds.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import layers

from atalaia.compress.prune import (
    MagnitudePruner,
    PolynomialDecay,
    PruningCallback,
    channel_importance,
    channel_prune,
    sparsity_report,
)
from atalaia.errors import RecipeError
from atalaia.models import create_model

SHAPE = (16, 16, 1)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _images(n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype("float32")


def _randomize_stats(model: keras.Model, seed: int = 2) -> keras.Model:
    """Give every BN non-trivial gamma/beta/moving stats and every bias random values.

    Fresh layers have gamma=1, beta=0, mean=0, var=1 and zero biases, which would hide slicing mistakes
    (a wrongly copied BN channel would still be the identity).
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, (layers.Dense, layers.Conv2D)) and layer.bias is not None:
            w = layer.get_weights()
            w[1] = rng.normal(0, 0.2, w[1].shape)
            layer.set_weights(w)
    return model


def _zero_pruned_channels(model: keras.Model, summary: dict) -> None:
    """Oracle: silence the pruned channels in the OLD model instead of removing them.

    A pruned producer gets its kernel columns and bias zeroed; each BN of its group gets gamma, beta and moving
    mean zeroed (beta alone would make a zero conv output non-zero), so after ReLU the channel is exactly 0 all
    the way to the consuming Conv2D/Dense. Depthwise convs (no bias) keep a zero channel zero.
    """
    dead = None
    for layer in model.layers:
        info = summary["layers"].get(layer.name)
        if isinstance(layer, (layers.Conv2D, layers.Dense)) and not isinstance(layer, layers.DepthwiseConv2D):
            dead = None
            if info is not None:
                dead = np.setdiff1d(np.arange(info["before"]), info["kept"])
                w = layer.get_weights()
                w[0][..., dead] = 0.0
                if len(w) > 1:
                    w[1][dead] = 0.0
                layer.set_weights(w)
        elif isinstance(layer, layers.BatchNormalization) and dead is not None:
            gamma, beta, mean, var = layer.get_weights()
            gamma[dead], beta[dead], mean[dead] = 0.0, 0.0, 0.0
            layer.set_weights([gamma, beta, mean, var])


def _model(name: str, **kw) -> keras.Model:
    width = kw.pop("width", 0.5 if name == "ds_cnn" else 0.25)
    return _randomize_stats(create_model(name, num_classes=5, input_shape=SHAPE, width=width, **kw))


# ---- schedule ------------------------------------------------------------------------------------------------


def test_polynomial_decay_values_and_frequency():
    s = PolynomialDecay(0.1, 0.8, begin_step=10, end_step=30, power=3, frequency=7)
    assert s(10) == (True, pytest.approx(0.1))
    middle = 0.8 + (0.1 - 0.8) * (1 - 0.5) ** 3
    assert s(20) == (False, pytest.approx(middle))           # 20 - 10 is not a multiple of 7
    assert s(17) == (True, pytest.approx(0.8 - 0.7 * (1 - 7 / 20) ** 3))
    assert s(30) == (True, pytest.approx(0.8))                # end_step always prunes, off-frequency or not
    assert s(5) == (False, pytest.approx(0.1))                # before begin: initial, no pruning
    assert s(31) == (False, pytest.approx(0.8))               # after end: final, no pruning
    assert [t for t in range(0, 40) if s.should_prune(t)] == [10, 17, 24, 30]
    assert PolynomialDecay.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("kwargs, match", [
    ({"initial_sparsity": 0.0, "final_sparsity": 1.0}, "final_sparsity"),
    ({"initial_sparsity": 0.6, "final_sparsity": 0.5}, "initial_sparsity"),
    ({"initial_sparsity": 0.0, "final_sparsity": 0.5, "end_step": -1}, "end_step"),
    ({"initial_sparsity": 0.0, "final_sparsity": 0.5, "frequency": 0}, "frequency"),
])
def test_polynomial_decay_rejects_bad_arguments(kwargs, match):
    kwargs = {"begin_step": 0, "end_step": 10, **kwargs}
    with pytest.raises(RecipeError, match=match):
        PolynomialDecay(**kwargs)


def test_polynomial_decay_from_dict_names_unknown_key():
    with pytest.raises(RecipeError, match="'frequncy'.*did you mean 'frequency'"):
        PolynomialDecay.from_dict({"initial_sparsity": 0, "final_sparsity": 0.5, "begin_step": 0,
                                   "end_step": 5, "frequncy": 2})


# ---- magnitude pruning ---------------------------------------------------------------------------------------


def _kernels(model):
    return {layer.name: layer.kernel.numpy().copy() for layer in model.layers
            if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense))}


def test_pruner_reaches_target_and_pruned_weights_stay_zero():
    model = create_model("code2", num_classes=4, input_shape=SHAPE, width=0.25)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _images(32), np.random.default_rng(3).integers(0, 4, 32)
    pruner = MagnitudePruner(model, PolynomialDecay(0.0, 0.75, begin_step=0, end_step=4, frequency=2))
    callback = PruningCallback(pruner)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])   # 8 steps: prunes at 0, 2, 4

    assert callback.step == 8
    report = sparsity_report(model)
    assert report["overall"] == pytest.approx(0.75, abs=0.01)
    assert report["overall"] == pytest.approx(pruner.sparsity()["overall"], abs=1e-6)
    assert report["per_layer"]["fc"] == pytest.approx(0.75, abs=0.01)   # layer-wise threshold

    before = _kernels(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])   # past end_step: apply only
    after = _kernels(model)
    for name, mask in pruner.masks.items():
        assert np.all(after[name][mask == 0] == 0), name
    moved = sum(not np.allclose(before[n][pruner.masks[n] == 1], after[n][pruner.masks[n] == 1]) for n in after)
    assert moved > 0, "the surviving weights should still train"
    assert sparsity_report(model)["overall"] == pytest.approx(report["overall"], abs=1e-6)


def test_pruner_keeps_one_weight_per_output_unit():
    model = create_model("ds_cnn", num_classes=4, input_shape=SHAPE, width=0.25)
    pruner = MagnitudePruner(model, PolynomialDecay(0.0, 0.97, begin_step=0, end_step=0))
    assert pruner.update(0) is True
    pruner.apply()
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):   # (3, 3, C, 1): each channel is one unit of 9 weights
            per_unit = layer.kernel.numpy().reshape(9, -1)
        elif isinstance(layer, (layers.Conv2D, layers.Dense)):
            per_unit = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        else:
            continue
        assert np.all(np.count_nonzero(per_unit, axis=0) >= 1), layer.name
    assert sparsity_report(model)["overall"] > 0.9


def test_strip_leaves_a_plain_model_that_saves_and_loads(tmp_path):
    model = create_model("ds_cnn", num_classes=4, input_shape=SHAPE, width=0.25)
    names_before = [v.path for v in model.weights]
    pruner = MagnitudePruner(model, PolynomialDecay(0.0, 0.5, begin_step=0, end_step=0))
    pruner.update(0)
    stripped = pruner.strip()
    assert stripped is model and pruner.masks == {}
    assert [v.path for v in model.weights] == names_before
    assert sparsity_report(model)["overall"] == pytest.approx(0.5, abs=0.01)

    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _images()
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    assert sparsity_report(loaded) == sparsity_report(model)


# ---- channel pruning -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ds_cnn", "code2"])
def test_channel_prune_ratio_zero_is_identity(name):
    model = _model(name)
    new, summary = channel_prune(model, 0.0)
    assert new is not model
    assert summary["params_after"] == summary["params_before"] == model.count_params()
    x = _images()
    np.testing.assert_allclose(new(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kw", [("ds_cnn", {}), ("code2", {}), ("code3", {}),
                                      ("ds_cnn", {"embedding_dim": 16})])
def test_channel_prune_equals_old_model_with_pruned_channels_zeroed(name, kw):
    model = _model(name, **kw)
    x = _images()
    new, summary = channel_prune(model, 0.5)
    assert summary["params_after"] == new.count_params() < 0.5 * summary["params_before"]
    assert all(v["after"] < v["before"] for v in summary["layers"].values())
    y_new = new(x, training=False).numpy()
    assert not np.allclose(y_new, model(x, training=False).numpy(), atol=1e-3)  # the oracle is not trivial
    _zero_pruned_channels(model, summary)
    np.testing.assert_allclose(y_new, model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)


def test_channel_prune_sequential_model_with_flatten():
    model = keras.Sequential([
        keras.Input(SHAPE), layers.Conv2D(8, 3, padding="same", name="c0"), layers.BatchNormalization(name="bn0"),
        layers.ReLU(name="r0"), layers.MaxPooling2D(4, name="p0"), layers.Flatten(name="flat"),
        layers.Dense(12, activation="relu", name="fc"), layers.Dense(3, name="logits")])
    _randomize_stats(model)
    x = _images()
    new, summary = channel_prune(model, 0.5, round_to=2)
    assert {k: v["after"] for k, v in summary["layers"].items()} == {"c0": 4, "fc": 6}
    y_new = new(x, training=False).numpy()
    _zero_pruned_channels(model, summary)
    np.testing.assert_allclose(y_new, model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)


def test_channel_prune_keeps_the_most_important_channels_in_order():
    model = _model("code2")
    scores = channel_importance(model, "l2")
    _, summary = channel_prune(model, 0.5, "l2")
    assert set(summary["layers"]) == set(scores) == {
        "b0_conv0", "b0_conv1", "b1_conv0", "b1_conv1", "b2_conv0", "b2_conv1", "fc"}
    for name, info in summary["layers"].items():
        top = np.sort(np.argsort(-scores[name])[: info["after"]])
        assert info["kept"] == top.tolist(), name


def test_channel_prune_rounding_rule():
    model = _model("ds_cnn")   # width 0.5: stem 8, pointwise 16, 32, 32, 64, 64, 128
    _, rounded = channel_prune(model, 0.3)
    _, exact = channel_prune(model, 0.3, round_to=1, min_channels=1)
    order = ["stem_conv", "ds0_pw", "ds1_pw", "ds2_pw", "ds3_pw", "ds4_pw", "ds5_pw"]
    # ceil(0.7 * c) rounded up to a multiple of 4
    assert [rounded["layers"][n]["after"] for n in order] == [8, 12, 24, 24, 48, 48, 92]
    assert [exact["layers"][n]["after"] for n in order] == [6, 12, 23, 23, 45, 45, 90]
    _, floor = channel_prune(model, 0.95, min_channels=6)
    assert floor["layers"]["stem_conv"]["after"] == 6 and floor["layers"]["ds5_pw"]["after"] == 8


def test_bn_gamma_criterion_reads_following_bn_and_falls_back_to_l1():
    model = _model("code2")
    scores = channel_importance(model, "bn_gamma")
    np.testing.assert_allclose(scores["b1_conv0"], np.abs(model.get_layer("b1_bn0").gamma.numpy()))
    fc = model.get_layer("fc").kernel.numpy()
    np.testing.assert_allclose(scores["fc"], np.abs(fc).sum(axis=0), rtol=1e-6)   # no BN after fc
    _, summary = channel_prune(model, 0.5, "bn_gamma")
    assert summary["layers"]["fc"]["criterion"] == "l1"
    assert summary["layers"]["b0_conv0"]["criterion"] == "bn_gamma"


def test_residual_teacher_is_rejected_naming_the_merge():
    teacher = create_model("teacher_resnet", num_classes=3, input_shape=SHAPE, width=0.25)
    with pytest.raises(RecipeError, match="chain models; layer 's0b0_add' merges branches"):
        channel_prune(teacher, 0.5)
    with pytest.raises(RecipeError, match="s0b0_add"):
        channel_importance(teacher)


@pytest.mark.parametrize("call", [
    lambda m: channel_importance(m, "l3"),
    lambda m: channel_prune(m, 0.5, "l3"),
])
def test_unknown_criterion_is_rejected(call):
    with pytest.raises(RecipeError, match="unknown channel-importance criterion 'l3'.*allowed: l1, l2, bn_gamma"):
        call(create_model("ds_cnn", num_classes=3, input_shape=SHAPE, width=0.25))


@pytest.mark.parametrize("kwargs, match", [({"ratio": 1.0}, "ratio"), ({"ratio": -0.1}, "ratio"),
                                           ({"ratio": 0.5, "round_to": 0}, "round_to"),
                                           ({"ratio": 0.5, "exclude": ["fcc"]}, "did you mean 'fc'")])
def test_channel_prune_validates_arguments(kwargs, match):
    with pytest.raises(RecipeError, match=match):
        channel_prune(create_model("code2", num_classes=3, input_shape=SHAPE, width=0.25), **kwargs)


@pytest.mark.parametrize("name", ["ds_cnn", "code2"])
def test_embedding_model_round_trip_keeps_embedding_width(name, tmp_path):
    model = _model(name, embedding_dim=16)
    new, summary = channel_prune(model, 0.5, exclude=["stem_conv"] if name == "ds_cnn" else ())
    assert "embedding" not in summary["layers"] and "logits" not in summary["layers"]
    assert new.get_layer("embedding").units == 16 and new.get_layer("logits").units == 5
    assert new.get_layer("embedding").kernel.shape[0] < model.get_layer("embedding").kernel.shape[0]
    if name == "ds_cnn":
        assert "stem_conv" not in summary["layers"] and new.get_layer("stem_conv").filters == 8
    path = tmp_path / "small.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    x = _images()
    np.testing.assert_allclose(loaded(x, training=False), new(x, training=False), atol=1e-6)
    # pruning the pruned model again works on the rebuilt graph (names preserved)
    again, summary2 = channel_prune(loaded, 0.5)
    assert again.get_layer("embedding").units == 16
    assert summary2["params_after"] < summary["params_after"]
    assert math.isclose(summary2["params_before"], summary["params_after"])
