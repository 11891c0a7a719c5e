"""The two stages of a batch, shared by the local and the Ray backend so that both give the same rows.

1. :class:`Preparer`: read and decode (the bundle's :class:`~cxr_edge.imaging.reader.ReadOptions`, so the
   decode gate applies as in ``predict``), the input checks (as ``predict`` and the DICOM node run
   them), segment, crop and preprocess. CPU-heavy: decoding a
   full-size compressed DICOM takes 5-500 ms.
2. :class:`Classifier`: the members' LiteRT interpreters, the combiner, the heat map and lung fraction
   (a few ms), producing :func:`cxr_edge.batch.rows.batch_row`.

Between them travels a :data:`PreparedItem` (the Ray backend pickles it between its actors; the local
backend passes it on as it is). Every failure of one input becomes its error row; nothing raised for
one file ends the batch.
"""

from __future__ import annotations

from cxr_edge.batch.rows import batch_row
from cxr_edge.bundle.folder import bundle_sha256
from cxr_edge.errors import CxrEdgeError, InputError
from cxr_edge.imaging.reader import ImageInfo
from cxr_edge.runtime.pipeline import Outcome, Predictor, PredictorSpec, Prepared, unexpected_failure

#: What stage 1 hands stage 2: the prepared input, how the image was read, and decode milliseconds.
PreparedItem = tuple[Prepared, ImageInfo, float]


class Preparer:
    """Stage 1: path -> a :data:`PreparedItem` or an error message."""

    def __init__(self, spec: PredictorSpec, predictor: Predictor | None = None):
        self.predictor = predictor or spec.build()

    def prepare(self, path: str) -> tuple[PreparedItem | None, str]:
        """Returns ``(item, "")`` or ``(None, error)`` for the input at ``path`` (its row key)."""
        predictor = self.predictor
        try:
            image, info, decode_ms = predictor.read(path)
            prepared = predictor.prepare(image)
        except CxrEdgeError as exc:
            return None, _message(exc)
        except Exception as exc:
            return None, _message(unexpected_failure(exc))
        return (prepared, info, decode_ms), ""


class Classifier:
    """Stage 2: a prepared input (or the error of stage 1) -> its batch row."""

    def __init__(self, spec: PredictorSpec, predictor: Predictor | None = None):
        self.predictor = predictor or spec.build()
        self.labels = self.predictor.labels
        self.members = self.predictor.member_names
        self.sha256 = bundle_sha256(self.predictor.bundle)

    def row(self, path: str, item: PreparedItem | None, error: str) -> dict:
        """The row of one input."""
        if item is None:
            row = batch_row(Outcome(path, error=InputError(error)), self.labels, self.members, self.sha256)
            row["error"] = error  # already "Type: message" from stage 1
            return row
        prepared, info, decode_ms = item
        try:
            prediction = self.predictor.classify(prepared, info)
        except CxrEdgeError as exc:
            outcome = Outcome(path, error=exc)
        except Exception as exc:
            outcome = Outcome(path, error=unexpected_failure(exc))
        else:
            outcome = Outcome(path, prediction=prediction)
        return batch_row(outcome, self.labels, self.members, self.sha256, decode_ms=decode_ms)


def _message(exc: CxrEdgeError) -> str:
    return f"{type(exc).__name__}: {exc}"
