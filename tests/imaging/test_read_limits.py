"""The reader's limits (issue 29): file size, inflated size, pixels and components declared anywhere,
frames, and the per-input deadline, memory ceiling and crash isolation of the decode worker."""

from __future__ import annotations

import dataclasses
import os
import signal
import struct
import threading
import time

import cv2
import numpy as np
import pytest

from cxr_edge.errors import (
    DecodeLimitError,
    ImageDecodeError,
    ImageTooLargeError,
    SpecError,
    UnsupportedImageError,
)
from cxr_edge.imaging import isolated
from cxr_edge.imaging import synth as dicom_synth
from cxr_edge.imaging.image import TIMEOUT_ENV, ReadOptions
from cxr_edge.imaging.reader import decode_image, read_image

VARIANT = dicom_synth.VARIANTS[0]
ISOLATED = ReadOptions(decode_timeout_s=30.0)


@pytest.fixture(scope="module")
def stored() -> np.ndarray:
    rng = np.random.default_rng(0)
    return dicom_synth.stored_values(rng.random((64, 56)).astype(np.float32), (96, 80), VARIANT, seed=0)


def encoded(stored: np.ndarray, syntax: str, **attrs) -> bytes:
    ds = dicom_synth.build_dataset(stored, VARIANT, 0)
    assert dicom_synth.encode(ds, syntax)
    dicom_synth.set_attributes(ds, attrs)
    return dicom_synth.file_bytes(ds)


