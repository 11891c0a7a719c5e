"""DICOM transfer syntaxes by UID, grouped by the codec that decodes them, and a dataset's own syntax."""

from __future__ import annotations

NATIVE = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian (pydicom inflated it)
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    }
)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LIBJPEG_TURBO = frozenset(
    {
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, process 14
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    }
)
JPEG_LS = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
J2K = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
HTJ2K = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})

SYNTAX_NAMES = {
    RLE: "RLE",
    JPEG_BASELINE: "JPEG baseline",
    **dict.fromkeys(JPEG_LIBJPEG_TURBO, "JPEG extended/lossless"),
    **dict.fromkeys(JPEG_LS, "JPEG-LS"),
    **dict.fromkeys(J2K, "JPEG 2000"),
    **dict.fromkeys(HTJ2K, "HTJ2K"),
}


#: Names pydicom 3.0's dictionary lacks but pynetdicom adds to it when imported: named here, so that a
#: message does not depend on which modules happen to be loaded (the web port spells them the same).
LATER_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


def syntax_name(uid) -> str:
    """A transfer syntax's name as pydicom (with pynetdicom loaded) spells it, else the UID itself."""
    text = str(uid)
    return LATER_NAMES.get(text) or getattr(uid, "name", text) or text


def transfer_syntax(ds) -> str:
    """The dataset's Transfer Syntax UID, or "" when it has no file meta."""
    meta = ds.get("file_meta")
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
