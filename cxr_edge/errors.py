"""Typed errors of the cxr-edge runtime.

Every error the library raises for bad input derives from :class:`CxrEdgeError` and says what was
expected and what was received, so the CLI can print a one-line message per file and carry on with
the rest of a batch. Messages never contain patient identifiers: they name files and DICOM
attributes, never attribute values such as names or IDs.
"""

from __future__ import annotations


class CxrEdgeError(Exception):
    """Base class of every error raised on purpose by cxr-edge.

    Args:
        message: What went wrong, in one sentence.
        expected: What the code needed (optional).
        received: What it got instead (optional).
    """

    def __init__(self, message: str, *, expected: str | None = None, received: str | None = None):
        self.message = message
        self.expected = expected
        self.received = received
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.message]
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        if self.received is not None:
            parts.append(f"received {self.received}")
        return "; ".join(parts)


class InputError(CxrEdgeError):
    """An input file cannot be used: missing, empty, truncated, not an image, unsupported."""


class ImageDecodeError(InputError):
    """The file looked like an image but its pixels could not be decoded (corrupt or truncated)."""


class UnsupportedImageError(InputError):
    """A readable image or DICOM object that the toolkit must not judge (CT, multi-frame, no pixels...)."""


class ImageTooLargeError(InputError):
    """The declared image size exceeds the decompression-bomb guard."""


class ManifestError(CxrEdgeError):
    """A data manifest or split file is malformed or inconsistent."""


class SplitError(ManifestError):
    """A split violates its contract, e.g. one patient appears in two parts."""


class SpecError(CxrEdgeError):
    """A preprocessing specification (or another config) holds an invalid value."""


class BundleError(CxrEdgeError):
    """A model bundle is missing, incomplete, tampered with, or of an unknown format."""


class ModelRuntimeError(CxrEdgeError):
    """The LiteRT interpreter rejected a model or an input tensor."""
