"""APoZ (average percentage of zeros) of each channel after its ReLU, and which channels to remove.

Hu et al. (2016): a channel whose ReLU output is zero most of the time contributes little. APoZ is
measured on the **validation** split (never the test split) on the current model at every pruning
step. Channels whose activation never varies are also reported as constants, so the surgery can fold
them into the next layer's bias instead of losing their contribution.

Two rankings:

* ``layer`` (as the paper describes): each prunable layer loses, cumulatively, ``fraction`` of its
  original channels -- those with the highest APoZ;
* ``global`` (as the authors' code does): all prunable channels are ranked together and the
  ``fraction`` of the total with the highest APoZ is removed, wherever they are (each layer keeps at
  least :data:`MIN_KEEP` of its original channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from cxr_edge.train.prune.graph import ELEMENTWISE_PAIRS, PASS_THROUGH, graph

RELU_ACTIVATIONS = ("relu", "relu6")
CHAIN = ("BatchNormalization", "Dropout", "GaussianDropout", "SpatialDropout2D")
MIN_KEEP = 0.1
_CONSTANT_STD = 1e-6


@dataclass(frozen=True)
class Prunable:
    """A producer whose output channels can be removed, and where its APoZ is measured.

    Attributes:
        producer: Conv/separable conv/dense layer that creates the channels.
        activation: The ReLU layer (possibly the producer itself) whose output APoZ is measured.
    """

    producer: str
    activation: str


def prunable_layers(model: keras.Model) -> list[Prunable]:
    """Producers followed (through BatchNorm/dropout only) by a ReLU and not coupled by Add/Multiply.

    The classifier output (``probs``) and producers feeding element-wise merges, e.g. the projection
    convolutions of MobileNet-V2's residual blocks, are excluded.
    """
    nodes = graph(model)
    consumers: dict[str, list] = {n.name: [] for n in nodes}
    for n in nodes:
        for i in n.inputs:
            consumers[i].append(n)
    by_name = {n.name: n for n in nodes}
    out = []
    for n in nodes:
        if n.cls not in ("Conv2D", "SeparableConv2D", "Conv2DTranspose", "Dense") or not consumers[n.name]:
            continue  # model outputs (the classifier, the mask) keep their channels
        act = n if _is_relu(n) else None
        cur = n
        while act is None and len(consumers[cur.name]) == 1:
            nxt = consumers[cur.name][0]
            if _is_relu(nxt):
                act = nxt
            elif nxt.cls in CHAIN:
                cur = nxt
                continue
            break
        if act is None or _coupled(act.name, consumers, by_name):
            continue
        out.append(Prunable(n.name, act.name))
    return out


def _is_relu(node) -> bool:
    layer = node.layer
    if node.cls == "ReLU":
        return getattr(layer, "negative_slope", 0.0) == 0.0 and getattr(layer, "threshold", 0.0) == 0.0
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return (
        node.cls in ("Activation", "Conv2D", "SeparableConv2D", "Dense", "Conv2DTranspose")
        and name in RELU_ACTIVATIONS
    )


def _coupled(name: str, consumers, by_name) -> bool:
    """Whether a channel change at ``name`` reaches an element-wise merge before any mixing layer."""
    stack, seen = [name], set()
    while stack:
        current = stack.pop()
        for nxt in consumers[current]:
            if nxt.cls in ELEMENTWISE_PAIRS:
                return True
            if (
                nxt.cls in PASS_THROUGH or nxt.cls in ("Concatenate", "DepthwiseConv2D")
            ) and nxt.name not in seen:
                seen.add(nxt.name)
                stack.append(nxt.name)
    return False


@dataclass(frozen=True)
class ApozStats:
    """Per-channel statistics of each prunable activation on the validation inputs."""

    apoz: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    def constants(self) -> dict[str, dict[int, float]]:
        """Channels whose activation does not vary: ``{activation layer: {channel: value}}``."""
        return {
            name: {int(c): float(self.mean[name][c]) for c in np.nonzero(s < _CONSTANT_STD)[0]}
            for name, s in self.std.items()
        }


def measure(model: keras.Model, layers: list[Prunable], x: np.ndarray, batch_size: int = 16) -> ApozStats:
    """APoZ, mean and standard deviation per channel of each prunable activation, over ``x``."""
    names = sorted({p.activation for p in layers})
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    zeros = {n: 0.0 for n in names}
    sums = {n: 0.0 for n in names}
    squares = {n: 0.0 for n in names}
    count = {n: 0 for n in names}
    for start in range(0, len(x), batch_size):
        outs = probe(x[start : start + batch_size], training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        for n, o in zip(names, outs, strict=True):
            a = keras.ops.convert_to_numpy(o).astype(np.float64)
            a = a.reshape(-1, a.shape[-1])
            zeros[n] = zeros[n] + (a <= 0).sum(axis=0)
            sums[n] = sums[n] + a.sum(axis=0)
            squares[n] = squares[n] + (a * a).sum(axis=0)
            count[n] += a.shape[0]
    mean = {n: sums[n] / count[n] for n in names}
    std = {n: np.sqrt(np.maximum(squares[n] / count[n] - mean[n] ** 2, 0.0)) for n in names}
    return ApozStats({n: zeros[n] / count[n] for n in names}, mean, std)


def select(
    layers: list[Prunable],
    stats: ApozStats,
    current: dict[str, np.ndarray],
    original: dict[str, int],
    fraction: float,
    ranking: str = "layer",
) -> dict[str, np.ndarray]:
    """Channels to keep so that ``fraction`` of the original channels are removed in total.

    Args:
        layers: Prunable layers of the current model.
        stats: APoZ of the current model's channels (indexed in the current model).
        current: ``{producer: original indices of its current channels}`` (for bookkeeping).
        original: ``{producer: original channel count}``.
        fraction: Cumulative fraction of the original channels to have removed after this step.
        ranking: ``layer`` or ``global``.

    Returns:
        ``{producer: indices (in the current model) of the channels to keep}``.
    """
    keep = {}
    if ranking == "layer":
        for p in layers:
            target = original[p.producer] - int(np.floor(fraction * original[p.producer]))
            keep[p.producer] = _lowest(stats.apoz[p.activation], max(1, target))
        return keep
    if ranking != "global":
        raise ValueError(f"unknown ranking {ranking!r}: expected 'layer' or 'global'")
    total = sum(original[p.producer] for p in layers)
    to_remove = int(np.floor(fraction * total)) - sum(
        original[p.producer] - len(current[p.producer]) for p in layers
    )
    candidates = []
    for p in layers:
        floor_keep = max(1, int(np.ceil(MIN_KEEP * original[p.producer])))
        removable = len(current[p.producer]) - floor_keep
        order = np.argsort(-stats.apoz[p.activation], kind="stable")[: max(0, removable)]
        candidates += [(stats.apoz[p.activation][c], p.producer, c) for c in order]
    candidates.sort(key=lambda t: -t[0])
    removed: dict[str, set] = {p.producer: set() for p in layers}
    for _, producer, c in candidates[: max(0, to_remove)]:
        removed[producer].add(c)
    for p in layers:
        keep[p.producer] = np.array(
            [c for c in range(len(current[p.producer])) if c not in removed[p.producer]]
        )
    return keep


def _lowest(apoz: np.ndarray, n: int) -> np.ndarray:
    """Sorted indices of the ``n`` channels with the lowest APoZ (ties: the lower index is kept)."""
    return np.sort(np.argsort(apoz, kind="stable")[:n])
