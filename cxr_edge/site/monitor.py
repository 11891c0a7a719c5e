"""Drift without labels: does what the bundle predicts at a site still look like what it expects?

Every runtime already records each prediction's probabilities: the DICOM node in its audit log
(``probs`` of each triage record), ``predict`` and ``batch`` in their rows (``prob_<label>``).
:func:`monitor` compares their aggregate with the bundle's reference:

* the **class mix** (share of each predicted label) and the **top-probability histogram** (ten equal
  bins), each by the population stability index, ``PSI = sum((o - r) * ln(o / r))`` over bins with
  0.001 added to empty ones; PSI above :data:`PSI_THRESHOLD` (0.2, the usual "significant shift")
  flags drift;
* the **prevalence** of each label at the site, estimated by expectation-maximisation on the
  posteriors (Saerens, Latinne & Decaestecker 2002), from the reference priors. It is reported,
  never applied: a prior shift is changed only by ``cxr-edge site calibrate``, with labels.

The reference is the site calibration's (its outputs on the site's labelled images) when the bundle
has one; otherwise the training split's label mix from the model card, without a histogram.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.errors import InputError
from cxr_edge.serve.audit import read_records

#: PSI above which a distribution is flagged as drifted.
PSI_THRESHOLD = 0.2
#: Fewest predictions for a verdict (below it the flag is never raised).
MIN_PREDICTIONS = 50
BINS = 10
_FLOOR = 1e-3


def read_probs(path: str | Path, labels: Sequence[str], bundle_sha256: str | None = None) -> np.ndarray:
    """``(n, n_classes)`` probabilities of the classified inputs in an audit log or a rows file.

    Reads a node audit log (``.jsonl`` with ``event`` records), ``predict``/``batch`` rows (``.csv`` or
    ``.jsonl`` with ``prob_<label>`` columns, ``status`` ok) or batch Parquet (``.parquet``, with pyarrow).
    With ``bundle_sha256``, audit records of other bundles (the node ran another one then) are skipped.

    Raises:
        InputError: Missing file, unknown format, or columns that are not this bundle's labels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such predictions file", expected="an audit log or rows file", received=str(path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InputError(
                "reading Parquet needs pyarrow", expected="pip install pyarrow", received=str(path)
            ) from exc
        rows: Iterable[dict] = pq.read_table(path).to_pylist()
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif suffix == ".jsonl":
        rows = _jsonl(path)
    else:
        raise InputError("unknown predictions file", expected=".jsonl, .csv or .parquet", received=path.name)
    out = []
    for row in rows:
        if (
            bundle_sha256
            and isinstance(row.get("bundle"), dict)
            and row["bundle"].get("sha256") != bundle_sha256
        ):
            continue
        probs = _row_probs(row, labels)
        if probs is not None:
            out.append(probs)
    return np.asarray(out, dtype=np.float64).reshape(-1, len(labels))


def _jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file: an audit log's triage records (read as the node reads them) or
    ``predict``'s rows (a torn last line skipped)."""
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and ("event" in head or "decision" in head):
        return [r for r in read_records(path) if r.get("probs")]
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line
    return rows


def _row_probs(row: dict, labels: Sequence[str]) -> list[float] | None:
    if isinstance(row.get("probs"), dict):  # an audit record
        probs = row["probs"]
        missing = [k for k in labels if k not in probs]
        if missing:
            raise InputError(
                "audit record of another bundle",
                expected=f"probs of {list(labels)}",
                received=str(list(probs)),
            )
        return [float(probs[k]) for k in labels]
    if row.get("status", "ok") != "ok":
        return None
    keys = [f"prob_{k}" for k in labels]
    if any(k not in row for k in keys):
        raise InputError("rows of another bundle", expected=", ".join(keys), received=", ".join(row)[:200])
    values = [row[k] for k in keys]
    if any(v in ("", None) for v in values):
        return None
    return [float(v) for v in values]


