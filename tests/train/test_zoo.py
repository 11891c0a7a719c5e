"""Every architecture builds, trains one step, converts to TFLite and matches Keras, at a tiny input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cxr_edge.convert.gates import gate, parity
from cxr_edge.convert.tflite import Quant, to_tflite_variants
from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.runtime.engine import Engine
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.zoo import PRESETS, apply_weight_decay, build_model, preset, transfer_model

pytestmark = pytest.mark.train


def tiny_config(name: str, labels=("covid", "normal", "pneumonia_unknown"), **kw) -> TrainConfig:
    p = preset(name)
    # 64 px for backbones: at 32 px their last blocks are 1x1, and BatchNorm over 2 images x 1 pixel
    # has near-zero variance, so even one small training step can blow DenseNet up.
    size = max(p.min_size, 32 if p.application is None else 64)
    spec = PreprocessSpec(input_size=(size, size), channels=p.channels)
    return TrainConfig(model=name, labels=labels, preprocess=spec, **kw)


#: 1-3 min each on 2 cores (conversion of 700+ layers): tested in test_zoo_large.py, a file of their own, so
#: that `pytest -n auto --dist loadfile` runs them beside this file instead of after it.
SLOW = {"densenet201", "inception_resnet_v2", "nasnet_mobile"}


@pytest.mark.parametrize("name", sorted(set(PRESETS) - SLOW))
def test_architecture_builds_trains_one_step_and_converts(name, tmp_path):
    check_architecture(name, tmp_path)


def check_architecture(name: str, tmp_path) -> None:
    """Builds the preset, trains one small step, converts every variant and checks it against Keras."""
    keras.utils.set_random_seed(0)
    config = tiny_config(name)
    model = build_model(config)
    assert model.count_params() == preset(name).params  # the registry's count is the real one
    assert model.get_layer("features").output.shape[-1] in (512, 1024)
    assert model.output_shape == (None, 3)
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta <= {0.9}  # ImageNet-style 0.99+ leaves inference statistics stale on small data
    apply_weight_decay(model, 1e-4)
    assert len(model.losses) > 0  # L2 attached to the kernels
    # A small step: with 2 random images, BatchNorm gradients of deep nets (DenseNet) explode at 1e-3.
    # run_eagerly: tracing the train step of a 700-layer graph costs more than the step itself.
    model.compile(
        optimizer=keras.optimizers.SGD(1e-5, momentum=0.9), loss="categorical_crossentropy", run_eagerly=True
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *config.preprocess.input_shape)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    # All variants from one export; each is gated against Keras on the same inputs.
    flatbuffers = to_tflite_variants(model, list(Quant), calibration=x, outputs=("probs", "features"))
    reference = keras.ops.convert_to_numpy(model(x, training=False))
    for quant, data in flatbuffers.items():
        file = tmp_path / f"{name}-{quant}.tflite"
        file.write_bytes(data)
        engine = Engine(file)
        assert set(engine.output_specs) == {"probs", "features"}
        assert engine.input_spec.dtype == {"int8": "int8", "uint8": "uint8"}.get(quant.value, "float32")
        got = np.stack([engine(xi) for xi in x])
        verdict = gate(parity(reference, got, [0, 1, 2, 0], ["a", "b", "c"]))
        assert isinstance(verdict["passed"], bool)
        np.testing.assert_allclose(got, reference, atol=TOLERANCE[quant])


#: Keras vs TFLite probability tolerance per variant at these tiny, random-weight sizes.
TOLERANCE = {
    Quant.FP32: 1e-4,
    Quant.FP16: 5e-3,
    Quant.DYNAMIC_INT8: 0.05,
    Quant.INT8: 0.15,
    Quant.UINT8: 0.15,
}


def test_backbone_weights_load_from_a_local_file(tmp_path):
    keras.utils.set_random_seed(1)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    keras.utils.set_random_seed(2)  # a different random init, so equality proves the file was read
    model = build_model(tiny_config("vgg16", weights=str(path)))
    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0], base.get_layer("block1_conv1").get_weights()[0]
    )
    with pytest.raises(SpecError, match="weights file not found"):
        build_model(tiny_config("vgg16", weights=str(tmp_path / "missing.h5")))


def test_transfer_keeps_the_body_and_replaces_the_head():
    keras.utils.set_random_seed(0)
    stage1 = build_model(tiny_config("mobilenet_v2", labels=("normal", "pneumonia_unknown")))
    stage2 = transfer_model(stage1, tiny_config("mobilenet_v2"))
    assert stage1.output_shape == (None, 2) and stage2.output_shape == (None, 3)
    np.testing.assert_array_equal(
        stage2.get_layer("Conv1").get_weights()[0], stage1.get_layer("Conv1").get_weights()[0]
    )
    assert not np.array_equal(
        stage2.get_layer("head_sepconv").get_weights()[0], stage1.get_layer("head_sepconv").get_weights()[0]
    )


def test_transfer_refuses_mismatched_inputs():
    stage1 = build_model(tiny_config("custom_cnn", labels=("normal", "pneumonia_unknown")))
    other = TrainConfig(preprocess=PreprocessSpec(input_size=(64, 64)))
    with pytest.raises(SpecError, match="inputs differ"):
        transfer_model(stage1, other)


def test_input_checks():
    with pytest.raises(SpecError, match="at least 75"):
        build_model(
            TrainConfig(model="inception_v3", preprocess=PreprocessSpec(input_size=(64, 64), channels=3))
        )
    with pytest.raises(SpecError, match="3-channel"):
        build_model(TrainConfig(model="vgg16", preprocess=PreprocessSpec(input_size=(64, 64), channels=1)))
    with pytest.raises(SpecError, match="unknown model"):
        build_model(TrainConfig(model="resnet50"))
    with pytest.raises(SpecError, match="no layer"):
        build_model(tiny_config("vgg16", model_args={"truncate_at": "block9_conv1"}))


def test_plain_backbones_from_random_init_get_he_kernels_and_the_signal_survives():
    from cxr_edge.train.zoo import build_backbone, preset

    keras.utils.set_random_seed(0)
    base = build_backbone(preset("vgg16"), (32, 32, 3))
    conv = base.get_layer("block5_conv3")
    fan_in = int(np.prod(conv.kernel.shape[:-1]))
    std = float(np.std(keras.ops.convert_to_numpy(conv.kernel)))
    assert std == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.1)  # He-normal, not Glorot (~0.6x)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    features = keras.ops.convert_to_numpy(base(x))
    assert float(np.std(features)) > 1e-2  # Glorot leaves ~1e-3 after 13 ReLU layers
    mobilenet = build_backbone(preset("mobilenet_v2"), (32, 32, 3))  # has BN: left as Keras builds it
    assert mobilenet.get_layer("Conv1").kernel.shape[-1] == 32
