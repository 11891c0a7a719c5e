"""Site calibration as every runtime applies it (numpy only, so the browser and Android mirror it).

A hospital adapts a bundle to its own images with ``cxr-edge site calibrate``
(:mod:`cxr_edge.site.calibrate` fits it); the new bundle's manifest carries the result as its
``site`` section (:class:`SiteCalibration`), which changes two steps of the prediction:

1. **Member heads** (method ``head``): a member with a refitted head computes its probabilities
   from its ``features`` output instead of its own ``probs``:
   ``softmax(mean_hw(features) @ weights + bias)`` -- global average pooling then the dense layer,
   exactly the shipped head's structure (features -> GAP -> dense), with new weights.
2. **Site temperature and bias** (every method), after the ensemble's combiner and temperature:
   ``softmax(log(p) / temperature + bias)``. The bias holds the site's class priors (method
   ``prior``) and, with an operating point, a shift of the normal class's log-odds that makes the
   argmax reach the target sensitivity for "abnormal" (any other label) on the site's images.

The predicted label stays the argmax of the final probabilities, so heat maps, referral and every
report read the same decision in every runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from cxr_edge.errors import SpecError

_EPS = 1e-12


class SiteMethod(StrEnum):
    """How a site calibration was fitted (:mod:`cxr_edge.site.calibrate`)."""

    PRIOR = "prior"  # temperature and per-class bias on the combined probabilities
    HEAD = "head"  # the members' dense heads refitted on their pooled features, shrunk to the shipped ones


@dataclass(frozen=True)
class MemberHead:
    """A member's refitted classification head: ``softmax(gap(features) @ weights + bias)``.

    Attributes:
        weights: ``(K, n_classes)`` dense weights over the ``K`` pooled feature channels.
        bias: ``(n_classes,)`` dense bias.
    """

    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]

    def probs(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of a ``(h, w, K)`` feature map (or ``(n, h, w, K)``, or pooled ``(n, K)``)."""
        f = np.asarray(features, dtype=np.float64)
        pooled = f.mean(axis=(-3, -2)) if f.ndim >= 3 else f
        w = np.asarray(self.weights, dtype=np.float64)
        if pooled.shape[-1] != w.shape[0]:
            raise SpecError(
                "site head does not fit the member's features",
                expected=f"{w.shape[0]} feature channels",
                received=str(pooled.shape[-1]),
            )
        return softmax(pooled @ w + np.asarray(self.bias, dtype=np.float64))


@dataclass(frozen=True)
class OperatingPoint:
    """The abnormal-vs-normal operating point a site chose (already folded into the bias).

    Attributes:
        normal_label: The label that means "normal" (every other label is "abnormal").
        target_sensitivity: Sensitivity for abnormal the shift was fitted to reach.
        normal_shift: Added to the normal label's log-odds (part of :attr:`SiteCalibration.bias`).
    """

    normal_label: str
    target_sensitivity: float
    normal_shift: float

    def __post_init__(self) -> None:
        if not 0.0 < self.target_sensitivity < 1.0:
            raise SpecError(
                "invalid target sensitivity",
                expected="a fraction in (0, 1)",
                received=str(self.target_sensitivity),
            )


@dataclass(frozen=True)
class SiteCalibration:
    """The ``site`` section of a bundle manifest: who calibrated it, on what, and the fitted parameters.

    Attributes:
        name: The site's name (as given to ``cxr-edge site calibrate --site``).
        date: ISO date of the calibration.
        parent_sha256: :func:`cxr_edge.bundle.folder.bundle_sha256` of the bundle it was fitted on.
        method: :class:`SiteMethod` value.
        images: Labelled images per bundle label used for the fit (labels absent at the site keep the
            parent's behaviour: their bias is 0 and their head rows are the shipped ones).
        patients: Distinct patients behind those images.
        temperature: Site temperature on the combined log-probabilities (1 = none).
        bias: Per-label bias added after the temperature, in label order.
        heads: Refitted heads by member name (method ``head``); empty otherwise.
        operating_point: The abnormal-vs-normal operating point, when one was asked for.
        metrics: Cross-validated results over the site's patients, before and after, per method.
        reference: What the calibrated bundle predicted on the site's images (class mix and the
            histogram of the top probability), the reference of ``cxr-edge site monitor``.
        image_digests: Short SHA-256 of each labelled image's file, so that a later validation on the
            same images is reported as in-sample.
        parent_signed_by: Key id of the parent's signature (:mod:`cxr_edge.bundle.signature`), so the
            calibrated bundle, re-signed by the site's key, still names who made the model; None when
            the parent was unsigned.
    """

    name: str
    date: str
    parent_sha256: str
    method: str
    images: dict[str, int]
    patients: int
    temperature: float = 1.0
    bias: tuple[float, ...] = ()
    heads: dict[str, MemberHead] = field(default_factory=dict)
    operating_point: OperatingPoint | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    image_digests: tuple[str, ...] = ()
    parent_signed_by: str | None = None

    def __post_init__(self) -> None:
        if self.method not in {m.value for m in SiteMethod}:
            raise SpecError(
                "unknown site calibration method",
                expected=" or ".join(m.value for m in SiteMethod),
                received=self.method,
            )
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise SpecError(
                "invalid site temperature", expected="a finite T > 0", received=str(self.temperature)
            )
        if not all(np.isfinite(b) for b in self.bias):
            raise SpecError("invalid site bias", expected="finite numbers", received=str(self.bias))

    def member_probs(self, name: str, probs: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """A member's probabilities: its refitted head's when it has one, else its own ``probs``."""
        head = self.heads.get(name)
        if head is None:
            return probs
        if features is None:
            raise SpecError(
                f"site head of {name} needs the member's features output",
                expected="a model with a features output",
                received="none",
            )
        return head.probs(features)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Site temperature and bias on combined probabilities, ``(n_classes,)`` or ``(n, n_classes)``."""
        z = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / self.temperature
        if self.bias:
            z = z + np.asarray(self.bias, dtype=np.float64)
        return softmax(z)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax along the last axis."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
