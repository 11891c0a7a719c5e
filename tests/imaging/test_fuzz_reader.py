"""Property-based fuzzing of the image/DICOM reader and the input checks (hypothesis, fixed seed).

Whatever the bytes, :func:`cxr_edge.imaging.reader.decode_image` either returns a finite 2-D float32 image in
[0, 1] or raises a typed :class:`CxrEdgeError`; it never raises anything else and never hangs (each
call runs under an alarm). The quality checks accept whatever the reader returns.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from datetime import timedelta

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_edge.errors import CxrEdgeError
from cxr_edge.imaging.reader import decode_image
from cxr_edge.imaging.synth import write_radiograph
from cxr_edge.ops.quality import QualityConfig, check

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about mangled values

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=3),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextmanager
def time_limit(seconds: float):
    """Fails the example instead of hanging the suite."""

    def on_alarm(*_):
        raise TimeoutError(f"reader ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode_or_typed_error(data: bytes, name: str) -> None:
    with time_limit(5):
        try:
            image, info = decode_image(data, name=name)
        except CxrEdgeError:
            return
    assert image.ndim == 2 and image.dtype == np.float32 and image.size > 0
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    assert image.max() > image.min()  # a single intensity is refused by the reader
    check(image, info, QualityConfig())  # never raises for a decoded image


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """Small valid files of each format to mutate."""
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    grey = (rng.random((48, 40)) * 255).astype(np.uint8)
    pixels = (np.arange(48 * 40).reshape(48, 40) % 4096).astype(np.uint16)
    return {
        "png": cv2.imencode(".png", grey)[1].tobytes(),
        "jpg": cv2.imencode(".jpg", grey)[1].tobytes(),
        "dcm": write_radiograph(folder / "seed.dcm", pixels).read_bytes(),
    }


def _mutate(base: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    return bytes(data[: max(1, cut % len(data))] if cut is not None else data)


#: Values a broken modality writes into number attributes (NaN, infinities, overflowing products).
ODD = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 0.0])
edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12)
cuts = st.none() | st.integers(1, 1 << 20)


@FUZZ
@given(kind=st.sampled_from(["png", "jpg", "dcm"]), edits=edits, cut=cuts)
def test_mutated_files_give_an_image_or_a_typed_error(seeds, kind, edits, cut):
    decode_or_typed_error(_mutate(seeds[kind], edits, cut), f"fuzz.{kind}")


@FUZZ
@given(
    data=st.binary(max_size=2048),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\0" * 128 + b"DICM"]),
)
def test_random_bytes_give_a_typed_error(data, prefix):
    decode_or_typed_error(prefix + data, "random.dcm")


@FUZZ
@given(
    rows=st.integers(1, 64),
    cols=st.integers(1, 64),
    bits_stored=st.integers(1, 16),
    photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", ""]),
    modality=st.sampled_from(["DX", "CR", "CT", "OT", "", "SR"]),
    window=st.one_of(st.none(), st.tuples(st.floats(-5000, 5000) | ODD, st.floats(-10, 5000) | ODD)),
    slope=st.one_of(st.none(), st.floats(-4, 4, allow_nan=False) | ODD),
    short_by=st.integers(0, 3),
)
def test_dicom_header_values_give_an_image_or_a_typed_error(
    tmp_path_factory, rows, cols, bits_stored, photometric, modality, window, slope, short_by
):
    """Consistent encoding, inconsistent or odd header values (the kind a modality gets wrong)."""
    pixels = (np.arange(rows * cols).reshape(rows, cols) % 4096).astype(np.uint16)
    attrs = {"BitsStored": bits_stored, "HighBit": bits_stored - 1, "Modality": modality}
    if photometric:
        attrs["PhotometricInterpretation"] = photometric
    if window is not None:
        attrs["WindowCenter"], attrs["WindowWidth"] = window
    if slope is not None:
        attrs["RescaleSlope"], attrs["RescaleIntercept"] = slope, -1024
    path = tmp_path_factory.mktemp("hdr") / "x.dcm"
    data = write_radiograph(path, pixels, **attrs).read_bytes()
    decode_or_typed_error(data[: len(data) - short_by * 2], "x.dcm")
