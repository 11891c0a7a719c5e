"""Channel surgery: every zoo architecture prunes, predicts and converts; dead and constant channels
are removed without changing the outputs; coupling, Flatten->Dense and transposed convolutions."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.prune.apoz import measure, prunable_layers
from cxr_edge.train.prune.graph import CouplingError, graph, prune_channels
from cxr_edge.train.unet import build_unet
from cxr_edge.train.zoo import PRESETS, build_model, preset

pytestmark = pytest.mark.train
SLOW = {"densenet201", "inception_resnet_v2", "nasnet_mobile"}
ALL = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(PRESETS)]


def tiny(name: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    p = preset(name)
    size = max(p.min_size, 32 if p.application is None else 64)
    return build_model(
        TrainConfig(model=name, preprocess=PreprocessSpec(input_size=(size, size), channels=p.channels))
    )


def inputs(model, n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *model.input_shape[1:])).astype(np.float32)


def out(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def kill(model: keras.Model, producer: str, activation: str, channels: list[int]) -> None:
    """Forces channels dead: zero kernel slice, then a negative pre-activation (bias or BatchNorm beta)."""
    consumers: dict[str, list] = {}
    for node in graph(model):
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    layer = model.get_layer(producer)
    w = layer.get_weights()
    w[1 if isinstance(layer, keras.layers.SeparableConv2D) else 0][..., channels] = 0.0
    if layer.use_bias:
        w[-1][channels] = -1.0
    layer.set_weights(w)
    name = producer
    while name != activation:
        node = consumers[name][0]
        if isinstance(node.layer, keras.layers.BatchNormalization):
            keys = [v.path.split("/")[-1] for v in node.layer.weights]
            params = dict(zip(keys, node.layer.get_weights(), strict=True))
            params["moving_mean"][channels], params["moving_variance"][channels] = 0.0, 1.0
            params["beta"][channels] = -1.0
            if "gamma" in params:
                params["gamma"][channels] = 1.0
            node.layer.set_weights([params[k] for k in keys])
        name = node.name


@pytest.mark.parametrize("name", ALL)
def test_random_pruning_builds_predicts_and_converts(name, tmp_path):
    from cxr_edge.convert.tflite import to_tflite
    from cxr_edge.runtime.engine import Engine

    model = tiny(name)
    layers = prunable_layers(model)
    assert layers, "every zoo model has prunable layers"
    rng = np.random.default_rng(1)
    keep = {}
    for p in layers:
        n = model.get_layer(p.producer).output.shape[-1]
        keep[p.producer] = np.sort(rng.choice(n, size=max(1, int(n * 0.7)), replace=False))
    pruned, report = prune_channels(model, keep)
    assert pruned.count_params() < model.count_params() and sum(report.removed.values()) > 0
    for p in layers:
        assert pruned.get_layer(p.producer).output.shape[-1] == len(keep[p.producer])
    x = inputs(model, 1)
    assert out(pruned, x).shape == (1, 3)
    file = tmp_path / "pruned.tflite"
    file.write_bytes(to_tflite(pruned, "fp32"))
    np.testing.assert_allclose(Engine(file)(x[0]), out(pruned, x)[0], atol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_removing_dead_channels_changes_nothing(name):
    model = tiny(name)
    layers = prunable_layers(model)
    chosen = layers[:: max(1, len(layers) // 6)]
    for p in chosen:
        kill(model, p.producer, p.activation, [0, 2])
    x = inputs(model)
    stats = measure(model, chosen, x)
    constants = stats.constants()
    keep = {}
    for p in chosen:
        assert constants[p.activation].get(0) == 0.0 and constants[p.activation].get(2) == 0.0
        n = model.get_layer(p.producer).output.shape[-1]
        keep[p.producer] = np.array([c for c in range(n) if c not in (0, 2)])
    pruned, _ = prune_channels(model, keep, constants=constants)
    np.testing.assert_allclose(out(pruned, x), out(model, x), atol=1e-5)


def test_nonzero_constant_is_folded_exactly_through_pooling_into_dense():
    model = tiny("custom_cnn")
    bn = model.get_layer("block5_bn")
    gamma, beta, mean, var = bn.get_weights()
    gamma[[3, 7]], beta[[3, 7]] = 0.0, 0.7
    bn.set_weights([gamma, beta, mean, var])
    x = inputs(model)
    stats = measure(model, prunable_layers(model), x)
    assert stats.constants()["features"][3] == pytest.approx(0.7, abs=1e-6)
    n = model.get_layer("block5_sepconv").output.shape[-1]
    keep = {"block5_sepconv": np.array([c for c in range(n) if c not in (3, 7)])}
    pruned, report = prune_channels(model, keep, constants=stats.constants())
    assert report.folded == 1 and report.approximate == 0
    np.testing.assert_allclose(out(pruned, x), out(model, x), atol=1e-5)
    unfolded, _ = prune_channels(model, keep)  # without the fold the outputs do change
    assert np.abs(out(unfolded, x) - out(model, x)).max() > 1e-3


def test_constant_into_a_same_padded_convolution_is_reported_approximate():
    model = tiny("custom_cnn")
    bn = model.get_layer("block3_bn")
    gamma, beta, mean, var = bn.get_weights()
    gamma[1], beta[1] = 0.0, 0.5
    bn.set_weights([gamma, beta, mean, var])
    stats = measure(model, prunable_layers(model), inputs(model))
    n = model.get_layer("block3_sepconv").output.shape[-1]
    _, report = prune_channels(
        model, {"block3_sepconv": np.delete(np.arange(n), 1)}, constants=stats.constants()
    )
    assert report.folded == 1 and report.approximate == 1


def test_residual_add_couples_its_inputs():
    model = tiny("mobilenet_v2")
    assert all(not p.producer.endswith("_project") for p in prunable_layers(model))  # excluded: feed Adds
    n = model.get_layer("block_1_project").output.shape[-1]
    with pytest.raises(CouplingError, match="block_2_add"):
        prune_channels(model, {"block_1_project": np.arange(n - 2)})


def test_inception_concatenation_offsets():
    model = tiny("inception_v3")
    concat = next(layer for layer in model.layers if layer.name == "mixed0")
    branch_acts = {t._keras_history[0].name for t in concat.input}
    first = next(p for p in prunable_layers(model) if p.activation in branch_acts)
    kill(model, first.producer, first.activation, [0, 2])
    n = model.get_layer(first.producer).output.shape[-1]
    x = inputs(model)
    pruned, _ = prune_channels(model, {first.producer: np.delete(np.arange(n), [0, 2])})
    np.testing.assert_allclose(out(pruned, x), out(model, x), atol=1e-5)
    assert pruned.get_layer("mixed0").output.shape[-1] == model.get_layer("mixed0").output.shape[-1] - 2


def test_flatten_dense_rows_follow_the_kept_channels():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    h = keras.layers.Flatten(name="flat")(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    kill(model, "conv", "conv", [1, 4])
    x = inputs(model)
    pruned, _ = prune_channels(model, {"conv": np.array([0, 2, 3, 5])})
    assert pruned.get_layer("probs").get_weights()[0].shape == (6 * 6 * 4, 3)
    np.testing.assert_allclose(out(pruned, x), out(model, x), atol=1e-6)


def test_unet_with_transposed_convolutions():
    keras.utils.set_random_seed(0)
    model = build_unet((32, 32, 1), width=4, depth=2)
    layers = prunable_layers(model)
    assert {"enc1_conv1", "dec1_conv2"} <= {p.producer for p in layers}
    for p in layers[:3]:
        kill(model, p.producer, p.activation, [1])
    keep = {
        p.producer: np.delete(np.arange(model.get_layer(p.producer).output.shape[-1]), 1) for p in layers[:3]
    }
    x = inputs(model)
    pruned, _ = prune_channels(model, keep)
    np.testing.assert_allclose(out(pruned, x), out(model, x), atol=1e-5)
