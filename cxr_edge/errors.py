"""Typed errors of the cxr-edge runtime.

Every error the library raises for bad input derives from :class:`CxrEdgeError` and says what was
expected and what was received, so the CLI can print a one-line message per file and carry on with
the rest of a batch. Messages never contain patient identifiers: they name files and DICOM
attributes, never attribute values such as names or IDs.

A message is always one line (:func:`one_line`): a file name holding a line break, or bytes that are
not UTF-8, cannot split a log line or an error row. What a library raised inside a codec is not part
of the message; the reader logs it at debug level (``cxr_edge.imaging.reader``).
"""

from __future__ import annotations

import os

# Line breaks a reader of logs or CSV may split on (str.splitlines() splits on all of them).
_BREAKS = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x0b": "\\v", "\x0c": "\\f"}


def printable_path(path: str | os.PathLike) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 become ``\\xNN``; nothing else changes.

    File names on POSIX are bytes; Python keeps undecodable ones as lone surrogates, which no UTF-8
    writer accepts. The same name always gives the same text, so rows can be matched on resume.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def one_line(text: str) -> str:
    """``text`` on one line: control characters and Unicode line separators escaped, bytes that are
    not UTF-8 as ``\\xNN`` (see :func:`printable_path`)."""
    text = printable_path(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(_BREAKS.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
    return "".join(out)


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
        parts = [one_line(self.message)]
        if self.expected is not None:
            parts.append(f"expected {one_line(self.expected)}")
        if self.received is not None:
            parts.append(f"received {one_line(self.received)}")
        return "; ".join(parts)


class InputError(CxrEdgeError):
    """An input file cannot be used: missing, empty, truncated, not an image, unsupported."""


class ImageDecodeError(InputError):
    """The file looked like an image but its pixels could not be decoded (corrupt or truncated)."""


class UnsupportedImageError(InputError):
    """A readable image or DICOM object that the toolkit must not judge (CT, multi-frame, no pixels...)."""


class ImageTooLargeError(InputError):
    """The declared image size exceeds the decompression-bomb guard."""


class DecodeLimitError(ImageDecodeError):
    """Decoding one input went past a limit no header declares, in the isolated decoder
    (:mod:`cxr_edge.imaging.isolated`): its deadline, its memory ceiling, or the decoder died.

    Args:
        limit: ``decode_time``, ``decode_memory`` or ``decoder_crash``.
        message: What went wrong, in one sentence.
        expected: The limit.
        received: What the decode did instead.
    """

    def __init__(self, limit: str, message: str, *, expected: str | None = None, received: str | None = None):
        self.limit = limit
        super().__init__(message, expected=expected, received=received)


class InputRejectedError(InputError):
    """A readable image that an input check refuses: not a frontal chest radiograph, too small, blank...

    Args:
        check: The check's name (``modality``, ``body_part``, ``view``, ``colour``, ``resolution``,
            ``blank``, ``frontal_pattern``), the same word the DICOM node's audit record uses.
        reason: Why, in one sentence (no patient identifiers).
    """

    def __init__(self, check: str, reason: str):
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


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


class CalibrationRefusedError(CxrEdgeError):
    """A site calibration that would not be trustworthy: too few labelled images per class, or a
    cross-validated gain that its interval does not hold above zero. Nothing is written."""
