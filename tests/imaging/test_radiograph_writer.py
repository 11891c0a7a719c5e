"""The library's single-frame writer (``cxr_edge.imaging.synth.write_radiograph``): presets, overrides."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cxr_edge.dataset.samples import load_samples
from cxr_edge.imaging.reader import read_image
from cxr_edge.imaging.synth import (
    DX_PRESENTATION,
    SECONDARY_CAPTURE,
    radiograph,
    stored_from_image,
    write_radiograph,
)


def test_presets_differ_in_class_bits_window_and_identifiers(tmp_path):
    pixels = (np.arange(40 * 50).reshape(40, 50) % 4096).astype(np.uint16)
    dx = pydicom.dcmread(write_radiograph(tmp_path / "dx.dcm", pixels))
    sc = pydicom.dcmread(write_radiograph(tmp_path / "sc.dcm", pixels, preset=SECONDARY_CAPTURE))
    assert dx.SOPClassUID == DX_PRESENTATION.sop_class == dx.file_meta.MediaStorageSOPClassUID
    assert (dx.BitsAllocated, dx.BitsStored, dx.HighBit, dx.PixelRepresentation) == (16, 12, 11, 0)
    assert (float(dx.WindowCenter), float(dx.WindowWidth), dx.VOILUTFunction) == (
        2047.5,
        4095.0,
        "LINEAR_EXACT",
    )
    assert dx.PatientID == "PAT-0042-SECRET" and "StudyInstanceUID" in dx
    assert sc.SOPClassUID == SECONDARY_CAPTURE.sop_class and (sc.BitsStored, sc.HighBit) == (16, 15)
    assert "WindowCenter" not in sc and "StudyInstanceUID" not in sc and sc.PatientID == "SECRET-ID-123"
    assert dx.SOPInstanceUID != sc.SOPInstanceUID
    np.testing.assert_array_equal(dx.pixel_array, pixels)


def test_eight_bit_and_signed_pixels(tmp_path):
    dx8 = radiograph(np.full((8, 8), 7, np.uint8))
    assert (dx8.BitsAllocated, dx8.BitsStored, float(dx8.WindowCenter), float(dx8.WindowWidth)) == (
        8,
        8,
        127.5,
        255.0,
    )
    signed = np.arange(-32, 32, dtype=np.int16).reshape(8, 8)
    ds = pydicom.dcmread(write_radiograph(tmp_path / "s.dcm", signed))
    assert ds.PixelRepresentation == 1 and (float(ds.WindowCenter), float(ds.WindowWidth)) == (-0.5, 4095.0)
    np.testing.assert_array_equal(ds.pixel_array, signed)


def test_attributes_override_add_and_delete():
    ds = radiograph(np.zeros((4, 4), np.uint8), ViewPosition="LL", PatientAge="054Y", WindowCenter=None)
    assert ds.ViewPosition == "LL" and ds.PatientAge == "054Y"
    assert "WindowCenter" not in ds and "WindowWidth" in ds  # applied verbatim, nothing recomputed


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4), np.float32), np.zeros((2, 4, 4), np.uint16), np.zeros((4, 4), np.int32)]
)
def test_only_2d_uint8_uint16_int16_arrays_are_written(pixels):
    with pytest.raises(ValueError, match="2-D uint8, uint16 or int16"):
        radiograph(pixels)


def test_stored_from_image_scales_files_and_arrays_alike():
    png = load_samples()[0].file
    stored = stored_from_image(png, 64)
    assert stored.shape == (64, 64) and stored.dtype == np.uint16 and stored.max() <= 4095
    assert stored_from_image(png, (32, 48), bits=8).shape == (32, 48)
    assert stored_from_image(np.array([[0, 255]], np.uint8), bits=16).tolist() == [[0, 65535]]
    image, _ = read_image(png)  # float32 in [0, 1]
    assert np.abs(stored_from_image(image).astype(int) - stored_from_image(png).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="bits"):
        stored_from_image(png, bits=17)
