"""Accuracy gates catch a broken calibration; device heat maps equal Keras Grad-CAM exactly."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxr_edge.bundle.folder import Bundle
from cxr_edge.convert.gates import GateError, gate, parity
from cxr_edge.convert.tflite import to_tflite
from cxr_edge.dataset.samples import load_samples
from cxr_edge.ops.cam import class_activation_map, place
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.runtime.engine import Engine
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.zoo import build_model

pytestmark = pytest.mark.train
TINY = TrainConfig(
    preprocess=PreprocessSpec(input_size=(32, 32), border=0.1),
    model_args={"depth": 3, "base_filters": 8},
    epochs=2,
    batch_size=8,
    seed=2,
)


@pytest.fixture(scope="module")
def run(kit_manifest, split, tmp_path_factory):
    from cxr_edge.train.fit import train_run

    return train_run(
        TINY, kit_manifest, split, tmp_path_factory.mktemp("run") / "r", max_per_part=40, progress=False
    )


def grad_cam(model: keras.Model, x: np.ndarray, class_index: int) -> np.ndarray:
    """Reference Grad-CAM with GradientTape on the pre-softmax score (Selvaraju et al. 2017)."""
    dense = model.get_layer("probs")
    probe = keras.Model(model.input, [model.get_layer("features").output, dense.input])
    with tf.GradientTape() as tape:
        features, pooled = probe(x[None], training=False)
        score = tf.matmul(pooled, dense.kernel) + dense.bias
        target = score[:, class_index]
    grads = tape.gradient(target, features)[0].numpy()
    alpha = grads.mean(axis=(0, 1))
    cam = np.maximum((features[0].numpy() * alpha).sum(axis=-1), 0)
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.mark.parametrize("name", ["custom_cnn", "vgg16"])
def test_cam_from_dense_weights_is_grad_cam(name):
    keras.utils.set_random_seed(3)
    channels = 1 if name == "custom_cnn" else 3
    model = build_model(
        TrainConfig(model=name, preprocess=PreprocessSpec(input_size=(64, 64), channels=channels))
    )
    x = np.random.default_rng(0).normal(size=(64, 64, channels)).astype(np.float32)
    features = keras.ops.convert_to_numpy(
        keras.Model(model.input, model.get_layer("features").output)(x[None])
    )[0]
    weights = model.get_layer("probs").get_weights()[0]
    for c in range(3):
        np.testing.assert_allclose(
            class_activation_map(features, weights, c), grad_cam(model, x, c), atol=1e-5
        )


def test_device_heat_map_matches_keras_grad_cam(run, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe

    out = build_bundle(
        BundleRecipe(
            runs=[run],
            manifest=kit_manifest,
            split=split,
            quants=("fp32",),
            member_quant="fp32",
            n_calibration=8,
            max_per_part=40,
        ),
        tmp_path / "b",
        progress=False,
    )
    bundle = Bundle.load(out)
    entry = bundle.manifest.models[0]
    assert set(entry.outputs) == {"probs", "features"}
    model = keras.models.load_model(run / "best.keras")
    sample = load_samples()[0].file
    pred = Predictor(bundle).predict_file(sample)
    from cxr_edge.imaging.reader import read_image
    from cxr_edge.ops.preprocess import preprocess

    image, _ = read_image(sample)
    x = preprocess(image, TINY.preprocess)
    expected = grad_cam(model, x, bundle.labels.index(pred.label))
    np.testing.assert_allclose(pred.cam, expected, atol=1e-4)
    heat = pred.heatmap(image.shape)
    x0, y0, x1, y1 = pred.cam_region
    assert heat.shape == image.shape and heat[:y0].max() == 0 and heat[y0:y1, x0:x1].max() > 0.9


def test_broken_calibration_fails_the_gate(run, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.train.data import load_images, preprocess_all
    from cxr_edge.train.fit import load_task

    model = keras.models.load_model(run / "best.keras")
    task = load_task(TINY, kit_manifest, split, max_per_part=40)
    x_val = preprocess_all(load_images(task.parts["val"], progress=False), TINY.preprocess)
    y_val = np.array([TINY.labels.index(r.label) for r in task.parts["val"]])
    broken = x_val[:8] * 0.02  # calibrated on near-zero inputs: real activations saturate the int8 range
    file = tmp_path / "broken.tflite"
    file.write_bytes(to_tflite(model, "int8", broken))
    engine = Engine(file)
    converted = np.stack([engine(xi) for xi in x_val])
    verdict = gate(parity(model.predict(x_val, verbose=0), converted, y_val, TINY.labels))
    assert not verdict["passed"] and verdict["failures"]

    args = dict(quants=("int8",), n_calibration=8, max_per_part=40)
    with pytest.raises(GateError, match="failed its accuracy gate") as info:
        build_bundle(
            BundleRecipe(runs=[run], manifest=kit_manifest, split=split, **args),
            tmp_path / "bundle",
            progress=False,
            calibration=broken,
        )
    assert not (tmp_path / "bundle").exists()  # nothing half-written
    report = json.loads((tmp_path / "bundle.gate-report.json").read_text())
    assert report["worst_layers"] and report["worst_layers"][0]["rmse_per_step"] > 0
    assert "worst layers" in str(info.value)
    kept = build_bundle(
        BundleRecipe(runs=[run], manifest=kit_manifest, split=split, allow_degraded=True, **args),
        tmp_path / "kept",
        progress=False,
        calibration=broken,
    )
    g = Bundle.load(kept).manifest.models[0].gate
    assert g["passed"] is False and g["allowed_degraded"] is True


def test_place_puts_the_map_on_its_region():
    heat = place(np.ones((4, 4), np.float32), (100, 80), (10, 20, 50, 90))
    assert heat.shape == (100, 80) and heat[20:90, 10:50].min() == 1.0 and heat.sum() == 40 * 70
