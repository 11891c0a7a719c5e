"""Channel surgery on Keras 3 functional models: remove output channels for real.

Given, per prunable layer, the output channels to keep, :func:`prune_channels` builds the smaller
model and copies the kept weights. Channel sets are propagated through the graph:

* producers choose their output channels: ``Conv2D``, ``SeparableConv2D`` (pointwise filters; the
  depthwise kernel and the pointwise rows follow the input, with the depth multiplier),
  ``Conv2DTranspose``, ``Dense``;
* ``DepthwiseConv2D`` output channels follow its input channels (``c * multiplier + m``);
* channel-wise layers pass the set through: BatchNormalization, activations, dropout, padding,
  cropping, pooling, global pooling, up-sampling;
* ``Concatenate`` (last axis) offsets each branch's channels, as in Inception and DenseNet;
* ``Add``/``Multiply``/``Subtract``/``Average``/``Maximum``/``Minimum`` and Inception-ResNet's
  ``CustomScaleLayer`` couple their inputs: all inputs must keep the same channels (prune coupled
  layers together, or leave them alone), otherwise :class:`CouplingError`;
* ``Flatten`` -> ``Dense`` keeps the rows of every kept channel at every position (rows are
  interleaved h, w, c).

**Constant channels.** A removed channel whose activation is a known constant ``v`` (a dead ReLU
gives 0; BatchNorm with gamma 0 gives ``relu(beta)``) is folded into the bias of the next mixing
layer (``bias += v * sum of the kernel taps``), so removing it changes nothing. Constants pass through
channel-wise layers (computed with the layer itself) and depthwise convolutions. The fold is exact for
dense layers, 1x1 and 'valid' convolutions and whenever ``v`` is 0; through zero padding or a
'same'-padded k x k convolution a non-zero constant differs on the border pixels, and the report
counts those folds as approximate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import keras
import numpy as np

from cxr_edge.errors import SpecError

PRODUCERS = ("Conv2D", "SeparableConv2D", "Conv2DTranspose", "Dense")
PASS_THROUGH = (
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout2D",
    "ZeroPadding2D",
    "Cropping2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "UpSampling2D",
)
ELEMENTWISE_PAIRS = ("Add", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "CustomScaleLayer")
_SPATIAL = ("ZeroPadding2D",)  # changes a constant channel on the border


class CouplingError(SpecError):
    """Inputs of an element-wise merge (Add...) would keep different channels."""


@dataclass
class SurgeryReport:
    """What the surgery did.

    Attributes:
        removed: Channels removed per producer layer.
        folded: Constant channels folded into a consumer's bias.
        approximate: Folds that are exact except on border pixels.
    """

    removed: dict[str, int] = field(default_factory=dict)
    folded: int = 0
    approximate: int = 0


@dataclass
class _Node:
    name: str
    cls: str
    inputs: list[str]
    layer: keras.layers.Layer


def graph(model: keras.Model) -> list[_Node]:
    """The model's layers in topological order with the names of the layers feeding each."""
    config = model.get_config()
    nodes = []
    for entry in config["layers"]:
        inbound = entry.get("inbound_nodes") or []
        if len(inbound) > 1:
            raise SpecError(
                "shared layers are not supported", expected="each layer called once", received=entry["name"]
            )
        inputs = [h[0] for h in _histories(inbound[0])] if inbound else []
        nodes.append(_Node(entry["name"], entry["class_name"], inputs, model.get_layer(entry["name"])))
    return nodes