def with_siz(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """``data`` with one field of its JPEG 2000 SIZ marker (offset from the SIZ marker) replaced."""
    at = data.find(b"\xff\x4f\xff\x51") + 2
    out = bytearray(data)
    struct.pack_into(fmt, out, at + offset, value)
    return bytes(out)


def test_cart_defaults_and_their_checks():
    options = ReadOptions()
    assert (options.max_pixels, options.max_bytes, options.max_inflated_bytes) == (
        36_000_000,
        128 << 20,
        128 << 20,
    )
    assert options.decode_memory_mb == 2048
    with pytest.raises(SpecError):
        ReadOptions(max_pixels=0)
    with pytest.raises(SpecError):
        ReadOptions(decode_timeout_s=0)


def test_the_deadline_can_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert ReadOptions().decode_timeout_s is None
    monkeypatch.setenv(TIMEOUT_ENV, "15")
    assert ReadOptions().decode_timeout_s == 15.0
    monkeypatch.setenv(TIMEOUT_ENV, "0")
    assert ReadOptions().decode_timeout_s is None
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(SpecError, match=TIMEOUT_ENV):
        ReadOptions()


def test_sizes_declared_by_a_header_are_refused_before_decoding(stored):
    png = bytearray(cv2.imencode(".png", np.arange(64, dtype=np.uint8).reshape(8, 8))[1].tobytes())
    struct.pack_into(">II", png, 16, 6001, 6000)  # IHDR: 36.006 MP
    with pytest.raises(ImageTooLargeError, match="6001x6000"):
        decode_image(bytes(png), "big.png")
    with pytest.raises(ImageTooLargeError, match="file too large"):
        decode_image(encoded(stored, "explicit_le"), "x.dcm", ReadOptions(max_bytes=1000))


def test_frames_are_refused_before_a_deflated_dataset_is_inflated(stored):
    with pytest.raises(UnsupportedImageError, match="multi-frame"):
        decode_image(encoded(stored, "deflated", NumberOfFrames=500), "x.dcm")
    data = encoded(stored, "deflated")
    assert decode_image(data, "x.dcm")[0].shape == stored.shape
    # The inflated size has its own limit (here below the image's 15 KiB).
    with pytest.raises(ImageTooLargeError):
        decode_image(data, "x.dcm", ReadOptions(max_inflated_bytes=8 << 10))


@pytest.mark.parametrize("syntax", ["htj2k_lossless", "htj2k_lossy", "j2k_lossless"])
def test_a_siz_marker_the_standard_forbids_is_refused(stored, syntax):
    """The fuzz campaign's first finding: a tile height of 0 made OpenJPH divide by zero (SIGFPE: the
    process died). SIZ fields (from the marker): Xsiz 6, ..., XTsiz 22, YTsiz 26, Csiz 38, Ssiz 40."""
    data = encoded(stored, syntax)
    assert decode_image(data, "x.dcm")[0].shape == stored.shape
    for offset, fmt, value, found in [
        (26, ">I", 0, "tiles of"),  # YTsiz 0 (the campaign's input: XTsiz 0x444d0000, YTsiz 0)
        (22, ">I", 0, "tiles of"),
        (41, ">B", 0, "sampled every"),  # XRsiz 0
        (40, ">B", 60, "of 61 bits"),  # a precision of 61 bits
    ]:
        with pytest.raises(ImageDecodeError, match=found):
            decode_image(with_siz(data, offset, fmt, value), "x.dcm")


def test_components_declared_by_a_codestream_must_match_the_header(stored):
    """A SIZ or SOF with more components than Samples per Pixel would make the decoder allocate a plane
    for each (16384 planes of the header's size from a few bytes)."""
    data = encoded(stored, "j2k_lossless")
    with pytest.raises(ImageDecodeError):  # Csiz 3 in a SIZ of one component's length
        decode_image(with_siz(data, 38, ">H", 3), "x.dcm")
    jpeg = bytearray(encoded(stored, "jpeg_lossless_sv1"))
    sof = jpeg.find(b"\xff\xc3")
    jpeg[sof + 9] = 3  # Nf: three components
    with pytest.raises(ImageDecodeError, match="components differ"):
        decode_image(bytes(jpeg), "x.dcm")


# ------------------------------------------------------------------------------------------- isolated


@pytest.mark.parametrize(
    "syntax", ["explicit_le", "deflated", "jpeg_baseline", "j2k_lossless", "htj2k_lossy", "rle"]
)
def test_an_isolated_decode_gives_the_same_image_and_info(stored, syntax, tmp_path):
    data = encoded(stored, syntax)
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    for options in (ReadOptions(decode_timeout_s=None), ReadOptions(min_side=24, decode_timeout_s=None)):
        image, info = read_image(path, options)
        image2, info2 = read_image(path, dataclasses.replace(options, decode_timeout_s=30.0))
        assert np.array_equal(image, image2) and info == info2 and image2.dtype == np.float32
        assert np.array_equal(
            image, decode_image(data, str(path), dataclasses.replace(options, decode_timeout_s=30.0))[0]
        )


def test_typed_errors_come_back_from_the_worker_as_they_are(stored):
    bad = with_siz(encoded(stored, "htj2k_lossless"), 26, ">I", 0)
    with pytest.raises(ImageDecodeError) as here:
        decode_image(bad, "x.dcm")
    with pytest.raises(ImageDecodeError) as there:
        decode_image(bad, "x.dcm", ISOLATED)
    assert type(here.value) is type(there.value) and str(here.value) == str(there.value)
    with pytest.raises(UnsupportedImageError, match="modality"):
        decode_image(encoded(stored, "explicit_le", Modality="CT"), "x.dcm", ISOLATED)


def _big_j2k() -> bytes:
    rng = np.random.default_rng(1)
    big = (rng.random((1024, 1024)) * 4095).astype(np.uint16)
    ds = dicom_synth.build_dataset(big, VARIANT, 0)
    assert dicom_synth.encode(ds, "j2k_lossless")
    return dicom_synth.file_bytes(ds)


def test_a_decode_past_its_deadline_is_stopped_and_the_next_one_runs(stored):
    data = _big_j2k()  # ~0.1 s of OpenJPEG
    t0 = time.monotonic()
    with pytest.raises(DecodeLimitError) as info:
        decode_image(data, "x.dcm", ReadOptions(decode_timeout_s=0.005))
    assert info.value.limit == "decode_time" and time.monotonic() - t0 < 5
    image, _ = decode_image(encoded(stored, "explicit_le"), "x.dcm", ISOLATED)  # a fresh worker
    assert image.shape == stored.shape


def test_a_worker_that_dies_is_a_typed_error_not_a_dead_caller(stored):
    """A codec's segmentation fault (here: SIGKILL from outside) costs the worker only."""
    data = _big_j2k()
    isolated.prewarm(ISOLATED)
    worker = isolated._IDLE[ISOLATED.decode_memory_mb][-1]  # the one the next decode takes
    timer = threading.Timer(0.02, lambda: os.kill(worker.proc.pid, signal.SIGKILL))
    timer.start()
    try:
        with pytest.raises(DecodeLimitError) as info:
            decode_image(data, "x.dcm", ISOLATED)
    finally:
        timer.cancel()
    assert info.value.limit in ("decoder_crash", "decode_time") and "SIGKILL" in str(info.value)
    assert decode_image(encoded(stored, "explicit_le"), "x.dcm", ISOLATED)[0].shape == stored.shape


def test_a_decode_past_the_memory_ceiling_is_refused(stored):
    big = np.zeros((3000, 3000), np.uint16)
    big[::7] = 4000
    ds = dicom_synth.build_dataset(big, VARIANT, 0)
    data = dicom_synth.file_bytes(ds)  # 18 MB of pixels, 36 MB as float32
    with pytest.raises(DecodeLimitError) as info:
        decode_image(data, "x.dcm", ReadOptions(decode_timeout_s=30.0, decode_memory_mb=64))
    assert info.value.limit in ("decode_memory", "decoder_crash")
