"""Synthetic full-size DICOM radiographs made from ordinary images (benchmarks and the decode gate).

A kit image is enlarged to a detector size, stored as 10-16-bit integers with detector-like noise,
given the intensity tags of a :class:`Variant` and encoded in one of :data:`SYNTAXES`. Encoders are
the well-kept ones: pydicom's own (RLE, deflate), pyjpegls (JPEG-LS), pylibjpeg-openjpeg (JPEG 2000),
imagecodecs (libjpeg-turbo for JPEG baseline, extended and lossless; OpenJPH for HTJ2K). Used by
``benchmarks/dicom_corpus.py`` and by :mod:`cxr_edge.evaluation.decode_gate` (which needs DICOMs of the
validation images); nothing on the prediction path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Variant:
    """How stored values become display values in one corpus file."""

    name: str
    bits: int = 12
    photometric: str = "MONOCHROME2"
    intensity: str = "window"  # window | voi_lut | rescale | none
    signed: bool = False


#: Intensity variants: the combinations carts and PACS produce.
VARIANTS: tuple[Variant, ...] = (
    Variant("m2_window_12"),
    Variant("m1_window_12", photometric="MONOCHROME1"),
    Variant("m2_voilut_12", intensity="voi_lut"),
    Variant("m2_rescale_16", bits=16, intensity="rescale"),
    Variant("m1_none_10", bits=10, photometric="MONOCHROME1", intensity="none"),
    Variant("m2_signed_14", bits=14, intensity="window", signed=True),
)

#: Transfer syntaxes, by short name: (UID, encoder, most stored bits it carries or None for any);
#: JPEG baseline keeps the top 8 bits of any variant, as a cart's lossy export does.
SYNTAXES: dict[str, tuple[str, str, int | None]] = {
    "explicit_le": ("1.2.840.10008.1.2.1", "native", None),
    "implicit_le": ("1.2.840.10008.1.2", "native", None),
    "deflated": ("1.2.840.10008.1.2.1.99", "native", None),
    "jpeg_baseline": ("1.2.840.10008.1.2.4.50", "jpeg8", None),
    "jpeg_extended": ("1.2.840.10008.1.2.4.51", "jpeg12", 12),
    "jpeg_lossless_sv1": ("1.2.840.10008.1.2.4.70", "ljpeg", None),
    "jpegls_lossless": ("1.2.840.10008.1.2.4.80", "pydicom", None),
    "jpegls_near": ("1.2.840.10008.1.2.4.81", "pydicom", None),
    "j2k_lossless": ("1.2.840.10008.1.2.4.90", "pydicom", None),
    "j2k_lossy": ("1.2.840.10008.1.2.4.91", "pydicom", None),
    "htj2k_lossless": ("1.2.840.10008.1.2.4.201", "htj2k", None),
    "htj2k_lossy": ("1.2.840.10008.1.2.4.203", "htj2k", None),
    "rle": ("1.2.840.10008.1.2.5", "pydicom", None),
}


def stored_values(image: np.ndarray, size: tuple[int, int], variant: Variant, seed: int) -> np.ndarray:
    """A float image in [0, 1] enlarged to ``size`` (rows, cols) and stored as ``variant.bits`` integers.

    Detector-like Gaussian noise (0.1% of full scale) keeps lossless compression ratios realistic; a
    noise-free enlarged 8-bit image compresses far better than any real radiograph.
    """
    rows, cols = size
    big = cv2.resize(np.ascontiguousarray(image, np.float32), (cols, rows), interpolation=cv2.INTER_CUBIC)
    if variant.photometric == "MONOCHROME1":
        big = 1.0 - big  # stored bright = low density; the reader inverts it back
    full = (1 << variant.bits) - 1
    rng = np.random.default_rng(seed)
    values = np.clip(big, 0.0, 1.0) * full + rng.normal(0.0, full * 1e-3, big.shape).astype(np.float32)
    values = np.clip(np.rint(values), 0, full)
    if variant.signed:
        return (values - (1 << (variant.bits - 1))).astype(np.int16)
    return values.astype(np.uint16)


def build_dataset(stored: np.ndarray, variant: Variant, n: int):
    """A DX For Presentation dataset holding ``stored`` (uncompressed), with the variant's intensity tags."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    prefix = "1.2.826.0.1.3680043.10.1017."  # deterministic, so the corpus is the same every run
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix, [variant.name, str(n)])
    ds.StudyInstanceUID = generate_uid(prefix, ["study", str(n)])
    ds.SeriesInstanceUID = generate_uid(prefix, ["series", variant.name, str(n)])
    ds.PatientID, ds.PatientName = f"BENCH{n:04d}", "Bench^Corpus"
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, variant.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, variant.bits, variant.bits - 1
    ds.PixelRepresentation = int(variant.signed)
    ds.PixelSpacing = [0.168, 0.168]
    lo = -(1 << (variant.bits - 1)) if variant.signed else 0
    hi = lo + (1 << variant.bits) - 1
    if variant.intensity == "window":
        ds.WindowCenter, ds.WindowWidth = (lo + hi) / 2.0, float(hi - lo) * 0.9
    elif variant.intensity == "voi_lut":
        ds.VOILUTSequence = [_gamma_lut(lo, hi)]
    elif variant.intensity == "rescale":
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 0.5, -1024.0, "US"
        ds.WindowCenter, ds.WindowWidth = 0.5 * (lo + hi) / 2.0 - 1024.0, 0.5 * (hi - lo)
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _gamma_lut(lo: int, hi: int):
    """A VOI LUT item: a gamma 0.7 curve over the stored range, 16-bit output."""
    from pydicom.dataset import Dataset

    n = hi - lo + 1
    item = Dataset()
    item.LUTDescriptor = [n if n < 65536 else 0, lo, 16]
    curve = np.rint(65535.0 * np.linspace(0.0, 1.0, n) ** 0.7).astype(np.uint16)
    item.LUTData = curve.tobytes()
    item["LUTData"].VR = "OW"
    item.LUTExplanation = "gamma 0.7"
    return item


