"""The rows of ``cxr-edge batch``: ``predict``'s columns, per-model probabilities, bundle and timings.

A batch row holds every column :func:`cxr_edge.runtime.rows.outcome_row` gives ``cxr-edge predict`` (path,
status, error, label, ``prob_<label>``, crop, lung_fraction, flags, referral, latency_ms), unrounded,
plus ``member_<model>_<label>`` (each member's probabilities), ``bundle_sha256`` (which bundle judged
the image) and ``decode_ms``, ``prepare_ms`` (segment + preprocess), ``model_ms`` (members, combiner,
heat map). ``latency_ms`` is their sum, as in ``predict``. Missing numbers are nulls, missing text is
``""`` (as in ``predict``'s CSV).
"""

from __future__ import annotations

from collections.abc import Sequence

from cxr_edge.runtime.pipeline import Outcome
from cxr_edge.runtime.rows import outcome_row

#: Timing columns (milliseconds of one image, excluding time spent queued between stages).
TIMING_COLUMNS = ("decode_ms", "prepare_ms", "model_ms")
_TEXT = ("path", "status", "error", "label", "crop", "flags", "referral", "bundle_sha256")


def member_column(model: str, label: str) -> str:
    """Column of one member's probability for one label."""
    return f"member_{model}_{label}"


def column_names(labels: Sequence[str], members: Sequence[str]) -> list[str]:
    """Every column of a batch row, in order."""
    base = list(outcome_row(Outcome(""), labels))
    return [
        *base,
        *(member_column(m, label) for m in members for label in labels),
        "bundle_sha256",
        *TIMING_COLUMNS,
    ]


def batch_row(
    outcome: Outcome,
    labels: Sequence[str],
    members: Sequence[str],
    bundle_sha256: str,
    decode_ms: float | None = None,
) -> dict:
    """The batch row of one input.

    Args:
        outcome: The prediction or the error of this input.
        labels: The bundle's label order.
        members: The models the predictor runs.
        bundle_sha256: SHA-256 of the bundle's manifest.
        decode_ms: Decode milliseconds (when the prediction's timings do not hold them).
    """
    row = outcome_row(outcome, labels)
    row.update({f"prob_{label}": None for label in labels}, lung_fraction=None, latency_ms=None)
    row.update({member_column(m, label): None for m in members for label in labels})
    row["bundle_sha256"] = bundle_sha256
    row.update(dict.fromkeys(TIMING_COLUMNS))
    row["decode_ms"] = decode_ms
    pred = outcome.prediction
    if pred is not None:
        row.update({f"prob_{label}": pred.probs[label] for label in labels})
        row["lung_fraction"] = pred.lung_fraction
        for m in members:
            row.update({member_column(m, label): pred.per_model[m][label] for label in labels})
        t = pred.timings_ms
        decode = t.get("decode", decode_ms or 0.0)
        prepare = t.get("segment", 0.0) + t.get("preprocess", 0.0)
        model = sum(v for k, v in t.items() if k not in ("decode", "segment", "preprocess", "total"))
        row.update(decode_ms=decode, prepare_ms=prepare, model_ms=model, latency_ms=decode + prepare + model)
    return row


def arrow_schema(labels: Sequence[str], members: Sequence[str]):
    """The pyarrow schema of a batch part file (text columns as strings, the rest float64)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(name, pa.string() if name in _TEXT else pa.float64())
            for name in column_names(labels, members)
        ]
    )


def to_table(rows: Sequence[dict], labels: Sequence[str], members: Sequence[str]):
    """Rows as a pyarrow Table with :func:`arrow_schema`."""
    import pyarrow as pa

    schema = arrow_schema(labels, members)
    return pa.Table.from_pylist(list(rows), schema=schema)
