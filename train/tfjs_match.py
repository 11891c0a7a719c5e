"""Maps a TF.js layers model onto a Keras backbone: pairs layers by graph structure, then assigns weights.

Layers are paired by graph structure, not by name: TF.js models converted from Keras 2 carry Keras 2
auto-names (``conv2d_1`` ... ``conv2d_94`` in Inception-V3) while Keras 3 numbers its auto-named
layers per session. Walking both graphs back from the backbone output through their weighted layers,
input by input, pairs every layer whatever it is called, and checks class, configuration and weight
shapes on the way, so any architecture mismatch is a :class:`SpecError` naming both sides.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.train.tfjs_package import GraphLayer, TfjsModel, parse_topology

# Configuration entries compared between paired layers; the rest (names, initialisers, padding, which
# Keras 3 folds into the convolution for MobileNet-V2's first layer) carries no weight semantics.
_CONFIG_KEYS = ("kernel_size", "strides", "dilation_rate", "depth_multiplier", "activation", "epsilon")


def _source_values(source: TfjsModel, tfjs_name: str) -> dict:
    """The layer's source weights under the Keras 3 variable names."""
    cls = source.layers[tfjs_name].class_name
    return {_source_variable(cls, k): v for k, v in source.weights[tfjs_name].items()}


def _source_variable(class_name: str, variable: str) -> str:
    # Keras 2 called a depthwise convolution's kernel ``depthwise_kernel``; Keras 3 calls it ``kernel``.
    return "kernel" if class_name == "DepthwiseConv2D" and variable == "depthwise_kernel" else variable


def _frontier(layers: dict[str, GraphLayer], weighted: set[str], names, memo: dict) -> list[str]:
    """The nearest weighted layers behind ``names``, in input order, looking through weightless ones."""
    out: list[str] = []
    for name in names:
        if name in weighted:
            found = [name]
        else:
            if name not in memo:
                memo[name] = _frontier(layers, weighted, layers[name].inbound, memo) if name in layers else []
            found = memo[name]
        out.extend(f for f in found if f not in out)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-6)
    return np.ravel(a).tolist() == np.ravel(b).tolist()  # [1, 1] in Keras 2 JSON, (1, 1) in Keras 3


def _check_pair(source: TfjsModel, tfjs_name: str, keras_layer) -> None:
    src = source.layers[tfjs_name]
    where = f"layer {keras_layer.name!r} (TF.js {tfjs_name!r})"
    if src.class_name != keras_layer.__class__.__name__:
        raise SpecError(
            f"{where}: layer kind differs", expected=keras_layer.__class__.__name__, received=src.class_name
        )
    theirs = _source_values(source, tfjs_name)
    ours = {v.name: tuple(v.shape) for v in keras_layer.weights}
    if set(theirs) != set(ours):
        raise SpecError(
            f"{where}: variables differ", expected=str(sorted(ours)), received=str(sorted(theirs))
        )
    for name, shape in ours.items():
        if tuple(theirs[name].shape) != shape:
            raise SpecError(
                f"{where}: {name} shape differs", expected=str(shape), received=str(theirs[name].shape)
            )
    config = keras_layer.get_config()
    for key in _CONFIG_KEYS:
        if key in config and key in src.config:
            a, b = config[key], src.config[key]
            if not _same(a, b):
                raise SpecError(f"{where}: {key} differs", expected=str(a), received=str(b))


def match_layers(source: TfjsModel, target: keras.Model) -> dict[str, str]:
    """Pairs every weighted layer of ``target`` with a layer of ``source`` by graph structure.

    Both graphs are walked back from the target's output (found in the source by name: it is the
    architecture's named backbone output, e.g. ``out_relu`` or ``mixed10``), through weighted layers
    only, pairing the i-th weighted input of one layer with the i-th of its counterpart.

    Returns:
        ``keras layer name -> TF.js layer name`` for every layer of ``target`` that has weights.

    Raises:
        SpecError: the graphs differ (layer kinds, variables, shapes, configuration or wiring).
    """
    ours, our_outputs = parse_topology({"class_name": "Functional", "config": target.get_config()})
    our_weighted = {layer.name for layer in target.layers if layer.weights}
    missing = [o for o in our_outputs if o not in source.layers]
    if missing:
        raise SpecError(
            "the TF.js model lacks the backbone's output layer",
            expected=f"a layer named {missing[0]!r}",
            received=f"outputs {list(source.outputs)}",
        )
    their_weighted = set(source.weights) & set(source.layers)
    memo_ours: dict = {}
    memo_theirs: dict = {}
    pairs: dict[str, str] = {}
    stack = [(our_outputs, our_outputs)]  # the output is named alike on both sides (checked above)
    while stack:
        mine, theirs = stack.pop()
        mine = _frontier(ours, our_weighted, mine, memo_ours)
        theirs = _frontier(source.layers, their_weighted, theirs, memo_theirs)
        if len(mine) != len(theirs):
            raise SpecError(
                "the graphs are wired differently",
                expected=f"{len(mine)} weighted inputs ({', '.join(mine)})",
                received=f"{len(theirs)} ({', '.join(theirs)})",
            )
        for keras_name, tfjs_name in zip(mine, theirs, strict=True):
            if keras_name in pairs:
                if pairs[keras_name] != tfjs_name:
                    raise SpecError(
                        f"layer {keras_name!r} reached from two TF.js layers",
                        expected=pairs[keras_name],
                        received=tfjs_name,
                    )
                continue
            _check_pair(source, tfjs_name, target.get_layer(keras_name))
            pairs[keras_name] = tfjs_name
            stack.append((ours[keras_name].inbound, source.layers[tfjs_name].inbound))
    if set(pairs) != our_weighted or len(set(pairs.values())) != len(pairs):
        raise SpecError(
            "layer map incomplete or not one-to-one",
            expected=f"{len(our_weighted)} backbone layers",
            received=f"{len(pairs)} paired with {len(set(pairs.values()))} TF.js layers",
        )
    # In the backbone's layer order, so the provenance map reads top to bottom.
    return {layer.name: pairs[layer.name] for layer in target.layers if layer.name in pairs}


def transfer(source: TfjsModel, target: keras.Model) -> dict[str, str]:
    """Assigns the source's weights to ``target``'s weighted layers; returns the layer map used."""
    pairs = match_layers(source, target)
    for keras_name, tfjs_name in pairs.items():
        layer = target.get_layer(keras_name)
        values = _source_values(source, tfjs_name)
        layer.set_weights([values[v.name] for v in layer.weights])
    return pairs
