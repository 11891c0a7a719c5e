"""What compressed pixel data declares about itself, read from its markers before anything is decoded.

A decoder allocates what the codestream says, not what the DICOM header says: a 48 KB JPEG frame whose
SOF claims 20000 x 20000 pixels inside a 512 x 512 DICOM costs gigabytes before any error, and so does
a JPEG 2000 SIZ declaring 16384 components of the header's size. So the size and the components a frame
declares (JPEG SOF, JPEG-LS SOF55, JPEG 2000 / HTJ2K SIZ) are read here and checked against the header,
and the structure a decoder would silently tolerate is checked too:

* JPEG 2000 and HTJ2K tile-parts carry their own length (``Psot``): a codestream cut short, even with
  an end-of-codestream marker appended, ends before its last tile-part does;
* a DICOM RLE frame has a header of segment offsets that must fit the frame and the samples.

Nothing here decodes pixels; each function reads a few hundred bytes at most (the J2K tile-part walk
reads one marker per tile-part).
"""

from __future__ import annotations

import itertools
import struct

from cxr_edge.errors import ImageDecodeError

# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC); F7 is JPEG-LS's SOF55.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_JPEG_NO_LENGTH = frozenset({0xD8, 0x01, *range(0xD0, 0xD8)})  # SOI, TEM, RST0-7
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_J2K_SOT, _J2K_EOC = 0xFF90, 0xFFD9


def jpeg_size(data: bytes) -> tuple[int, int, int]:
    """``(width, height, precision)`` from the first start-of-frame marker of a JPEG or JPEG-LS stream.

    Raises:
        ImageDecodeError: No start-of-frame marker before the scan data, or the stream ends first.
    """
    return jpeg_frame(data)[:3]


def jpeg_frame(data: bytes) -> tuple[int, int, int, int]:
    """``(width, height, precision, components)`` from the first start-of-frame marker of a JPEG or
    JPEG-LS stream (see :func:`jpeg_size`)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            break
        if marker in _JPEG_SOF and i + 10 <= n:
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height, precision, data[i + 9]
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    raise ImageDecodeError("truncated or corrupt JPEG", expected="a start-of-frame marker", received="none")


def j2k_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of the image area from the SIZ marker of a JPEG 2000 / HTJ2K codestream.

    A frame wrapped in a JP2 file (not conformant in DICOM, but written by some encoders) is read at
    its codestream.

    Raises:
        ImageDecodeError: No SIZ marker, or one cut short.
    """
    at = data.find(_J2K_SOC_SIZ, 0, 1 << 16)
    if at < 0 or at + 24 > len(data):
        raise ImageDecodeError(
            "corrupt JPEG 2000 codestream", expected="a SIZ marker after SOC", received="none"
        )
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[at + 8 : at + 24])
    return max(0, xsiz - xosiz), max(0, ysiz - yosiz)


