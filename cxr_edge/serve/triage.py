"""Triage of one inbox file: read -> input checks -> classify -> referral band -> audit record.

:class:`Triage` never raises for a bad input: every outcome, including a decoder crash, becomes an
audit record with a decision (``classified``, ``refer`` or ``rejected``). The record holds no patient
identifiers (see :mod:`cxr_edge.serve.audit` for the schema).

The referral band is the node's ``[triage.abstain]`` when configured, otherwise the bundle's own
(``ensemble.abstain``), otherwise :data:`cxr_edge.serve.config.DEFAULT_REFERRAL`; the record says which
(``abstain.source``). With a segmenter, the record carries the heat map's lung fraction and the flag
"evidence outside the lungs" (which does not change the decision).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.bundle.signature import TrustPolicy
from cxr_edge.errors import CxrEdgeError
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.quality import check, referral_reason
from cxr_edge.runtime import selftest
from cxr_edge.runtime.pipeline import Prediction, Predictor, unexpected_failure
from cxr_edge.serve.config import DEFAULT_REFERRAL, TriageConfig
from cxr_edge.serve.inbox import key_of

log = logging.getLogger("cxr_edge.serve")


@dataclass
class Triaged:
    """The outcome of one file: its audit record, plus what a DICOM result needs.

    Attributes:
        record: The audit record (without ``schema``/``time``, which the log adds).
        image: The decoded image, when it could be read.
        prediction: The model's prediction, when one was made.
    """

    record: dict
    image: np.ndarray | None = None
    prediction: Prediction | None = None


def received_ns(path: Path) -> int | None:
    """Receive time (ns since the epoch) encoded in an inbox file name, or None."""
    head = path.name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


class Triage:
    """Judges inbox files with a bundle.

    Args:
        config: Bundle, models, threads, input checks and referral band.
        predictor: An already built predictor (tests); default: one built from ``config``.
    """

    def __init__(self, config: TriageConfig, predictor: Predictor | None = None):
        self.config = config
        if predictor is None:
            trust = TrustPolicy.from_path(config.trusted_keys) if config.trusted_keys else True
            bundle = Bundle.load(config.bundle or None, trust=trust)
            predictor = Predictor(bundle, members=list(config.models) or None, threads=config.threads)
            if config.selftest:
                passed = selftest.check(bundle)
                if passed:
                    log.info("bundle self-test passed (%d stage checks)", passed)
                else:
                    log.warning("bundle %s carries no self-test: its kernels are not checked", bundle.root)
        self.predictor = predictor
        signature = predictor.bundle.signature
        self.bundle = {
            "name": predictor.bundle.manifest.name,
            "sha256": bundle_sha256(predictor.bundle),
            "signed_by": signature.key_id if signature else None,
            "verified": predictor.bundle.trusted_by is not None,
        }
        bundle_band = predictor.ensemble.abstain
        if config.abstain is not None:
            self.band, source = config.abstain, "config"
            if bundle_band is not None and bundle_band != config.abstain:
                log.warning(
                    "[triage.abstain] (refer below top probability %.2f, margin %.2f) replaces the "
                    "bundle's own band (%.2f, %.2f): remove the section to use the bundle's",
                    config.abstain.min_top_prob,
                    config.abstain.min_margin,
                    bundle_band.min_top_prob,
                    bundle_band.min_margin,
                )
        elif bundle_band is not None:
            self.band, source = bundle_band, "bundle"
        else:
            self.band, source = DEFAULT_REFERRAL, "default"
        self.abstain = {
            "min_top_prob": self.band.min_top_prob,
            "min_margin": self.band.min_margin,
            "source": source,
        }

    def __call__(self, path: Path, calling_ae: str = "", sop_class: str = "") -> Triaged:
        """Triages one inbox file; never raises for a bad input."""
        start = time.time_ns()
        t0 = time.perf_counter()
        arrived = received_ns(path)
        timings = {"queue": round((start - arrived) / 1e6, 3)} if arrived else {}
        record = {
            "instance": key_of(path),
            "sop_class": sop_class or None,
            "calling_ae": calling_ae or None,
            "inbox_file": path.name,
            "bundle": self.bundle,
            "decision": "rejected",
            "label": None,
            "probs": None,
            "per_model": None,
            "lung_fraction": None,
            "flags": [],
            "abstain": self.abstain,
            "reason": None,
            "check": None,
            "image": None,
            "timings_ms": timings,
        }
        try:
            image, info = read_image(path, self.predictor.read_options)
        except CxrEdgeError as exc:
            record.update(check="read", reason=f"{type(exc).__name__}: {exc}")
            return self._done(record, t0)
        except Exception as exc:  # a decoder bug must not stop the node; it is recorded on this file
            record.update(check="error", reason=str(unexpected_failure(exc)))
            return self._done(record, t0)
        timings["decode"] = _ms(t0)
        record["image"] = {k: v for k, v in info.to_dict().items() if k != "source_file"}
        t = time.perf_counter()
        rejection = check(image, info, self.config.quality)
        timings["quality"] = _ms(t)
        if rejection is not None:
            record.update(check=rejection.check, reason=rejection.reason)
            return self._done(record, t0, image=image)
        try:
            pred = self.predictor.predict_image(image, info)
        except CxrEdgeError as exc:  # e.g. ModelRuntimeError: recorded, the node goes on
            record.update(check="error", reason=f"{type(exc).__name__}: {exc}")
            return self._done(record, t0, image=image)
        except Exception as exc:
            record.update(check="error", reason=str(unexpected_failure(exc)))
            return self._done(record, t0, image=image)
        timings.update({k: round(v, 3) for k, v in pred.timings_ms.items()})
        record["probs"] = {k: round(v, 6) for k, v in pred.probs.items()}
        record["per_model"] = {m: {k: round(v, 6) for k, v in p.items()} for m, p in pred.per_model.items()}
        record["lung_fraction"] = None if pred.lung_fraction is None else round(pred.lung_fraction, 6)
        record["flags"] = list(pred.flags)
        why = referral_reason(pred.probs, self.band)
        if why is None:
            record.update(decision="classified", label=pred.label)
        else:
            record.update(decision="refer", reason=f"refer to a radiologist: {why}")
        return self._done(record, t0, image=image, prediction=pred)

    @staticmethod
    def _done(record: dict, t0: float, **extra) -> Triaged:
        record["timings_ms"]["total"] = _ms(t0)
        return Triaged(record=record, **extra)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
