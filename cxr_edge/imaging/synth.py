"""Synthetic DICOM radiographs: the one DICOM builder of the tests, the benchmarks and the decode gate.

Two builders share this module:

* the corpus synthesiser: a kit image is enlarged to a detector size (:func:`stored_values`), stored
  as 10-16-bit integers with detector-like noise, given the intensity tags of a :class:`Variant`
  (:func:`build_dataset`) and encoded in one of :data:`SYNTAXES` (:func:`encode`);
* the small-file writer: :func:`write_radiograph` (and :func:`radiograph`, its dataset) stores a 2-D
  array of stored values as a single-frame greyscale file of a :class:`RadiographPreset`
  (:data:`DX_PRESENTATION` or :data:`SECONDARY_CAPTURE`) with fake identifiers; an 8-bit image
  becomes stored values with :func:`stored_from_image`.

Encoders are the well-kept ones: pydicom's own (RLE, deflate), pyjpegls (JPEG-LS), pylibjpeg-openjpeg
(JPEG 2000), imagecodecs (libjpeg-turbo for JPEG baseline, extended and lossless; OpenJPH for HTJ2K).
Used by ``benchmarks/`` and the tests, and by :mod:`cxr_edge.evaluation.decode_gate` (which needs
DICOMs of the validation images); nothing on the prediction path imports it, and pydicom is imported
inside the functions.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
    ds.file_meta.MediaStorageSOPClassUID = DX_PRESENTATION.sop_class
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
    lo, hi = stored_range(variant.bits, variant.signed)
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


def stored_range(bits: int, signed: bool) -> tuple[int, int]:
    """The lowest and highest stored value of ``bits`` bits (two's complement when ``signed``)."""
    lo = -(1 << (bits - 1)) if signed else 0
    return lo, lo + (1 << bits) - 1


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


# ------------------------------------------------------------------------------ single-frame writer


@dataclass(frozen=True)
class RadiographPreset:
    """What :func:`radiograph` writes besides the pixel module: the object's class and fixed attributes.

    Attributes:
        name: Short name (``dx`` or ``sc``).
        sop_class: SOP Class UID.
        attributes: Fixed attributes, in the order they are set: fake patient and study identifiers
            (the tests check that they never reach a log), Modality, ViewPosition...
        new_study: Whether the file gets its own (random) Study and Series Instance UIDs.
        bits_stored_16: BitsStored of a 16-bit array (an 8-bit array stores 8 bits).
        full_range_window: Whether a LINEAR_EXACT window covers the whole stored range; without it
            a reader has no VOI and scales the image by its own minimum and maximum.
    """

    name: str
    sop_class: str
    attributes: tuple[tuple[str, str], ...]
    new_study: bool
    bits_stored_16: int
    full_range_window: bool


#: A DX "for presentation" chest PA: 12 bits stored in 16-bit pixels, a window over the stored range,
#: a fake patient and study (what a modality sends the node).
DX_PRESENTATION = RadiographPreset(
    name="dx",
    sop_class="1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    attributes=(
        ("PatientName", "Doe^Jane"),
        ("PatientID", "PAT-0042-SECRET"),
        ("PatientBirthDate", "19700101"),
        ("PatientSex", "F"),
        ("AccessionNumber", "ACC-77-SECRET"),
        ("StudyID", "1"),
        ("StudyDate", "20240101"),
        ("ContentDate", "20240101"),
        ("StudyTime", "120000"),
        ("ContentTime", "120000"),
        ("Modality", "DX"),
        ("PresentationIntentType", "FOR PRESENTATION"),
        ("ViewPosition", "PA"),
        ("BodyPartExamined", "CHEST"),
    ),
    new_study=True,
    bits_stored_16=12,
    full_range_window=True,
)

#: A plain Secondary Capture labelled DX PA: every bit of the array's type stored, no window, no
#: study (the reader's intensity handling is tested on it, with attributes added per test).
SECONDARY_CAPTURE = RadiographPreset(
    name="sc",
    sop_class="1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    attributes=(
        ("PatientName", "Test^Patient"),
        ("PatientID", "SECRET-ID-123"),
        ("Modality", "DX"),
        ("ViewPosition", "PA"),
    ),
    new_study=False,
    bits_stored_16=16,
    full_range_window=False,
)

_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))


