"""read_image: PNG/JPEG/DICOM pixel values, metadata without identifiers, typed errors for bad input."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError, InputError, UnsupportedImageError
from cxr_edge.imaging.intensity import window
from cxr_edge.imaging.reader import ReadOptions, read_image
from cxr_edge.imaging.synth import SECONDARY_CAPTURE, write_radiograph

RNG = np.random.default_rng(0)


def ramp(h=40, w=50, hi=255, dtype=np.uint8) -> np.ndarray:
    return np.linspace(0, hi, h * w).reshape(h, w).round().astype(dtype)


# ------------------------------------------------------------------------------------------- PNG / JPEG


def test_png_8bit_is_scaled_by_255(tmp_path):
    pixels = ramp()
    cv2.imwrite(str(tmp_path / "a.png"), pixels)
    image, info = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (40, 50)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)
    assert (info.format, info.bits_stored, info.intensity, info.converted_from) == ("png", 8, "scaled", None)


def test_png_16bit_is_min_max_scaled(tmp_path):
    pixels = ramp(hi=4000, dtype=np.uint16) + 100
    cv2.imwrite(str(tmp_path / "a.png"), pixels)
    image, info = read_image(tmp_path / "a.png")
    expected = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert info.bits_stored == 16 and info.intensity == "minmax"


def test_jpeg_8bit(tmp_path):
    pixels = cv2.GaussianBlur(ramp(64, 64), (5, 5), 0)
    cv2.imwrite(str(tmp_path / "a.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])
    image, info = read_image(tmp_path / "a.jpg")
    assert info.format == "jpeg"
    assert np.abs(image * 255 - pixels).max() <= 3  # lossy, quality 100


def test_grey_stored_as_rgb_is_not_flagged_as_colour(tmp_path):
    pixels = ramp()
    cv2.imwrite(str(tmp_path / "g.png"), np.dstack([pixels] * 3))
    image, info = read_image(tmp_path / "g.png")
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)
    assert info.converted_from is None


def test_true_colour_is_converted_deliberately_or_rejected(tmp_path):
    bgr = RNG.integers(0, 255, size=(30, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    image, info = read_image(tmp_path / "c.png")
    np.testing.assert_allclose(image * 255, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), atol=1e-3)
    assert info.converted_from == "RGB"
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_image(tmp_path / "c.png", ReadOptions(color="reject"))


def test_real_kit_png(kit_png):
    image, info = read_image(kit_png)
    assert image.ndim == 2 and 0.0 <= image.min() < image.max() <= 1.0
    assert info.width == image.shape[1] and info.height == image.shape[0]


# ------------------------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_16bit_plain(tmp_path):
    pixels = ramp(hi=60000, dtype=np.uint16)
    image, info = read_image(write_radiograph(tmp_path / "a.dcm", pixels, preset=SECONDARY_CAPTURE))
    np.testing.assert_allclose(image, pixels / 60000.0, atol=1e-6)  # no VOI: min-max over the image
    assert (info.modality, info.view_position, info.intensity, info.inverted) == ("DX", "PA", "minmax", False)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = ramp(hi=4095, dtype=np.uint16)
    image, info = read_image(
        write_radiograph(
            tmp_path / "a.dcm",
            pixels,
            preset=SECONDARY_CAPTURE,
            PhotometricInterpretation="MONOCHROME1",
            BitsStored=12,
            HighBit=11,
        )
    )
    np.testing.assert_allclose(image, 1.0 - pixels / 4095.0, atol=1e-6)
    assert info.inverted and info.photometric == "MONOCHROME1"


def test_dicom_12bit_ignores_bits_above_bits_stored(tmp_path):
    pixels = ramp(hi=4095, dtype=np.uint16)
    dirty = pixels | np.uint16(0xF000)  # garbage in the unused high bits (overlay planes in old files)
    ref, _ = read_image(
        write_radiograph(tmp_path / "clean.dcm", pixels, preset=SECONDARY_CAPTURE, BitsStored=12, HighBit=11)
    )
    image, info = read_image(
        write_radiograph(tmp_path / "dirty.dcm", dirty, preset=SECONDARY_CAPTURE, BitsStored=12, HighBit=11)
    )
    np.testing.assert_array_equal(image, ref)
    assert info.bits_stored == 12


def test_dicom_rescale_then_window(tmp_path):
    stored = ramp(hi=4095, dtype=np.uint16)
    # Modality values = 2 * stored - 1000, window 1000 +- 1000 -> covers [0, 2000).
    image, info = read_image(
        write_radiograph(
            tmp_path / "a.dcm",
            stored,
            preset=SECONDARY_CAPTURE,
            BitsStored=12,
            HighBit=11,
            RescaleSlope=2,
            RescaleIntercept=-1000,
            WindowCenter=1000,
            WindowWidth=2000,
        )
    )
    modality = stored.astype(np.float64) * 2 - 1000
    expected = np.clip((modality - 999.5) / 1999 + 0.5, 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert info.intensity == "window"
    assert image.min() == 0.0 and image.max() == 1.0  # clipped on both sides


def test_window_functions_follow_the_standard():
    x = np.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(window(x, 50, 100, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(window(x, 50, 100, "SIGMOID"), 1 / (1 + np.exp(-4 * (x - 50) / 100)))
    np.testing.assert_allclose(window(np.array([49.5]), 50, 101), [0.5])


def test_dicom_signed_pixels(tmp_path):
    pixels = (ramp(hi=2000, dtype=np.uint16).astype(np.int32) - 1000).astype(np.int16)
    image, _ = read_image(
        write_radiograph(
            tmp_path / "a.dcm",
            pixels,
            preset=SECONDARY_CAPTURE,
            WindowCenter=0,
            WindowWidth=1000,
            VOILUTFunction="LINEAR_EXACT",
        )
    )
    np.testing.assert_allclose(image, np.clip(pixels / 1000.0 + 0.5, 0, 1), atol=1e-6)


def test_dicom_voi_lut_sequence_is_preferred(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    stored = ramp(hi=255, dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    lut = (np.arange(256, dtype=np.uint16) ** 2 // 16).astype(np.uint16)  # a curve, not a line
    item.LUTData = lut.tobytes()
    item["LUTData"].VR = "OW"
    path = write_radiograph(
        tmp_path / "a.dcm", stored, preset=SECONDARY_CAPTURE, WindowCenter=10, WindowWidth=5
    )
    ds = pydicom.dcmread(path)
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    image, info = read_image(path)
    assert info.intensity == "voi_lut"
    np.testing.assert_allclose(image, lut[stored] / lut.max(), atol=1e-6)


def test_dicom_jpeg_baseline_compressed(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    pixels = cv2.GaussianBlur(ramp(64, 64), (5, 5), 0)
    _, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])
    path = write_radiograph(tmp_path / "a.dcm", pixels, preset=SECONDARY_CAPTURE)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path)
    image, info = read_image(path)
    assert "JPEG Baseline" in info.transfer_syntax and info.intensity == "minmax"
    expected = (pixels - pixels.min()) / float(pixels.max() - pixels.min())
    assert np.abs(image - expected).max() <= 4 / 255  # lossy, quality 100


def test_dicom_jpeg2000_lossless_12bit(tmp_path):
    from pydicom.uid import JPEG2000Lossless

    pixels = RNG.integers(0, 4096, size=(48, 40), dtype=np.uint16)
    path = write_radiograph(
        tmp_path / "a.dcm",
        pixels,
        preset=SECONDARY_CAPTURE,
        BitsStored=12,
        HighBit=11,
        WindowCenter=2048,
        WindowWidth=4096,
    )
    ds = pydicom.dcmread(path)
    ds.compress(JPEG2000Lossless)
    ds.save_as(path)
    image, info = read_image(path)
    assert info.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
    np.testing.assert_allclose(image, window(pixels, 2048, 4096), atol=1e-6)  # lossless: exact


def test_dicom_info_carries_no_identifiers(tmp_path):
    _, info = read_image(write_radiograph(tmp_path / "a.dcm", ramp(), preset=SECONDARY_CAPTURE))
    text = repr(info.to_dict())
    assert "SECRET-ID-123" not in text and "Test^Patient" not in text


def test_dicom_without_preamble_by_suffix(tmp_path):
    path = write_radiograph(tmp_path / "a.dcm", ramp(), preset=SECONDARY_CAPTURE)
    raw = tmp_path / "raw.dcm"
    ds = pydicom.dcmread(path)
    ds.preamble = None
    ds.save_as(raw, enforce_file_format=False)
    image, _ = read_image(raw)
    assert image.shape == (40, 50)


def test_pydicom_colour_secondary_capture_is_converted():
    image, info = read_image(get_testdata_file("SC_rgb_jpeg.dcm"))
    assert info.converted_from == "RGB" and image.ndim == 2


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("CT_small.dcm", UnsupportedImageError, "received CT"),
        ("MR_small.dcm", UnsupportedImageError, "received MR"),
        ("rtplan.dcm", UnsupportedImageError, "no pixel data"),
        ("reportsi.dcm", UnsupportedImageError, "no pixel data"),
        ("examples_palette.dcm", UnsupportedImageError, "modality"),
    ],
)
def test_pydicom_objects_we_must_not_judge(name, error, match):
    with pytest.raises(error, match=match):
        read_image(get_testdata_file(name))


def test_multiframe_dicom_rejected(tmp_path):
    frames = np.stack([ramp(), ramp()])
    path = write_radiograph(
        tmp_path / "m.dcm", frames.reshape(80, 50), preset=SECONDARY_CAPTURE, NumberOfFrames=2
    )
    ds = pydicom.dcmread(path)
    ds.Rows = 40
    ds.save_as(path)
    with pytest.raises(UnsupportedImageError, match="multi-frame"):
        read_image(path)


def test_truncated_dicom_pixels(tmp_path):
    path = write_radiograph(tmp_path / "t.dcm", ramp(hi=4095, dtype=np.uint16), preset=SECONDARY_CAPTURE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ImageDecodeError):
        read_image(path)


def test_missing_empty_text_and_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.txt").write_text("patient looked fine\n" * 10)
    with pytest.raises(InputError, match="received text data"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)


def test_text_file_named_dcm_is_not_an_image(tmp_path):
    (tmp_path / "x.dcm").write_text("hello " * 100)
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "x.dcm")


def test_truncated_png_and_jpeg(tmp_path, kit_png):
    data = kit_png.read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated PNG"):
        read_image(tmp_path / "t.png")
    _, jpeg = cv2.imencode(".jpg", ramp(64, 64))
    (tmp_path / "t.jpg").write_bytes(jpeg.tobytes()[:-200])
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        read_image(tmp_path / "t.jpg")


def test_corrupt_png_body(tmp_path, kit_png):
    data = bytearray(kit_png.read_bytes())
    data[200:400] = bytes(200)  # zero a stretch of compressed IDAT data, keep the IEND chunk
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError):
        read_image(tmp_path / "c.png")


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_guard_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_with_size(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="100000x100000"):
        read_image(tmp_path / "bomb.png")
    pixels = ramp(hi=4095, dtype=np.uint16)
    with pytest.raises(ImageTooLargeError):
        read_image(
            write_radiograph(tmp_path / "a.dcm", pixels, preset=SECONDARY_CAPTURE),
            ReadOptions(max_pixels=1000),
        )


def test_errors_say_expected_and_received(tmp_path):
    (tmp_path / "notes.txt").write_text("x" * 100)
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "notes.txt")
    assert info.value.expected == "PNG, JPEG or DICOM data" and info.value.received == "text data"


def test_paths_are_accepted_as_str_and_path(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), ramp())
    a, _ = read_image(str(tmp_path / "a.png"))
    b, _ = read_image(Path(tmp_path / "a.png"))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["png", "jpg", "dcm"])
def test_mutated_files_raise_only_typed_errors(kind, tmp_path, kit_png):
    """A seeded mini-fuzz: flipped bytes, truncations and overwritten runs never escape as crashes."""
    from cxr_edge.errors import CxrEdgeError
    from cxr_edge.imaging.reader import decode_image

    if kind == "png":
        base = kit_png.read_bytes()
    elif kind == "jpg":
        base = cv2.imencode(".jpg", cv2.imread(str(kit_png), cv2.IMREAD_GRAYSCALE))[1].tobytes()
    else:
        pixels = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
        base = write_radiograph(
            tmp_path / "f.dcm",
            pixels,
            preset=SECONDARY_CAPTURE,
            BitsStored=12,
            WindowCenter=2000,
            WindowWidth=4000,
        ).read_bytes()
    rng = np.random.default_rng(7)
    for _ in range(150):
        data = bytearray(base)
        mode = rng.integers(3)
        if mode == 0:
            for _ in range(rng.integers(1, 20)):
                data[rng.integers(len(data))] = rng.integers(256)
        elif mode == 1:
            data = data[: rng.integers(1, len(data))]
        else:
            pos = int(rng.integers(len(data)))
            data[pos : pos + 100] = rng.integers(0, 256, 100).astype(np.uint8).tobytes()
        try:
            image, _ = decode_image(bytes(data), name=f"x.{kind}")
        except CxrEdgeError:
            continue
        assert image.ndim == 2 and np.isfinite(image).all()
