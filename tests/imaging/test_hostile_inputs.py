"""Inputs a hostile or unlucky user gives (issue 23's reproducers), each built here from a generated file.

Every case must end as a typed one-line error (or a row saying so), never as a crashed batch, a
classified NaN or blank image, memory spent on a size the file never meant, or a damaged image that a
codec reported and that was classified anyway.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import (
    CxrEdgeError,
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    UnsupportedImageError,
    one_line,
)
from cxr_edge.imaging import synth as dicom_synth
from cxr_edge.imaging.reader import decode_image, read_image
from cxr_edge.runtime.pipeline import unexpected_failure

SAMPLE = load_samples()[0].file
VARIANT = dicom_synth.VARIANTS[0]  # 12-bit MONOCHROME2 with a window


@pytest.fixture(scope="module")
def stored() -> np.ndarray:
    """A shipped sample as 512 x 448 12-bit stored values."""
    image, _ = read_image(SAMPLE)
    return dicom_synth.stored_values(image, (512, 448), VARIANT, seed=0)


def dicom(stored: np.ndarray, syntax: str = "explicit_le", **attrs) -> bytes:
    """A DX file of ``stored`` in ``syntax``, with attributes overridden (``None`` deletes one)."""
    ds = dicom_synth.build_dataset(stored, VARIANT, 0)
    assert dicom_synth.encode(ds, syntax)
    dicom_synth.set_attributes(ds, attrs)
    return dicom_synth.file_bytes(ds)


def with_frame(stored: np.ndarray, syntax: str, edit) -> bytes:
    """A file in ``syntax`` whose single compressed frame went through ``edit(frame) -> frame``."""
    ds = dicom_synth.build_dataset(stored, VARIANT, 0)
    assert dicom_synth.encode(ds, syntax)
    return dicom_synth.file_bytes(dicom_synth.with_pixel_data(ds, edit))


def refused(data: bytes, name: str = "x.dcm") -> CxrEdgeError:
    """The typed error ``decode_image`` raises for ``data`` (fails if it decodes)."""
    with pytest.raises(CxrEdgeError) as info:
        decode_image(data, name=name)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return info.value


# ------------------------------------------------------------------------------- 1, 2: odd file names


def _predict(args: list[str]):
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False)


def test_non_utf8_names_get_their_rows_and_resume_matches_them(tmp_path):
    """Defect 1: a non-UTF-8 name aborted the CSV batch (UnicodeEncodeError) and every --resume."""
    folder = tmp_path / "r"
    folder.mkdir()
    odd = os.fsdecode(b"m_\xff.png")
    for name in ("a.png", odd, "z.png"):
        (folder / name).write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "r.csv"
    result = _predict([str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("utf-8")  # valid UTF-8: the odd byte is written as \xff
    paths = [row["path"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert paths == [str(folder / "a.png"), str(folder) + "/m_\\xff.png", str(folder / "z.png")]
    for suffix in ("jsonl",):  # JSONL holds the same text
        jsonl = tmp_path / f"r.{suffix}"
        assert _predict([str(folder), "--out", str(jsonl)]).exit_code == 0
        assert "m_\\\\xff.png" in jsonl.read_text(encoding="utf-8")
    before = out.read_bytes()
    again = _predict([str(folder), "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "3 inputs already have a row, 0 to go" in again.output
    assert out.read_bytes() == before


@pytest.mark.parametrize("odd", ["cr\rx.png", "lf\nx.png", "ls\u2028x.png"])
def test_names_with_line_breaks_are_quoted_and_resume_does_not_grow_the_file(tmp_path, odd):
    """Defect 2: a name with \\r was written unquoted, and each --resume appended its row again."""
    folder = tmp_path / "r2"
    folder.mkdir()
    (folder / odd).write_bytes(SAMPLE.read_bytes())
    (folder / "plain.png").write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "r2.csv"
    assert _predict([str(folder), "--out", str(out)]).exit_code == 0
    first = out.read_bytes()
    for _ in range(2):
        result = _predict([str(folder), "--out", str(out), "--resume"])
        assert "2 inputs already have a row, 0 to go" in result.output
    assert out.read_bytes() == first
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["path"] for r in rows) == sorted([str(folder / odd), str(folder / "plain.png")])
    assert all(r["status"] == "ok" for r in rows)


def test_error_lines_and_messages_stay_on_one_line(tmp_path):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "bad\nname.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = _predict([str(folder)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad\\nname.png" in errors[0]
    assert one_line("a\r\nb\u2028c\x00") == "a\\r\\nb\\u2028c\\x00"
    assert str(InputError("x", received="two\nlines")) == "x; received two\\nlines"


# ------------------------------------------------------------------------ 3: NaN and constant images


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"WindowCenter": "NaN"}, "invalid WindowCenter"),
        ({"WindowCenter": "inf"}, "invalid WindowCenter"),
        ({"WindowWidth": "inf"}, "invalid WindowWidth"),
        ({"RescaleSlope": "NaN", "RescaleIntercept": 0}, "invalid RescaleSlope"),
        ({"RescaleSlope": "inf", "RescaleIntercept": 0}, "invalid RescaleSlope"),
        ({"RescaleSlope": 0, "RescaleIntercept": 0}, "invalid RescaleSlope"),
        ({"RescaleSlope": "1e308", "RescaleIntercept": 0}, "beyond floating point"),
        ({"RescaleSlope": "-1e308", "RescaleIntercept": 0}, "beyond floating point"),
        ({"RescaleSlope": 1, "RescaleIntercept": "NaN"}, "invalid RescaleIntercept"),
        ({"VOILUTFunction": "SIGMOID", "WindowCenter": "NaN"}, "invalid WindowCenter"),
        ({"WindowCenter": "1e308"}, "single intensity"),
    ],
)
def test_intensity_attributes_that_give_nan_or_one_value_are_refused(stored, attrs, match):
    """Defect 3: these gave an all-NaN (or constant) image, which predict classified "normal 0.688"."""
    error = refused(dicom(stored, **attrs))
    assert isinstance(error, UnsupportedImageError) and match in str(error)


def test_predict_gives_a_nan_window_an_error_row_not_a_label(stored, tmp_path):
    (tmp_path / "nan.dcm").write_bytes(dicom(stored, WindowCenter="NaN"))
    (tmp_path / "ok.dcm").write_bytes(dicom(stored))
    out = tmp_path / "rows.csv"
    assert _predict([str(tmp_path / "nan.dcm"), str(tmp_path / "ok.dcm"), "--out", str(out)]).exit_code == 2
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert rows["nan.dcm"]["status"] == "error" and rows["nan.dcm"]["label"] == ""
    assert rows["nan.dcm"]["error"].startswith("UnsupportedImageError: invalid WindowCenter")
    assert rows["ok.dcm"]["status"] == "ok"


def test_constant_and_degenerate_pngs_are_refused():
    one_pixel = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    flat = cv2.imencode(".png", np.full((300, 300), 7, np.uint8))[1].tobytes()
    for data in (one_pixel, flat):
        assert "single intensity" in str(refused(data, "x.png"))


def test_every_decoded_image_is_finite_in_range_and_of_its_declared_size(stored):
    image, info = decode_image(dicom(stored), "ok.dcm")
    assert image.shape == (512, 448) and (info.height, info.width) == (512, 448)
    assert np.isfinite(image).all() and 0.0 <= image.min() < image.max() <= 1.0


def test_a_broken_voi_lut_is_a_typed_one_line_error(stored):
    """Raw internals (AttributeError 'LUTDescriptor', OverflowError) were the "received" text."""
    ds_bytes = []
    for edit in ("no_descriptor", "eight_bit_overflow"):
        ds = dicom_synth.build_dataset(stored, dicom_synth.VARIANTS[2], 0)  # a VOI LUT variant
        item = ds.VOILUTSequence[0]
        if edit == "no_descriptor":
            del item.LUTDescriptor
        else:
            item.LUTDescriptor = [4096, 0, 8]
        ds_bytes.append(dicom_synth.file_bytes(ds))
    for data in ds_bytes:
        error = refused(data)
        assert "invalid VOILUTSequence" in str(error)
        assert "AttributeError:" not in str(error) and "OverflowError:" not in str(error)


def test_invalid_pixel_descriptions_name_the_attribute(stored):
    assert "BitsStored 17" in str(refused(dicom(stored, BitsStored=17)))
    assert "invalid NumberOfFrames" in str(refused(dicom(stored, NumberOfFrames="-1")))
    assert "SamplesPerPixel" in str(refused(dicom(stored, SamplesPerPixel=3)))


# ------------------------------------------------------------------------------------ 4: bombs


def deflate_bomb(stored: np.ndarray, padding: int) -> bytes:
    """A Deflated Explicit VR file whose dataset ends in ``padding`` zero bytes (Data Set Trailing
    Padding), compressed as it is made: a few hundred KB on disk."""
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = dicom_synth.build_dataset(stored, VARIANT, 0)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    from pydicom.filebase import DicomFileLike

    fp = DicomFileLike(body)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(body.getvalue())]
    parts.append(compressor.compress(struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding)))
    chunk = bytes(1 << 20)
    for _ in range(padding >> 20):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    head = io.BytesIO()
    head.write(b"\0" * 128 + b"DICM")
    meta = DicomFileLike(head)
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    return head.getvalue() + b"".join(parts)


def test_a_deflate_bomb_is_refused_before_it_is_inflated(stored):
    """Defect 4a: 1.2 MB inflating to 1 GiB reached 2.3 GB RSS and was classified (64 MiB here)."""
    data = deflate_bomb(stored, 64 << 20)
    assert len(data) < 1 << 20
    error = refused(data)
    assert isinstance(error, ImageTooLargeError) and "larger than its image needs" in str(error)
    # The same file without the padding is an ordinary deflated image.
    image, info = decode_image(deflate_bomb(stored, 0), "ok.dcm")
    assert info.transfer_syntax == "Deflated Explicit VR Little Endian" and image.shape == (512, 448)


@pytest.mark.parametrize("syntax", ["jpeg_baseline", "jpeg_extended", "jpegls_lossless", "j2k_lossless"])
def test_a_frame_declaring_another_size_is_refused_before_decoding(stored, syntax):
    """Defect 4b: a 512 x 448 header over a frame claiming 20000 x 20000 took 2.2 GB and 8 s."""

    def enlarge(frame: bytes) -> bytes:
        frame = bytearray(frame)
        if syntax.startswith("j2k"):
            at = frame.find(b"\xff\x4f\xff\x51") + 8
            frame[at : at + 8] = struct.pack(">II", 20000, 20000)
        else:
            marker = {
                "jpeg_baseline": b"\xff\xc0",
                "jpeg_extended": b"\xff\xc1",
                "jpegls_lossless": b"\xff\xf7",
            }
            at = frame.find(marker[syntax]) + 5
            frame[at : at + 4] = struct.pack(">HH", 20000, 20000)
        return bytes(frame)

    error = refused(with_frame(stored, syntax, enlarge))
    assert "differs from the DICOM header" in str(error) and "20000x20000" in str(error)


def test_rle_output_is_bounded_by_the_header(stored):
    """PackBits expands 64x: a frame whose segments decode past the declared size is refused."""

    def grow(frame: bytes) -> bytes:
        runs = bytes([0x81, 0x00]) * (1 << 16)  # 8 MiB per segment
        return struct.pack("<16I", 2, 64, 64 + len(runs), *([0] * 13)) + runs + runs

    assert isinstance(refused(with_frame(stored, "rle", grow)), ImageDecodeError)


# ------------------------------------------------------------------------ 5, 6: damage codecs report


def test_htj2k_errors_reported_only_as_ignored_exceptions_are_raised(stored):
    """Defect 5: OpenJPH's errors were printed as "Exception ignored in _copy_from_codestream" and
    the damaged pixels classified. Every flipped file OpenJPH complains about must be refused."""
    import imagecodecs
    from pydicom.encaps import generate_frames

    ds = dicom_synth.build_dataset(stored, VARIANT, 0)
    assert dicom_synth.encode(ds, "htj2k_lossy")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    rng = np.random.default_rng(0)
    complained = 0
    for _ in range(12):
        at = int(rng.integers(len(frame) // 4, len(frame) - 8))
        flipped = frame[:at] + bytes([frame[at] ^ 0x5A]) + frame[at + 1 :]
        caught = []
        previous, sys.unraisablehook = sys.unraisablehook, caught.append
        try:
            try:
                imagecodecs.htj2k_decode(flipped)
            except Exception:
                caught.append("raised")
        finally:
            sys.unraisablehook = previous
        data = with_frame(stored, "htj2k_lossy", lambda _f, flipped=flipped: flipped)
        if caught:
            complained += 1
            assert isinstance(refused(data), ImageDecodeError)
    assert complained >= 3  # the seed gives several damaged frames OpenJPH notices


@pytest.mark.parametrize(
    "syntax", ["jpeg_baseline", "j2k_lossless", "j2k_lossy", "htj2k_lossless", "htj2k_lossy"]
)
def test_a_frame_cut_short_with_an_end_marker_appended_is_refused(stored, syntax):
    """Defect 6 (DICOM): libjpeg grey-fills and OpenJPH blurs a stream cut at half with FFD9 added."""
    error = refused(with_frame(stored, syntax, lambda f: f[: len(f) // 2] + b"\xff\xd9"))
    assert isinstance(error, ImageDecodeError)


def test_a_damaged_jpeg_file_is_refused():
    """Defect 6 (plain JPEG): cut at half with FFD9 appended, or its declared height raised."""
    image, _ = read_image(SAMPLE)
    jpeg = cv2.imencode(".jpg", (image * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    cut = jpeg[: len(jpeg) // 2] + b"\xff\xd9"
    taller = bytearray(jpeg)
    at = taller.find(b"\xff\xc0") + 5
    taller[at : at + 2] = struct.pack(">H", image.shape[0] + 64)
    for data in (cut, bytes(taller)):
        error = refused(data, "x.jpg")
        assert isinstance(error, ImageDecodeError) and "premature end" in str(error)
    decoded, _ = decode_image(jpeg, "ok.jpg")  # the intact file still reads, as OpenCV read it
    assert np.array_equal(decoded, cv2.imdecode(np.frombuffer(jpeg, np.uint8), 0) / np.float32(255))


def test_jpeg_ls_data_charls_rejects_gets_no_second_try(stored):
    """CharLS rejected these; pydicom's fallback decoded them anyway and they were classified."""
    rng = np.random.default_rng(3)

    def flip(frame: bytes) -> bytes:
        at = int(rng.integers(len(frame) // 4, len(frame) - 8))
        return frame[:at] + bytes([frame[at] ^ 0x5A]) + frame[at + 1 :]

    for _ in range(3):
        error = refused(with_frame(stored, "jpegls_lossless", flip))
        assert "corrupt compressed pixel data" in str(error) and "JPEG-LS" in str(error)


def test_unexpected_failures_keep_internal_text_out_of_the_row():
    error = unexpected_failure(IndexError("index 4096 is out of bounds for axis 0 with size 4096\nmore"))
    assert "out of bounds" not in str(error) and "IndexError" in str(error) and "\n" not in str(error)


def test_corpus_of_mutations_gives_only_typed_one_line_errors(stored):
    """Truncations and byte flips of every syntax (the issue's 547-file sweep in small)."""
    rng = np.random.default_rng(7)
    outcomes = {"ok": 0, "refused": 0}
    for syntax in dicom_synth.SYNTAXES:
        data = dicom(stored, syntax)
        for _ in range(4):
            cut = data[: int(rng.integers(200, len(data)))]
            flipped = bytearray(data)
            flipped[int(rng.integers(400, len(data)))] ^= 0xA5
            for mutated in (cut, cut + b"\xff\xd9", bytes(flipped)):
                try:
                    image, _ = decode_image(mutated, "m.dcm")
                except CxrEdgeError as exc:
                    assert "\n" not in str(exc)
                    outcomes["refused"] += 1
                    continue
                assert np.isfinite(image).all() and 0.0 <= image.min() < image.max() <= 1.0
                outcomes["ok"] += 1
    assert outcomes["refused"] > outcomes["ok"] > 0  # flips in entropy-coded data can stay undetected
