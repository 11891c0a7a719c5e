"""Registry of trainable architectures (the model-zoo issue adds the paper's eight backbones)."""

from __future__ import annotations

from collections.abc import Callable

import keras

from train.config import TrainConfig
from train.custom_cnn import build_custom_cnn

#: name -> builder(input_shape, n_classes, weight_decay=..., **model_args)
MODELS: dict[str, Callable[..., keras.Model]] = {"custom_cnn": build_custom_cnn}


def build_model(config: TrainConfig) -> keras.Model:
    """Builds the architecture a config names, sized by its preprocessing spec and label set."""
    try:
        builder = MODELS[config.model]
    except KeyError:
        from cxr_edge.errors import SpecError

        raise SpecError("unknown model", expected=f"one of {sorted(MODELS)}", received=config.model) from None
    return builder(
        config.preprocess.input_shape,
        len(config.labels),
        weight_decay=config.weight_decay,
        **config.model_args,
    )
