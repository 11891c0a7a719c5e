"""The local backend: both stages in this process, one input after another (what a cart can run)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cxr_edge.batch.stages import Classifier, PredictorSpec, Preparer
from cxr_edge.batch.store import PartWriter
from cxr_edge.runtime.pipeline import Predictor


def run_local(
    paths: Sequence[str],
    out_dir: Path,
    spec: PredictorSpec,
    rows_per_part: int,
    progress: bool = True,
    predictor: Predictor | None = None,
) -> dict[str, int]:
    """Classifies ``paths`` into part files of ``out_dir``; returns ``{"ok": n, "error": n}``.

    ``predictor``: an already built ``spec.build()`` (saves a second bundle load).
    """
    preparer = Preparer(spec, predictor)
    classifier = Classifier(spec, preparer.predictor)  # one bundle load, shared by both stages
    writer = PartWriter(out_dir, classifier.labels, classifier.members, rows_per_part)
    counts = {"ok": 0, "error": 0}
    for path in tqdm(paths, desc="batch", unit="img", disable=not progress or None, file=sys.stderr):
        item, error = preparer.prepare(path)
        row = classifier.row(path, item, error)
        counts[row["status"]] += 1
        writer.add(row)
    writer.flush()
    return counts
