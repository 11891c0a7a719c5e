"""The fast DICOM decode path: golden parity with pydicom per transfer syntax, reduced decoding, the gate.

The corpus is the benchmark's (``benchmarks/dicom_corpus.py``) at a small detector size, so every
syntax and intensity variant is covered in a few seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr_edge.benchmarks.dicom_corpus import make_corpus
from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.bundle.manifest import DecodeConfig
from cxr_edge.errors import ImageDecodeError
from cxr_edge.evaluation.decode_gate import min_side_for
from cxr_edge.imaging.pixels import (
    KINDS,
    area_reduce,
    choose_reduction,
    decode_stored,
    glymur_available,
    inflate_part10,
)
from cxr_edge.imaging.reader import ReadOptions, read_image
from cxr_edge.imaging.synth import SYNTAXES
from cxr_edge.runtime.pipeline import Predictor

LOSSY = {"jpeg_baseline", "jpeg_extended", "j2k_lossy", "htj2k_lossy", "jpegls_near"}
# Lossy codecs are not bit-exact across decoder libraries (IDCT / inverse-wavelet rounding): pydicom
# picks pylibjpeg-libjpeg or OpenJPEG, the fast path libjpeg-turbo or OpenJPH. At most 2 stored units.
LOSSY_TOLERANCE = 2
# JPEG-LS near-lossless is integer-exact whatever the decoder (CharLS on both paths).
EXACT = set(SYNTAXES) - LOSSY | {"jpegls_near", "j2k_lossy"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("corpus")
    rows = make_corpus(out, size=(266, 320), images=1, pydicom_files=True)
    return [r | {"file": str(out / r["path"])} for r in rows]


def _files(corpus, syntaxes) -> list[dict]:
    return [r for r in corpus if r["syntax"] in syntaxes]


def test_corpus_covers_every_syntax_and_variant(corpus):
    syntaxes = {r["syntax"] for r in corpus}
    assert set(SYNTAXES) <= syntaxes
    assert {r["photometric"] for r in corpus} >= {"MONOCHROME1", "MONOCHROME2"}
    assert {int(r["bits"]) for r in corpus if r["variant"] != "real"} >= {8, 10, 12, 14, 16}
    assert any(s.startswith("pydicom:") for s in syntaxes)


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_stored_values_match_pydicom(corpus, syntax):
    rows = _files(corpus, {syntax})
    assert rows
    for row in rows:
        ds = pydicom.dcmread(row["file"])
        fast = decode_stored(ds)
        assert fast is not None, f"{row['path']} fell back to pydicom"
        ref = ds.pixel_array
        assert fast.values.shape == ref.shape and fast.values.dtype == ref.dtype
        if syntax in EXACT:
            np.testing.assert_array_equal(fast.values, ref, err_msg=row["path"])
        else:
            diff = np.abs(fast.values.astype(np.int64) - ref.astype(np.int64))
            assert diff.max() <= LOSSY_TOLERANCE, row["path"]


def test_real_pydicom_files_match(corpus):
    checked = 0
    for row in (r for r in corpus if r["syntax"].startswith("pydicom:")):
        ds = pydicom.dcmread(row["file"])
        try:
            ref = ds.pixel_array
        except Exception:  # e.g. JPEG-lossy.dcm: none of pydicom's plugins decodes it here
            continue
        fast = decode_stored(ds)
        if fast is None or ref.ndim != 2:
            continue
        lossy = "JPEG Extended" in row["syntax"] or row["syntax"].endswith("JPEG 2000 Image Compression")
        diff = np.abs(fast.values.astype(np.int64) - ref.astype(np.int64)).max()
        assert diff <= (LOSSY_TOLERANCE if lossy else 0), row["path"]
        checked += 1
    assert checked >= 8


def test_read_image_fast_equals_the_previous_path(corpus):
    for row in _files(corpus, EXACT):
        old, old_info = read_image(row["file"], ReadOptions(decoder="pydicom"))
        new, info = read_image(row["file"])
        np.testing.assert_array_equal(new, old, err_msg=row["path"])
        assert new.dtype == np.float32
        assert (info.intensity, info.inverted) == (old_info.intensity, old_info.inverted)
        assert info.decoder != "pydicom" and old_info.decoder == "pydicom"


def test_choose_reduction():
    assert choose_reduction(2130, 2560, None) == 1
    assert choose_reduction(2130, 2560, 512) == 4  # 532 >= 512
    assert choose_reduction(2130, 2560, 266) == 8
    assert choose_reduction(2130, 2560, 600) == 2
    assert choose_reduction(400, 500, 512) == 1  # never below the asked size


@pytest.mark.parametrize("syntax", ["explicit_le", "rle", "jpeg_baseline", "j2k_lossless", "htj2k_lossless"])
def test_reduced_decode_is_close_to_averaging_the_full_image(corpus, syntax):
    row = next(r for r in _files(corpus, {syntax}) if r["variant"] == "m2_window_12")
    ds = pydicom.dcmread(row["file"])
    full = decode_stored(ds).values
    reduced = decode_stored(ds, reduction=2)
    assert reduced.reduction == 2
    rows, cols = reduced.values.shape
    assert rows in (full.shape[0] // 2, -(-full.shape[0] // 2)) and cols in (
        full.shape[1] // 2,
        -(-full.shape[1] // 2),
    )
    ref = area_reduce(full, 2)[: min(rows, full.shape[0] // 2), : min(cols, full.shape[1] // 2)]
    got = reduced.values[: ref.shape[0], : ref.shape[1]].astype(np.float64)
    full_scale = (1 << int(ds.BitsStored)) - 1
    # Codecs low-pass differently from a box average (DCT scaling, wavelet low band): close on average.
    assert np.mean(np.abs(got - ref)) / full_scale < 0.01
    native = syntax in ("jpeg_baseline", "htj2k_lossless") or (
        syntax == "j2k_lossless" and glymur_available()
    )
    assert ("area" not in reduced.decoder) == native


def test_read_image_reduced_reports_it(corpus):
    row = next(r for r in _files(corpus, {"j2k_lossless"}) if r["variant"] == "m1_window_12")
    image, info = read_image(row["file"], ReadOptions(min_side=100))
    assert info.reduction == 2 and image.shape == (133, 160)
    assert info.inverted and image.min() >= 0.0 and image.max() <= 1.0
    full, _ = read_image(row["file"])
    assert abs(float(image.mean()) - float(full.mean())) < 0.01


def test_truncated_compressed_data_is_a_typed_error(corpus, tmp_path):
    for syntax in ("j2k_lossless", "jpegls_lossless", "rle", "jpeg_lossless_sv1"):
        row = _files(corpus, {syntax})[0]
        data = Path(row["file"]).read_bytes()
        bad = tmp_path / f"{syntax}.dcm"
        bad.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(ImageDecodeError):
            read_image(bad)


def test_min_side_for_bundles(first_release_bundle):
    bundle = Bundle.load(first_release_bundle)
    spec = bundle.manifest.preprocess
    expected = int(np.ceil(2 * max(spec.input_size) / (1 - 2 * spec.border)))
    assert min_side_for(bundle.manifest) == expected


def test_predictor_follows_the_bundle_decode_verdict(corpus, first_release_bundle, tmp_path):
    row = next(r for r in _files(corpus, {"j2k_lossless"}) if r["variant"] == "m2_window_12")
    copy = tmp_path / "gated"
    shutil.copytree(first_release_bundle, copy)
    bundle = Bundle.load(copy)
    for reduced, expected in ((True, 2), (False, 1)):
        config = DecodeConfig(
            min_side=100, reduced=reduced, kinds=KINDS if reduced else (), gate={"images": 0}
        )
        write_manifest(copy, dataclasses.replace(bundle.manifest, decode=config))
        pred = Predictor(Bundle.load(copy)).predict_file(row["file"])
        assert pred.info.reduction == expected
        if pred.cam is not None:  # the heat map lands on the full-size image at the same place
            heat = pred.heatmap((266, 320))
            ys, xs = np.nonzero(heat)
            x0, y0, x1, y1 = (v * expected for v in pred.cam_region)
            assert abs(xs.min() - x0) <= 2 and abs(xs.max() + 1 - x1) <= 2
            assert abs(ys.min() - y0) <= 2 and abs(ys.max() + 1 - y1) <= 2
    # The manifest records the verdict as plain JSON (other runtimes read it).
    data = json.loads((copy / "manifest.json").read_text())
    assert data["decode"] == {"min_side": 100, "reduced": False, "kinds": [], "gate": {"images": 0}}


def test_decode_gate_passes_for_the_first_release_bundle(first_release_bundle, kit_manifest, tmp_path):
    from cxr_edge.evaluation.decode_gate import decode_gate

    with kit_manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f)][::400][:3]
    config = decode_gate(
        first_release_bundle, [kit_manifest.parent / r["path"] for r in rows], size=(1064, 1280)
    )
    assert config.min_side == min_side_for(Bundle.load(first_release_bundle).manifest)
    for kind in KINDS:
        g = config.gate[kind]
        assert g["reduction"] == [choose_reduction(1064, 1280, config.min_side)]
        assert 0.0 <= g["mean_abs_diff"] <= g["max_abs_diff"] <= 1.0
        assert g["images_outside_band"] <= 3
        assert g["passed"] == (g["argmax_agreement_outside_band"] >= 0.99)
    # The reference (lossy JPEG at full resolution) is reported and never decides.
    assert config.gate["jpeg_full"]["reduction"] == [1]
    assert config.kinds == tuple(k for k in KINDS if config.gate[k]["passed"])
    assert config.reduced == bool(config.kinds)


def test_decode_gate_cli_writes_a_copy(first_release_bundle, kit_manifest, split, tmp_path):
    from click.testing import CliRunner

    from cxr_edge.cli import main

    src = tmp_path / "src"
    shutil.copytree(first_release_bundle, src)
    before = (src / "manifest.json").read_bytes()
    common = [
        "bundle",
        "decode-gate",
        "--bundle",
        str(src),
        "--manifest",
        str(kit_manifest),
        "--split",
        str(split),
    ]
    refused = CliRunner().invoke(main, [*common, "--out", str(src)])
    assert refused.exit_code == 1 and "--out is the input bundle" in refused.output
    result = CliRunner().invoke(main, [*common, "--images", "2", "--out", str(tmp_path / "gated")])
    assert result.exit_code == 0, result.output
    assert "decode gate" in result.output and "reference" in result.output
    assert (src / "manifest.json").read_bytes() == before  # the input bundle is never modified
    gated = Bundle.load(tmp_path / "gated")
    assert gated.manifest.decode is not None and gated.manifest.decode.gate["images"] == 2
    assert gated.manifest.models == Bundle.load(src).manifest.models


def test_reduction_kinds_are_obeyed(corpus):
    """Only the kinds a bundle's gate passed are used; a syntax with none left decodes in full."""
    jpeg = pydicom.dcmread(next(r for r in _files(corpus, {"jpeg_baseline"}))["file"])
    j2k = pydicom.dcmread(next(r for r in _files(corpus, {"j2k_lossless"}))["file"])
    plain = pydicom.dcmread(next(r for r in _files(corpus, {"explicit_le"}))["file"])
    assert decode_stored(jpeg, 4, kinds=("jpeg_dct",)).decoder == "simplejpeg-dct/4"
    assert decode_stored(jpeg, 4, kinds=("jpeg_dct_half",)).decoder == "simplejpeg-dct/2+area/2"
    # JPEG 2000 levels need the system's OpenJPEG (glymur); without it the decode is full + average.
    half = "openjpeg-level/2+area/2" if glymur_available() else "openjpeg+area/4"
    assert decode_stored(j2k, 4, kinds=("j2k_levels_half",)).decoder == half
    assert decode_stored(j2k, 4, kinds=("area",)).decoder == "openjpeg+area/4"
    for ds in (jpeg, j2k, plain):
        assert decode_stored(ds, 4, kinds=()).reduction == 1
    assert decode_stored(plain, 4, kinds=("jpeg_dct",)).reduction == 1
    assert decode_stored(plain, 2, kinds=("area",)).values.shape == (133, 160)


def test_deflated_files_are_inflated_once_into_plain_explicit_le(corpus, tmp_path):
    row = _files(corpus, {"deflated"})[0]
    data = Path(row["file"]).read_bytes()
    plain = inflate_part10(data)
    assert plain is not None
    a, b = pydicom.dcmread(row["file"]), pydicom.dcmread(pydicom.filebase.DicomBytesIO(plain))
    assert str(b.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    assert [e.tag for e in a] == [e.tag for e in b]
    np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    assert inflate_part10(Path(_files(corpus, {"explicit_le"})[0]["file"]).read_bytes()) is None
    # A blank image inflates beyond libdeflate's bound: zlib takes over, same pixels.
    a.PixelData = bytes(len(a.PixelData))
    blank = tmp_path / "blank.dcm"
    a.save_as(blank, enforce_file_format=True)
    inflated = pydicom.dcmread(pydicom.filebase.DicomBytesIO(inflate_part10(blank.read_bytes())))
    assert inflated.pixel_array.max() == 0
    # A corrupt stream is a typed error.
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(data[:300] + bytes(range(256)) * 40)
    with pytest.raises(ImageDecodeError):
        read_image(bad)
