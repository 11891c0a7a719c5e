"""A source adversary with gradient reversal (Ganin et al., JMLR 2016), conditional on the class.

The classifier's pooled features feed a small head that predicts which *source* an image came from.
A gradient-reversal layer between them passes the features forward unchanged and multiplies the
gradient coming back by ``-strength``: the head learns to recognise the hospital, and the features
learn to make that impossible.

In the kit source and class are confounded (bacterial pneumonia only from Kermany, covid only from
Hannover and figure collections), so an adversary that predicts the source from the features alone
would also erase the class. The head therefore predicts the source *given the class* (as in the
conditional adversarial networks of Li et al., ECCV 2018): it has one source softmax per class and
the loss uses only the true class's one. A class with a single training source contributes nothing.

Keras 3 ops only (``keras.ops.stop_gradient``), so it trains under the TensorFlow, JAX and PyTorch
backends. The run directory's ``best.keras`` holds the classifier alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from cxr_edge.dataset.manifest import Record
from cxr_edge.train.config import TrainConfig

OUTPUT = "source"
FEATURE_LAYER = "head_gap"


@keras.saving.register_keras_serializable(package="cxr_edge")
class GradientReversal(layers.Layer):
    """Identity forward; gradient multiplied by ``-strength`` backward."""

    def __init__(self, strength: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.strength = float(strength)

    def call(self, x):
        # forward: (1 + s) x - s x = x; backward: the stopped term has no gradient, leaving -s.
        return ops.stop_gradient(x * (1.0 + self.strength)) - x * self.strength

    def get_config(self):
        return super().get_config() | {"strength": self.strength}


@keras.saving.register_keras_serializable(package="cxr_edge")
class ConditionalSourceLoss(keras.losses.Loss):
    """Cross-entropy of the source softmax of the true class (targets one-hot over class x source)."""

    def __init__(self, n_classes: int, n_sources: int, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.n_sources = int(n_classes), int(n_sources)

    def call(self, y_true, y_pred):
        shape = (-1, self.n_classes, self.n_sources)
        logp = ops.log_softmax(ops.reshape(y_pred, shape), axis=-1)
        return -ops.sum(ops.reshape(y_true, shape) * logp, axis=(1, 2))

    def get_config(self):
        return super().get_config() | {"n_classes": self.n_classes, "n_sources": self.n_sources}


def with_source_adversary(
    model: keras.Model, n_classes: int, n_sources: int, strength: float, hidden: int = 64
) -> keras.Model:
    """The classifier plus an adversary head on its pooled features; outputs ``probs`` and ``source``."""
    features = model.get_layer(FEATURE_LAYER).output
    x = GradientReversal(strength, name="adv_reverse")(features)
    x = layers.Dense(hidden, activation="relu", name="adv_hidden")(x)
    logits = layers.Dense(n_classes * n_sources, dtype="float32", name=OUTPUT)(x)
    return keras.Model(model.input, {"probs": model.output, OUTPUT: logits}, name=f"{model.name}_adv")


def classifier_of(model: keras.Model) -> keras.Model:
    """The classifier inside an adversarial model (input -> ``probs``), sharing its weights."""
    if not isinstance(model.output, dict):
        return model
    return keras.Model(model.input, model.get_layer("probs").output, name=model.name.removesuffix("_adv"))


def training_sources(records: Sequence[Record]) -> tuple[str, ...]:
    """The sources the adversary tells apart (sorted)."""
    return tuple(sorted({r.source for r in records}))


def source_targets(
    config: TrainConfig, records: Sequence[Record], sources: Sequence[str]
) -> dict[str, np.ndarray]:
    """One-hot (class, source) targets, ``(n, K * S)``; sources outside ``sources`` get none (zeros)."""
    labels = {lab: i for i, lab in enumerate(config.labels)}
    index = {s: i for i, s in enumerate(sources)}
    out = np.zeros((len(records), len(labels) * len(sources)), dtype=np.float32)
    for row, r in enumerate(records):
        if r.source in index:
            out[row, labels[r.label] * len(sources) + index[r.source]] = 1.0
    return {OUTPUT: out}