def _histories(obj):
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            yield obj["config"]["keras_history"]
        else:
            for v in obj.values():
                yield from _histories(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _histories(v)


def channels(layer: keras.layers.Layer) -> int:
    """Output channels (last axis) of a layer."""
    return int(layer.output.shape[-1])


def prune_channels(
    model: keras.Model,
    keep: Mapping[str, np.ndarray],
    *,
    constants: Mapping[str, Mapping[int, float]] | None = None,
) -> tuple[keras.Model, SurgeryReport]:
    """Builds ``model`` without the channels that ``keep`` leaves out.

    Args:
        model: A functional Keras model.
        keep: ``{producer layer name: sorted output channel indices to keep}``.
        constants: ``{layer name: {output channel: constant value}}`` for removed channels whose
            output at that layer is known to be constant (e.g. measured dead activations).

    Returns:
        ``(pruned model, report)``.
    """
    nodes = graph(model)
    by_name = {n.name: n for n in nodes}
    unknown = sorted(set(keep) - set(by_name))
    if unknown:
        raise SpecError(
            "keep names unknown layers", expected="layer names of the model", received=str(unknown)
        )
    constants = {k: dict(v) for k, v in (constants or {}).items()}
    kept: dict[str, np.ndarray] = {}
    const: dict[str, dict[int, float]] = {}  # removed channels with a known value at each layer output
    exact: dict[str, dict[int, bool]] = {}
    in_kept: dict[str, list[np.ndarray]] = {}
    new_config: dict[str, dict] = {}
    report = SurgeryReport()
    folds: dict[str, tuple[np.ndarray, bool]] = {}  # consumer -> bias delta (original out channels)

    for node in nodes:
        layer, cls = node.layer, node.cls
        ins = [kept[i] for i in node.inputs]
        in_kept[node.name] = ins
        n_out = channels(layer) if cls != "InputLayer" else int(layer.output.shape[-1])
        if cls == "InputLayer":
            kept[node.name] = np.arange(n_out)
        elif cls in PRODUCERS:
            _check_producer(layer, cls)
            out = np.asarray(keep.get(node.name, np.arange(n_out)), dtype=int)
            if out.size == 0 or out.min() < 0 or out.max() >= n_out or np.any(np.diff(out) <= 0):
                raise SpecError(
                    f"invalid channels to keep for {node.name}",
                    expected=f"sorted indices in [0, {n_out})",
                    received=f"{out.size} indices",
                )
            kept[node.name] = out
            if out.size < n_out:
                report.removed[node.name] = int(n_out - out.size)
                key = "units" if cls == "Dense" else "filters"
                new_config[node.name] = {key: int(out.size)}
            removed = set(range(channels(by_name[node.inputs[0]].layer))) - set(ins[0].tolist())
            delta, is_exact = _fold(layer, cls, node.inputs[0], removed, by_name, const, exact)
            if delta is not None:
                folds[node.name] = (delta, is_exact)
                report.folded += 1
                report.approximate += int(not is_exact)
                if not layer.use_bias:
                    new_config.setdefault(node.name, {})["use_bias"] = True
        elif cls == "DepthwiseConv2D":
            m = layer.depth_multiplier
            kept[node.name] = (ins[0][:, None] * m + np.arange(m)[None]).ravel()
            _propagate_depthwise(node, layer, const, exact)
        elif cls in PASS_THROUGH:
            kept[node.name] = ins[0]
            _propagate_channelwise(node, layer, cls, const, exact, n_out)
        elif cls == "Concatenate":
            axis = layer.axis if layer.axis >= 0 else len(layer.output.shape) + layer.axis
            if axis != len(layer.output.shape) - 1:
                raise SpecError(
                    "only channel concatenation is supported", expected="axis -1", received=str(layer.axis)
                )
            offsets = np.cumsum([0] + [channels(by_name[i].layer) for i in node.inputs[:-1]])
            kept[node.name] = np.concatenate([k + o for k, o in zip(ins, offsets, strict=True)])
            const[node.name] = {
                c + o: v
                for i, o in zip(node.inputs, offsets, strict=True)
                for c, v in const.get(i, {}).items()
            }
            exact[node.name] = {
                c + o: e
                for i, o in zip(node.inputs, offsets, strict=True)
                for c, e in exact.get(i, {}).items()
            }
        elif cls in ELEMENTWISE_PAIRS:
            if any(not np.array_equal(ins[0], k) for k in ins[1:]):
                raise CouplingError(
                    f"{node.name} ({cls}) merges inputs that keep different channels",
                    expected="coupled layers pruned together",
                    received=", ".join(node.inputs),
                )
            kept[node.name] = ins[0]
        elif cls == "Flatten":
            spatial = int(np.prod(layer.input.shape[1:-1]))
            c = int(layer.input.shape[-1])
            kept[node.name] = (np.arange(spatial)[:, None] * c + ins[0][None]).ravel()
        else:
            if any(k.size < channels(by_name[i].layer) for k, i in zip(ins, node.inputs, strict=True)):
                raise SpecError(
                    f"cannot prune through {cls} ({node.name})", expected="a supported layer", received=cls
                )
            kept[node.name] = np.arange(n_out)
        # Measured constants override the propagated ones for this layer's output.
        for c, v in constants.get(node.name, {}).items():
            const.setdefault(node.name, {})[int(c)] = float(v)
            exact.setdefault(node.name, {})[int(c)] = True

    pruned = _clone(model, new_config)
    for node in nodes:
        weights = node.layer.get_weights()
        if not weights:
            continue
        sliced = _slice(node, weights, kept[node.name], in_kept[node.name])
        if node.name in folds:
            sliced = _add_bias(node.cls, sliced, folds[node.name][0][kept[node.name]], node.layer)
        pruned.get_layer(node.name).set_weights(sliced)
    return pruned, report


def _check_producer(layer, cls):
    if cls == "Conv2D" and getattr(layer, "groups", 1) != 1:
        raise SpecError("grouped convolutions are not supported", expected="groups=1", received=layer.name)


def _clone(model: keras.Model, new_config: dict[str, dict]) -> keras.Model:
    def clone(layer):
        config = layer.get_config()
        config.update(new_config.get(layer.name, {}))
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _slice(
    node: _Node, weights: list[np.ndarray], out: np.ndarray, ins: list[np.ndarray]
) -> list[np.ndarray]:
    cls, layer = node.cls, node.layer
    src = ins[0] if ins else None
    if cls == "Conv2D":
        w = [weights[0][:, :, src][..., out]] + ([weights[1][out]] if layer.use_bias else [])
    elif cls == "SeparableConv2D":
        m = layer.depth_multiplier
        rows = (src[:, None] * m + np.arange(m)[None]).ravel()
        w = [weights[0][:, :, src, :], weights[1][:, :, rows][..., out]] + (
            [weights[2][out]] if layer.use_bias else []
        )
    elif cls == "DepthwiseConv2D":
        w = [weights[0][:, :, src, :]] + ([weights[1][out]] if layer.use_bias else [])
    elif cls == "Conv2DTranspose":
        w = [weights[0][:, :, out][:, :, :, src]] + ([weights[1][out]] if layer.use_bias else [])
    elif cls == "Dense":
        w = [weights[0][src][:, out]] + ([weights[1][out]] if layer.use_bias else [])
    elif all(x.ndim == 1 and x.shape[0] == channels(layer) for x in weights):
        w = [x[out] for x in weights]  # BatchNormalization and other per-channel parameters
    else:
        raise SpecError(
            f"cannot slice the weights of {cls} ({node.name})",
            expected="a supported layer",
            received=str([x.shape for x in weights]),
        )
    return [np.ascontiguousarray(x) for x in w]


def _add_bias(cls: str, sliced: list[np.ndarray], delta: np.ndarray, layer) -> list[np.ndarray]:
    if layer.use_bias:
        sliced[-1] = sliced[-1] + delta
    else:
        sliced.append(delta.astype(sliced[0].dtype))
    return sliced


def _fold(layer, cls, src_name, removed, by_name, const, exact) -> tuple[np.ndarray | None, bool]:
    """Bias change (per original output channel) replacing the removed input channels that are constant."""
    values = {c: v for c, v in const.get(src_name, {}).items() if c in removed and v != 0}
    if not values:
        return None, True
    if cls == "Dense" and layer.input.shape[-1] != channels(by_name[src_name].layer):
        return None, True  # after Flatten the rows are per position: not folded
    weights = layer.get_weights()
    delta = np.zeros(channels(layer), dtype=np.float64)
    for c, v in values.items():
        if cls == "Dense":
            delta += v * weights[0][c]
        elif cls == "Conv2D":
            delta += v * weights[0][:, :, c, :].sum(axis=(0, 1))
        elif cls == "SeparableConv2D":
            m = layer.depth_multiplier
            depth = weights[0][:, :, c, :].sum(axis=(0, 1))  # (m,)
            delta += v * (depth[:, None] * weights[1][0, 0, c * m : (c + 1) * m, :]).sum(axis=0)
        elif cls == "Conv2DTranspose":
            delta += v * weights[0][:, :, :, c].sum(axis=(0, 1))  # interior pixels see every tap
    kernel = int(np.prod(getattr(layer, "kernel_size", (1,))))
    spatial = kernel > 1 and (cls == "Conv2DTranspose" or getattr(layer, "padding", "valid") == "same")
    upstream = all(exact.get(src_name, {}).get(c, True) for c in values)
    return delta, upstream and not spatial


def _propagate_channelwise(node, layer, cls, const, exact, n_out):
    values = const.get(node.inputs[0], {})
    if not values:
        return
    if (
        cls
        in (
            "GlobalAveragePooling2D",
            "GlobalMaxPooling2D",
            "MaxPooling2D",
            "AveragePooling2D",
            "Cropping2D",
            "UpSampling2D",
        )
        or cls in _SPATIAL
        or "Dropout" in cls
        or cls == "GaussianNoise"
    ):
        const[node.name] = dict(values)
        exact[node.name] = {
            c: exact.get(node.inputs[0], {}).get(c, True) and (cls not in _SPATIAL or values[c] == 0)
            for c in values
        }
        return
    probe = np.zeros((1, 1, 1, n_out), dtype=np.float32)
    for c, v in values.items():
        probe[..., c] = v
    out = keras.ops.convert_to_numpy(layer(probe, training=False))[0, 0, 0]
    const[node.name] = {c: float(out[c]) for c in values}
    exact[node.name] = dict(exact.get(node.inputs[0], {}))


def _propagate_depthwise(node, layer, const, exact):
    values = const.get(node.inputs[0], {})
    if not values:
        return
    weights = layer.get_weights()
    m = layer.depth_multiplier
    same = layer.padding == "same" and np.prod(layer.kernel_size) > 1
    const[node.name], exact[node.name] = {}, {}
    for c, v in values.items():
        for j in range(m):
            out = c * m + j
            const[node.name][out] = float(
                v * weights[0][:, :, c, j].sum() + (weights[1][out] if layer.use_bias else 0)
            )
            exact[node.name][out] = exact.get(node.inputs[0], {}).get(c, True) and (not same or v == 0)