def expected_mix(manifest: BundleManifest) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """``(class mix, top-probability histogram or None, where they come from)`` the bundle expects."""
    labels = manifest.labels
    site = manifest.site
    if site is not None and site.reference:
        ref = site.reference
        mix = np.array([ref["class_mix"].get(k, 0.0) for k in labels])
        return (
            mix,
            np.asarray(ref["top_prob_histogram"], dtype=np.float64),
            f"site calibration ({site.name}, {site.date})",
        )
    if manifest.card is not None and manifest.card.training_data:
        counts = dict.fromkeys(labels, 0)
        for by_label in manifest.card.training_data.values():
            for raw, n in by_label.items():
                label = manifest.label_map.get(raw, raw)
                if label in counts:
                    counts[label] += n
        total = sum(counts.values())
        if total:
            return (
                np.array([counts[k] / total for k in labels]),
                None,
                "training split label mix (model card)",
            )
    return None, None, "none"


def psi(observed: np.ndarray, reference: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins."""
    o = np.asarray(observed, dtype=np.float64) + _FLOOR
    r = np.asarray(reference, dtype=np.float64) + _FLOOR
    o, r = o / o.sum(), r / r.sum()
    return float(np.sum((o - r) * np.log(o / r)))


def em_prevalence(
    probs: np.ndarray, priors: np.ndarray, iterations: int = 200, tol: float = 1e-8
) -> np.ndarray:
    """Label prevalence at the site by EM on the posteriors (Saerens et al. 2002).

    Args:
        probs: ``(n, k)`` posteriors under the priors ``priors``.
        priors: ``(k,)`` the priors the posteriors were calibrated under.
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    base = np.clip(np.asarray(priors, dtype=np.float64), _FLOOR, None)
    base = base / base.sum()
    current = base.copy()
    for _ in range(iterations):
        adjusted = probs * (current / base)
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        new = adjusted.mean(axis=0)
        if np.max(np.abs(new - current)) < tol:
            return new
        current = new
    return current


def monitor(manifest: BundleManifest, probs: np.ndarray) -> dict:
    """The drift report of ``probs`` (one row per prediction) against the bundle's reference (JSON-ready)."""
    labels = manifest.labels
    n = len(probs)
    mix_ref, hist_ref, source = expected_mix(manifest)
    out: dict = {"n": n, "labels": list(labels), "reference": source, "threshold": PSI_THRESHOLD}
    if n == 0:
        return {**out, "drift": None, "verdict": "no predictions"}
    mix = np.bincount(probs.argmax(axis=1), minlength=len(labels)) / n
    hist = np.histogram(probs.max(axis=1), bins=BINS, range=(0.0, 1.0))[0] / n
    out["class_mix"] = dict(zip(labels, mix.tolist(), strict=True))
    out["top_prob_histogram"] = hist.tolist()
    stats = {}
    if mix_ref is not None:
        out["expected_class_mix"] = dict(zip(labels, mix_ref.tolist(), strict=True))
        stats["class_mix_psi"] = psi(mix, mix_ref)
        priors = mix_ref
        if manifest.site is not None and manifest.site.reference.get("mean_probs"):
            priors = np.array([manifest.site.reference["mean_probs"][k] for k in labels])
        out["prevalence_em"] = dict(zip(labels, em_prevalence(probs, priors).tolist(), strict=True))
    if hist_ref is not None:
        stats["top_prob_psi"] = psi(hist, hist_ref)
    out.update(stats)
    if not stats:
        return {**out, "drift": None, "verdict": "the bundle carries no reference"}
    if n < MIN_PREDICTIONS:
        return {**out, "drift": None, "verdict": f"too few predictions for a verdict (< {MIN_PREDICTIONS})"}
    drift = any(v > PSI_THRESHOLD for v in stats.values())
    worst = max(stats, key=stats.get)
    verdict = (
        f"drift: {worst} {stats[worst]:.3f} > {PSI_THRESHOLD}"
        if drift
        else f"no drift (largest PSI {stats[worst]:.3f})"
    )
    return {**out, "drift": drift, "verdict": verdict}


def monitor_file(bundle: Bundle, path: str | Path, last: int | None = None) -> dict:
    """:func:`monitor` of the last ``last`` predictions (all: None) of ``bundle`` in a records file
    (``site monitor``, and ``serve health`` on the node's audit log)."""
    probs = read_probs(path, bundle.labels, bundle_sha256(bundle))
    return monitor(bundle.manifest, probs[-last:] if last else probs)