def radiograph(pixels: np.ndarray, *, preset: RadiographPreset = DX_PRESENTATION, **attrs):
    """A single-frame greyscale dataset (Explicit VR Little Endian) holding ``pixels`` as stored values.

    Args:
        pixels: 2-D uint8 (8 bits allocated and stored), uint16 or int16 array (16 bits allocated,
            ``preset.bits_stored_16`` stored; int16 is signed, PixelRepresentation 1).
        preset: The object's class and fixed attributes (:data:`DX_PRESENTATION` or
            :data:`SECONDARY_CAPTURE`).
        **attrs: DICOM attributes to set or override after the preset's (``ViewPosition="LL"``,
            ``BitsStored=12``, ``NumberOfFrames=2``...); ``None`` deletes one. Applied verbatim: the
            window and the other attributes are not recomputed from them.

    Returns:
        A :class:`pydicom.dataset.FileDataset` with random SOP Instance (and, for a preset with
        ``new_study``, Study and Series Instance) UIDs.

    Raises:
        ValueError: ``pixels`` is not a 2-D array of one of those types.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if pixels.ndim != 2 or pixels.dtype not in _DTYPES:
        raise ValueError(f"expected a 2-D uint8, uint16 or int16 array, got {pixels.dtype} {pixels.shape}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = preset.sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if preset.new_study:
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
    for key, value in preset.attributes:
        setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    allocated = 8 if pixels.dtype == np.uint8 else 16
    signed = pixels.dtype == np.int16
    ds.BitsAllocated = allocated
    ds.BitsStored = 8 if allocated == 8 else preset.bits_stored_16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if preset.full_range_window:
        lo, hi = stored_range(ds.BitsStored, signed)
        ds.WindowCenter, ds.WindowWidth = (lo + hi) / 2.0, hi - lo
        ds.VOILUTFunction = "LINEAR_EXACT"
    set_attributes(ds, attrs)
    ds.PixelData = pixels.tobytes()
    return ds


def set_attributes(ds, attrs: Mapping[str, object]) -> None:
    """Sets DICOM attributes by keyword, verbatim; ``None`` deletes one (when present)."""
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)


def file_bytes(ds) -> bytes:
    """The dataset as a DICOM Part 10 file, in memory."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_pixel_data(ds, edit: Callable[[bytes], bytes]):
    """A copy of ``ds`` whose pixel data went through ``edit(data) -> data``: its single compressed
    frame (encapsulated again), or its uncompressed bytes. Damaged files for tests and benchmarks."""
    import copy

    from pydicom.encaps import encapsulate, generate_frames

    edited = copy.deepcopy(ds)  # Dataset.copy() shares its elements: the original would change too
    if edited.file_meta.TransferSyntaxUID.is_compressed:
        edited.PixelData = encapsulate([edit(next(generate_frames(edited.PixelData, number_of_frames=1)))])
    else:
        edited.PixelData = edit(bytes(edited.PixelData))
    return edited


def write_radiograph(
    path: str | Path, pixels: np.ndarray, *, preset: RadiographPreset = DX_PRESENTATION, **attrs
) -> Path:
    """Writes :func:`radiograph`'s dataset as a DICOM Part 10 file.

    Args:
        path: Output file (any name; no suffix is added).
        pixels: 2-D uint8, uint16 or int16 array of stored values (see :func:`radiograph`).
        preset: :data:`DX_PRESENTATION` (the default) or :data:`SECONDARY_CAPTURE`.
        **attrs: DICOM attributes to set, override or (``None``) delete.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    ds = radiograph(pixels, preset=preset, **attrs)
    ds.filename = str(path)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def stored_from_image(
    image: str | Path | np.ndarray, size: int | tuple[int, int] | None = None, bits: int = 12
) -> np.ndarray:
    """An ordinary image as ``bits``-bit stored values (full scale maps to ``2**bits - 1``).

    Args:
        image: An image file (read as 8-bit greyscale), a 2-D uint8 array, or a 2-D float array in
            [0, 1] (what :func:`cxr_edge.imaging.reader.read_image` returns).
        size: Side of the square result, or (rows, cols); ``None`` keeps the image's size. The image
            is resized (bilinear) before it is scaled.
        bits: Stored bits, 8 to 16.

    Returns:
        uint8 values for 8 bits, else uint16; an 8-bit value ``v`` becomes ``v * (2**bits - 1) // 255``.

    Raises:
        ValueError: The file cannot be read as an image, or the array is not 2-D uint8 or float.
    """
    if not 8 <= bits <= 16:
        raise ValueError(f"bits must be 8 to 16, got {bits}")
    if isinstance(image, str | Path):
        img = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot read {image} as an image")
    else:
        img = np.asarray(image)
        if img.ndim != 2 or not (img.dtype == np.uint8 or np.issubdtype(img.dtype, np.floating)):
            raise ValueError(f"expected a 2-D uint8 or float array, got {img.dtype} {img.shape}")
    if size:
        rows, cols = (size, size) if isinstance(size, int) else size
        src = img if img.dtype == np.uint8 else img.astype(np.float32)
        img = cv2.resize(src, (cols, rows), interpolation=cv2.INTER_LINEAR)
    full = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    if img.dtype == np.uint8:
        return (img.astype(np.uint32) * full // 255).astype(dtype)
    return np.rint(np.clip(img, 0.0, 1.0) * full).astype(dtype)