def encode(ds, syntax: str) -> bool:
    """Re-encodes ``ds`` in place in ``syntax``; False when the syntax cannot hold the variant."""
    import imagecodecs
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    uid, encoder, max_bits = SYNTAXES[syntax]
    if max_bits == 12 and ds.BitsStored > 12:
        return False  # JPEG extended carries at most 12 bits
    arr = np.frombuffer(ds.PixelData, np.int16 if ds.PixelRepresentation else np.uint16).reshape(
        ds.Rows, ds.Columns
    )
    if encoder == "native":
        ds.file_meta.TransferSyntaxUID = UID(uid)
        return True
    if encoder == "pydicom":
        kwargs = {"jls_error": 2} if syntax == "jpegls_near" else {}
        if syntax == "j2k_lossy":
            kwargs = {"j2k_cr": [15]}
        try:
            ds.compress(UID(uid), arr, **kwargs)
        except ValueError:  # pydicom's encoder refuses the variant (e.g. signed near-lossless range)
            return False
        return True
    if ds.PixelRepresentation:
        return False  # the libjpeg-turbo and OpenJPH paths here encode unsigned samples only
    if encoder == "jpeg8":
        # 8-bit baseline: the cart's lossy export; keep the top 8 of the stored bits.
        arr8 = (arr >> (ds.BitsStored - 8)).astype(np.uint8)
        frame = imagecodecs.jpeg8_encode(arr8, level=90)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        _window_for_8_bits(ds)
    elif encoder == "jpeg12":
        frame = imagecodecs.jpeg8_encode(arr, level=90, bitspersample=12)
    elif encoder == "ljpeg":
        frame = imagecodecs.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=ds.BitsStored)
    elif encoder == "htj2k":
        lossless = syntax == "htj2k_lossless"
        # OpenJPH: `level` is the quantisation step (0.0002: about 20:1 at full size).
        step = None if lossless else 0.0002
        frame = imagecodecs.htj2k_encode(arr, level=step, reversible=lossless, resolutions=6)
    else:
        raise ValueError(encoder)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(uid)
    if syntax in ("jpeg_baseline", "jpeg_extended", "j2k_lossy", "htj2k_lossy", "jpegls_near"):
        ds.LossyImageCompression = "01"
    return True


def _window_for_8_bits(ds) -> None:
    """After keeping 8 of the stored bits, an 8-bit window replaces the variant's intensity tags."""
    if "VOILUTSequence" in ds:
        del ds.VOILUTSequence
    if "RescaleSlope" in ds:
        del ds.RescaleSlope, ds.RescaleIntercept
    for tag in ("WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    ds.WindowCenter, ds.WindowWidth = 127.5, 230.0
