"""Deflated DICOM datasets inflated once, within the bounds their header sets (a deflate bomb holds 1 GB
in 1 MB), into plain Explicit VR Little Endian files for the fast path."""

from __future__ import annotations

import io
import logging
import struct
import zlib

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from cxr_edge.imaging.syntaxes import DEFLATED, EXPLICIT_LE

log = logging.getLogger(__name__)


def inflate_part10(data: bytes, max_bytes: int | None = None, max_pixels: int | None = None) -> bytes | None:
    """A Deflated Explicit VR Little Endian Part 10 file rewritten as plain Explicit VR Little Endian.

    The dataset is inflated with libdeflate (imagecodecs; about twice as fast as zlib, which pydicom
    uses) and the file meta's Transfer Syntax UID and group length are patched, so the header-only
    parse and the zero-copy pixel view of the plain path apply.

    Deflate compresses up to ~1000:1, so a 1 MB file may hold a 1 GB dataset. The dataset is inflated
    in two steps: its first 256 KiB, where the image header is (:func:`_inflated_bound` reads Rows,
    Columns, frames, samples and bits there), then the rest up to what those pixels need plus 1 MiB;
    beyond that bound, or ``max_bytes``, or ``max_pixels`` declared, or more than one frame, the file
    is refused.

    Args:
        data: The file's content.
        max_bytes: Most bytes the inflated dataset may hold (default: ``ReadOptions.max_inflated_bytes``).
        max_pixels: Most pixels (Rows x Columns) the header may declare (default: ReadOptions').

    Returns:
        The plain file, or None when the file meta is well formed and its syntax is not deflated.

    Raises:
        ImageDecodeError: A corrupt or truncated deflate stream, or a deflated file whose file meta
            is malformed (pydicom would inflate it without a bound).
        ImageTooLargeError: The dataset inflates beyond its bound.
        UnsupportedImageError: The header declares more than one frame (the reader judges one).
    """
    from cxr_edge.imaging.image import ReadOptions  # the reader's limits, one definition (no cycle)

    defaults = ReadOptions()
    max_bytes = defaults.max_inflated_bytes if max_bytes is None else max_bytes
    max_pixels = defaults.max_pixels if max_pixels is None else max_pixels
    malformed = ImageDecodeError(
        "deflated DICOM with a malformed file meta",
        expected="a Part 10 file meta group with its group length",
        received="other bytes",
    )
    if data[128:132] != b"DICM" or data[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        raise malformed
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    at = data.find(b"\x02\x00\x10\x00UI", 144, meta_end)
    if at < 0 or meta_end > len(data):
        raise malformed
    length = struct.unpack_from("<H", data, at + 6)[0]
    if data[at + 8 : at + 8 + length].rstrip(b"\x00 ") != DEFLATED.encode():
        return None
    uid = EXPLICIT_LE.encode() + b"\x00"  # even length, NUL-padded as UIDs are
    group = struct.pack("<I", meta_end - 144 - length + len(uid))
    element = data[at : at + 6] + struct.pack("<H", len(uid)) + uid
    meta = b"".join((data[:140], group, data[144:at], element, data[at + 8 + length : meta_end]))
    body = memoryview(data)[meta_end:]
    head = zlib.decompressobj(-15)
    try:
        start = head.decompress(body, _INFLATE_HEAD)
    except zlib.error as exc:
        raise _corrupt_deflate(exc) from exc
    bound = min(max_bytes, _inflated_bound(meta, start, max_pixels))
    inflated = _inflate(body, bound, start if head.eof else None)
    return meta + inflated


#: Inflated bytes read first to find the image header (Rows, Columns...) of a deflated dataset.
_INFLATE_HEAD = 256 << 10


def _inflated_bound(meta: bytes, start: bytes, max_pixels: int) -> int:
    """Most bytes a deflated dataset may inflate to: its header, its pixels as declared, 1 MiB more."""
    import pydicom

    stream = io.BytesIO(meta + start)
    try:
        ds = pydicom.dcmread(stream, force=True, stop_before_pixels=True)
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        allocated = int(ds.get("BitsAllocated", 16) or 16)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # cut off in the middle of an element, or no image header
        log.debug("deflated DICOM: no image header in the first %d bytes", len(start), exc_info=True)
        raise ImageTooLargeError(
            "deflated DICOM without an image header near its start",
            expected=f"Rows and Columns within the first {_INFLATE_HEAD >> 10} KiB of the dataset",
            received="none",
        ) from exc
    if frames > 1:  # refused by the reader's header checks too, but only after inflating it all
        raise UnsupportedImageError(
            "multi-frame DICOM", expected="a single frame", received=f"{frames} frames"
        )
    if min(rows, cols, samples, allocated, frames) < 1 or rows * cols > max_pixels:
        raise ImageTooLargeError(
            "image dimensions exceed the decompression-bomb guard",
            expected=f"at most {max_pixels} pixels",
            received=f"{cols}x{rows}",
        )
    pixels = rows * cols * samples * frames * -(-allocated // 8)
    return stream.tell() - len(meta) + pixels + (1 << 20)


def _inflate(body, bound: int, whole: bytes | None) -> bytes:
    """The inflated dataset, at most ``bound`` bytes (``whole``: already inflated in full)."""
    if whole is not None:
        if len(whole) > bound:
            raise _too_large(bound)
        return whole
    try:
        import imagecodecs

        # libdeflate writes into a buffer of the bound's size and fails when the data needs more.
        return imagecodecs.deflate_decode(body, raw=True, out=bound)
    except Exception:  # imagecodecs absent, no space left in the bound, or a corrupt stream: zlib tells which
        pass
    stream = zlib.decompressobj(-15)
    try:
        out = stream.decompress(body, bound + 1)
    except zlib.error as exc:
        raise _corrupt_deflate(exc) from exc
    if len(out) > bound:
        raise _too_large(bound)
    if not stream.eof:
        raise ImageDecodeError(
            "truncated deflated dataset", expected="a complete deflate stream", received="end of data"
        )
    return out


def _too_large(bound: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        "deflated dataset larger than its image needs (a decompression bomb?)",
        expected=f"at most {bound} bytes inflated",
        received=f"more than {bound}",
    )


def _corrupt_deflate(exc: Exception) -> ImageDecodeError:
    log.debug("corrupt deflate stream", exc_info=exc)
    return ImageDecodeError(
        "corrupt deflated dataset", expected="a valid deflate stream", received="zlib errors"
    )
