"""Runs a bundle once over a site's labelled images and keeps what every later step needs.

Validation reads the bundle's output; calibration refits from the members' own probabilities and
pooled features. Both come from one pass (:func:`observe`): each image is read with the same input
checks as ``cxr-edge predict``, and an image that cannot be read or is refused becomes an error row
(its name and the typed error), never the end of the study.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cxr_edge.errors import CxrEdgeError, InputError
from cxr_edge.hashing import file_sha256
from cxr_edge.runtime.pipeline import Predictor, unexpected_failure
from cxr_edge.site.labels import SiteLabels, display

#: Hex characters kept of each image's SHA-256 (enough to tell images apart, too few to matter).
DIGEST_CHARS = 16


@dataclass
class Observations:
    """A bundle's view of a site's labelled images (rows = images that were classified).

    Attributes:
        labels: The bundle's labels.
        members: Ensemble member names, in ensemble order.
        names: Image names relative to the labels file (no patient identifiers).
        y: ``(n,)`` label index of each image.
        groups: ``(n,)`` patient key of each image (for grouped resampling; never reported).
        member_probs: ``(n_members, n, n_classes)`` the members' own probabilities.
        pooled: Per member, ``(n, K)`` globally averaged ``features`` (members without them: absent).
        probs: ``(n, n_classes)`` the bundle's output (its own site calibration included).
        referred: ``(n,)`` whether each output falls in the bundle's referral band.
        errors: ``(name, "ErrorType: message")`` of each image that was not classified.
        digests: ``(n,)`` short SHA-256 of each file's bytes (to tell a calibration's own images), or
            empty when :func:`observe` was asked not to hash.
    """

    labels: tuple[str, ...]
    members: tuple[str, ...]
    names: list[str] = field(default_factory=list)
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    member_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    pooled: dict[str, np.ndarray] = field(default_factory=dict)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    referred: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    errors: list[tuple[str, str]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


def observe(
    predictor: Predictor, site: SiteLabels, *, digests: bool = True, progress: bool = True
) -> Observations:
    """Classifies every labelled image once (input checks on), keeping members' outputs.

    Args:
        predictor: The bundle's predictor.
        site: The labelled images.
        digests: Also hash each file (a second read of it): what a calibration records and a validation
            of a calibrated bundle compares with; not needed otherwise.
        progress: A progress bar.

    Raises:
        InputError: No image could be classified (every row is in the message's count).
    """
    labels = predictor.labels
    members = predictor.member_names
    obs = Observations(labels, members)
    names, y, groups, member_rows, pooled_rows, probs, referred = [], [], [], [], {}, [], []
    root = site.source.parent
    for image in tqdm(site.images, desc="site", unit="img", disable=not progress):
        name = display(image.path, root)
        try:
            pixels, _, _ = predictor.read(image.path)
            outputs = predictor.run_members(predictor.prepare(pixels).x)
            _, out = predictor.combine(outputs)
        except CxrEdgeError as exc:
            obs.errors.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        except Exception as exc:  # a decoder bug must not end the study
            obs.errors.append((name, f"InputError: {unexpected_failure(exc)}"))
            continue
        if digests:
            obs.digests.append(file_sha256(image.path)[:DIGEST_CHARS])
        names.append(name)
        y.append(labels.index(image.label))
        groups.append(image.patient)
        member_rows.append([outputs[m]["probs"] for m in members])
        for m in members:
            features = outputs[m].get("features")
            if features is not None:
                pooled_rows.setdefault(m, []).append(np.asarray(features, dtype=np.float64).mean(axis=(0, 1)))
        probs.append(out)
        referred.append(predictor.ensemble.referral(labels, out) is not None)
    if not y:
        raise InputError(
            "no labelled image could be classified",
            expected="readable chest X-rays",
            received=f"{len(obs.errors)} error rows (first: {obs.errors[0][1] if obs.errors else '-'})",
        )
    obs.names = names
    obs.y = np.asarray(y, dtype=int)
    obs.groups = np.asarray(groups, dtype=object)
    obs.member_probs = np.stack(member_rows, axis=1).astype(np.float64)
    obs.pooled = {m: np.stack(v) for m, v in pooled_rows.items() if len(v) == len(y)}
    obs.probs = np.stack(probs).astype(np.float64)
    obs.referred = np.asarray(referred, dtype=bool)
    return obs