def j2k_check_siz(data: bytes) -> int:
    """Checks the SIZ marker of a JPEG 2000 / HTJ2K codestream as ISO/IEC 15444-1 A.5.1 constrains it, and
    returns its component count (``Csiz``; the decoder allocates an image plane for each).

    Decoders trust SIZ: a tile height of 0 makes OpenJPH divide by zero (SIGFPE, the process dies; the
    fuzz campaign's first finding), a tile of 1 x 1 pixels makes millions of tiles.

    Raises:
        ImageDecodeError: No SIZ marker, one cut short, or values the standard does not allow: an empty
            image area, tiles of size 0, a tile grid that does not cover the image origin, more than
            65535 tiles, components of 0 or sampled at 0, component counts or precisions out of range.
    """
    at = data.find(_J2K_SOC_SIZ, 0, 1 << 16)
    if at < 0 or at + 42 > len(data):
        raise ImageDecodeError(
            "corrupt JPEG 2000 codestream", expected="a complete SIZ marker after SOC", received="none"
        )
    length = struct.unpack(">H", data[at + 4 : at + 6])[0]
    xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz = struct.unpack(">8I", data[at + 8 : at + 40])
    csiz = struct.unpack(">H", data[at + 40 : at + 42])[0]
    components = data[at + 42 : at + 42 + 3 * csiz]
    problem = None
    if not 1 <= csiz <= 16384 or length != 38 + 3 * csiz or len(components) < 3 * csiz:
        problem = f"{csiz} components in a SIZ of {length} bytes"
    elif xsiz <= xosiz or ysiz <= yosiz:
        problem = "an empty image area"
    elif xtsiz == 0 or ytsiz == 0:
        problem = f"tiles of {xtsiz} x {ytsiz}"
    elif not (xtosiz <= xosiz < xtosiz + xtsiz and ytosiz <= yosiz < ytosiz + ytsiz):
        problem = "a tile grid that does not cover the image origin"
    elif -(-(xsiz - xtosiz) // xtsiz) * -(-(ysiz - ytosiz) // ytsiz) > 65535:
        problem = "more than 65535 tiles"
    else:
        for c in range(csiz):
            precision, dx, dy = components[3 * c], components[3 * c + 1], components[3 * c + 2]
            if (precision & 0x7F) + 1 > 38 or dx == 0 or dy == 0:
                problem = f"component {c} of {(precision & 0x7F) + 1} bits sampled every {dx} x {dy}"
                break
    if problem is not None:
        raise ImageDecodeError(
            "corrupt JPEG 2000 SIZ marker", expected="values ISO/IEC 15444-1 allows", received=problem
        )
    return csiz


def j2k_check_tile_parts(data: bytes) -> None:
    """Checks that every tile-part of a JPEG 2000 / HTJ2K codestream is complete.

    Each tile-part header (SOT) holds the tile-part's length; a codestream that ends before its last
    tile-part does was cut short, whatever its last bytes are (OpenJPH decodes such a stream into a
    blurred image without an error). A length of 0 ("to the end of the codestream") cannot be checked.

    Raises:
        ImageDecodeError: The main header or a tile-part runs past the end, or a tile-part is not
            followed by another one or the end-of-codestream marker.
    """
    start = data.find(_J2K_SOC_SIZ, 0, 1 << 16)
    end = len(data)
    pos = start + 2
    while True:  # main header: markers with a length, up to the first SOT
        if pos + 4 > end:
            raise ImageDecodeError(
                "truncated JPEG 2000 codestream", expected="a tile-part (SOT marker)", received="end of data"
            )
        marker, length = struct.unpack(">HH", data[pos : pos + 4])
        if marker == _J2K_SOT:
            break
        if marker >> 8 != 0xFF or length < 2:
            raise ImageDecodeError(
                "corrupt JPEG 2000 main header", expected="marker segments", received=f"bytes {marker:04X}"
            )
        pos += 2 + length
    parts = 0
    while True:
        marker = struct.unpack(">H", data[pos : pos + 2])[0] if pos + 2 <= end else None
        if marker == _J2K_EOC:
            return
        if marker != _J2K_SOT or pos + 12 > end:
            raise ImageDecodeError(
                "truncated or corrupt JPEG 2000 codestream",
                expected=f"tile-part {parts + 1} or the end-of-codestream marker",
                received="end of data" if marker is None else f"bytes {marker:04X} at offset {pos}",
            )
        psot = struct.unpack(">I", data[pos + 6 : pos + 10])[0]
        if psot == 0:
            return  # the last tile-part, running to the end of the codestream
        if pos + psot > end - 2:
            raise ImageDecodeError(
                "truncated JPEG 2000 codestream",
                expected=f"{psot} bytes in tile-part {parts + 1}",
                received=f"{max(0, end - 2 - pos)} before the end-of-codestream marker",
            )
        pos += psot
        parts += 1


def rle_check_header(frame: bytes, segments: int) -> None:
    """Checks a DICOM RLE frame header (PS3.5 G.3.1): ``segments`` segments whose offsets fit the frame.

    Args:
        frame: The RLE frame.
        segments: Segments the header must hold (samples per pixel x bytes per sample).

    Raises:
        ImageDecodeError: Short header, another segment count, or offsets outside the frame.
    """
    if len(frame) < 64:
        raise ImageDecodeError(
            "truncated RLE frame", expected="a 64-byte header", received=f"{len(frame)} bytes"
        )
    header = struct.unpack("<16I", frame[:64])
    if header[0] != segments:
        raise ImageDecodeError(
            "RLE frame does not match the header",
            expected=f"{segments} segments (samples x bytes per sample)",
            received=f"{header[0]}",
        )
    offsets = header[1 : 1 + segments]
    if offsets[0] != 64 or any(b <= a for a, b in itertools.pairwise(offsets)) or offsets[-1] >= len(frame):
        raise ImageDecodeError(
            "corrupt RLE header",
            expected=f"increasing segment offsets from 64 within {len(frame)} bytes",
            received=", ".join(str(o) for o in offsets),
        )
