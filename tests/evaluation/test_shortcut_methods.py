"""Methods against the source shortcut: balanced sampling, acquisition augmentation, histogram
equalisation, the gradient-reversal source adversary."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import PreprocessSpec, preprocess_u8

pytestmark = pytest.mark.train


def test_balanced_weights_give_classes_then_sources_equal_shares():
    from cxr_edge.train.data import balanced_weights

    y = np.array([0] * 90 + [0] * 10 + [1] * 50)
    sources = np.array(["big"] * 90 + ["small"] * 10 + ["other"] * 50)
    w = balanced_weights(y, sources)
    assert w.sum() == pytest.approx(1.0)
    assert w[:90].sum() == pytest.approx(0.25) and w[90:100].sum() == pytest.approx(0.25)
    assert w[100:].sum() == pytest.approx(0.5)
    assert np.allclose(w[:90], w[0]) and w[95] == pytest.approx(9 * w[0])


def test_balanced_sequence_draws_cells_equally_and_keeps_epoch_length():
    from cxr_edge.train.data import CxrSequence, Inputs, balanced_weights

    n = 200
    y = np.array([0] * 180 + [1] * 20)
    sources = np.array(["a"] * 180 + ["b"] * 20)
    inputs = Inputs([np.zeros((8, 8), np.float32)] * n, [None] * n)
    spec = PreprocessSpec(input_size=(8, 8), clahe=False, median=0)
    seq = CxrSequence(
        inputs, y, spec, 2, batch_size=50, shuffle=True, sample_weights=balanced_weights(y, sources)
    )
    drawn = np.concatenate([seq[i][1].argmax(axis=1) for i in range(len(seq))])
    assert len(drawn) == n and abs(drawn.mean() - 0.5) < 0.12  # 10 % minority drawn about half the time
    seq.on_epoch_end()
    again = np.concatenate([seq[i][1].argmax(axis=1) for i in range(len(seq))])
    assert len(again) == n


def test_augmentation_strengths_are_seeded_bounded_and_checked():
    from cxr_edge.train.augment import make_augment

    rng_image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    for strength in ("mild", "acquisition", "noise", "decode"):
        a = [make_augment(np.random.default_rng(0), strength)(rng_image) for _ in range(2)]
        assert np.array_equal(a[0], a[1])  # same seed, same result
        assert a[0].dtype == np.float32 and a[0].shape == (64, 64)
        assert a[0].min() >= 0.0 and a[0].max() <= 1.0
    strong = make_augment(np.random.default_rng(3), "acquisition")
    mild = make_augment(np.random.default_rng(3), "mild")
    change = [np.abs(strong(rng_image) - rng_image).mean() for _ in range(20)]
    gentle = [np.abs(mild(rng_image) - rng_image).mean() for _ in range(20)]
    assert np.mean(change) > np.mean(gentle)  # acquisition varies images more than mild
    with pytest.raises(SpecError, match="augmentation strength"):
        make_augment(np.random.default_rng(0), "wild")


def test_noise_and_decode_augmentations_add_what_they_name():
    from cxr_edge.train.augment import _decode, _noise

    smooth = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))
    rng = np.random.default_rng(4)
    noisy = [_noise(smooth, rng) for _ in range(40)]
    # Every noise model adds pixel-level variation that a smooth ramp does not have.
    assert all(np.abs(np.diff(n, axis=0)).mean() > 1e-3 for n in noisy)
    decoded = [_decode(smooth, rng) for _ in range(40)]
    assert all(d.shape == smooth.shape for d in decoded)
    # Resampling and lossy codecs keep the picture: a ramp stays a ramp within a few grey levels.
    assert max(np.abs(np.asarray(d, dtype=np.float32) - smooth).mean() for d in decoded) < 0.03


def test_histogram_equalisation_standardises_the_intensity_distribution():
    dark = np.clip(np.random.default_rng(0).normal(0.2, 0.05, (128, 128)), 0, 1).astype(np.float32)
    bright = np.clip(dark * 0.5 + 0.5, 0, 1).astype(np.float32)
    spec = PreprocessSpec(input_size=(64, 64), clahe=False, median=0, equalize=True)
    a, b = preprocess_u8(dark, spec), preprocess_u8(bright, spec)
    assert abs(float(a.mean()) - float(b.mean())) < 8  # equalised: about the same distribution (0..255)
    off = dataclasses.replace(spec, equalize=False)
    assert abs(float(preprocess_u8(dark, off).mean()) - float(preprocess_u8(bright, off).mean())) > 50
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert PreprocessSpec.from_dict({"input_size": [64, 64]}).equalize is False  # old bundles


def test_gradient_reversal_is_identity_forward_and_negates_gradients():
    import keras
    import tensorflow as tf

    from cxr_edge.train.adversary import GradientReversal

    x = tf.constant([[1.0, -2.0, 3.0]])
    layer = GradientReversal(0.3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    assert np.allclose(y.numpy(), x.numpy())
    assert np.allclose(tape.gradient(loss, x).numpy(), [[-0.3, -0.6, -0.9]], atol=1e-6)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).strength == 0.3


def test_conditional_source_loss_uses_only_the_true_class_softmax():
    from cxr_edge.train.adversary import ConditionalSourceLoss

    loss = ConditionalSourceLoss(n_classes=2, n_sources=2)
    y_true = np.array([[0, 1, 0, 0]], np.float32)  # class 0, source 1
    logits = np.array([[0.0, 0.0, 50.0, -50.0]], np.float32)  # class 1's softmax is irrelevant
    assert float(loss(y_true, logits)) == pytest.approx(np.log(2.0), abs=1e-5)
    confident = np.array([[-10.0, 10.0, 0.0, 0.0]], np.float32)
    assert float(loss(y_true, confident)) < 1e-3


def test_adversarial_training_saves_a_plain_classifier(kit_manifest, tmp_path):
    import json

    import keras

    from cxr_edge.train.config import TrainConfig
    from cxr_edge.train.fit import train_run

    config = TrainConfig.load("configs/triage/adversary.toml")
    spec = dataclasses.replace(config.preprocess, input_size=(32, 32))
    config = dataclasses.replace(
        config, preprocess=spec, model_args={"depth": 2, "base_filters": 4, "dropout": 0.5}, epochs=1
    )
    run = train_run(config, kit_manifest, "splits/kit.csv", tmp_path / "run", max_per_part=24, progress=False)
    model = keras.models.load_model(run / "best.keras")
    assert not isinstance(model.output, dict) and model.output_shape == (None, 3)
    assert not any(layer.name.startswith("adv_") for layer in model.layers)
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_source_loss" in history and "val_probs_loss" in history
    assert json.loads((run / "run.json").read_text())["best_epoch"] == 1
