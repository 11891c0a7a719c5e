"""The browser's DICOM reader (``web_demo/src/dicom/``) against the Python reader.

The golden set is built here, at small sizes: every intensity variant of the repository's DICOM
synthesiser (:mod:`cxr_edge.imaging.synth`) in every transfer syntax it writes, pydicom's own test
files (relabelled DX where they hold an image of another modality, and as they are), and damaged or
refused files. Node (``web_demo/test/dicom_ops.mjs``) reads them all with the browser's modules; headless
Chromium (``web_demo/test/dicom_driver.mjs``) reads one file per codec.

What is asserted:

* stored values equal pydicom's for the lossless syntaxes, and differ by at most ``LOSSY_UNITS`` for the
  lossy ones (another IDCT or wavelet build);
* the float image equals :func:`cxr_edge.imaging.reader.read_image`'s within ``FLOAT`` at full resolution
  and at a reduced decode (``ReadOptions(min_side=..., reductions=...)``); for a lossy syntax, the image
  equals the Python intensity mapping of the browser's own stored values within ``FLOAT``, and the Python
  image within the mapping of ``LOSSY_UNITS``;
* a refused or damaged file gets the Python reader's error class and message, and a lateral view the
  Python input check's ``InputRejectedError``; JPEG Extended (12 bit), which the browser cannot decode,
  its own typed error;
* the codecs load only when a file of their syntax arrives.

Without node (or, for the Chromium test, Chromium and ``web_demo/node_modules``: ``make web-deps``) the
tests skip, unless ``CXR_EDGE_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLossless, RLELossless

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.cli import main as cli
from cxr_edge.cli.runtime import _not_images
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.errors import InputRejectedError
from cxr_edge.evaluation.golden import decode, encode
from cxr_edge.imaging import synth
from cxr_edge.imaging.image import ImageInfo
from cxr_edge.imaging.intensity import to_unit_by_table
from cxr_edge.imaging.reader import ReadOptions, read_image
from cxr_edge.ops.quality import QualityConfig, check, check_header, frontal_score
from cxr_edge.runtime.pipeline import Predictor, expand_inputs

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web_demo"
CHROMIUM = Path(os.environ.get("CXR_EDGE_CHROMIUM", "/usr/bin/chromium"))
REQUIRE = os.environ.get("CXR_EDGE_REQUIRE_BROWSER") == "1"

FLOAT = 1e-6  # float images, browser against Python
LOSSY_UNITS = 2  # stored values of a lossy syntax, browser against pydicom
SIZE = (75, 90)  # rows, columns: odd, and not a multiple of the reductions
MIN_SIDE = 18  # reduced decodes keep at least this short side: reduction 4 for 75 rows
KINDS = (
    *(("area",), ("area", "j2k_levels"), ("area", "j2k_levels_half")),
    *(("area", "jpeg_dct"), ("area", "jpeg_dct_half")),
)
LOSSY = {"jpeg_baseline", "jpegls_near", "j2k_lossy", "htj2k_lossy"}
BROWSER_UNSUPPORTED = {"jpeg_extended"}  # no npm package decodes 12-bit lossy JPEG
INFO_FIELDS = (
    *("width", "height", "bits_stored", "photometric", "modality", "view_position", "body_part"),
    *("transfer_syntax", "intensity", "inverted", "converted_from", "reduction"),
)
#: pydicom's test files, read as they are (most are refused: CT, MR, colour...) and, where they hold an
#: image of another modality, relabelled DX.
PYDICOM_FILES = (
    *("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm"),
    *(
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
    ),
    *("MR_truncated.dcm", "CT_small.dcm", "JPEG2000.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"),
    *("JPGExtended.dcm", "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "image_dfl.dcm"),
    *("examples_overlay.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm", "examples_palette.dcm"),
    *("reportsi.dcm", "no_meta.dcm", "meta_missing_tsyntax.dcm", "ExplVR_LitEndNoMeta.dcm", "rtplan.dcm"),
    *("waveform_ecg.dcm", "badVR.dcm", "UN_sequence.dcm", "liver_1frame.dcm", "rtdose_1frame.dcm"),
)


def _unavailable(browser: bool) -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (run `make web-deps`)"
    for package in ("dicom-parser", "@cornerstonejs/codec-openjpeg", "fflate"):
        if not (WEB / "node_modules" / package / "package.json").is_file():
            return f"web_demo/node_modules/{package} is missing (run `make web-deps`)"
    if browser:
        if not CHROMIUM.is_file():
            return f"Chromium not found at {CHROMIUM} (run `make web-deps`)"
        if not (WEB / "node_modules" / "playwright-core" / "package.json").is_file():
            return "web_demo/node_modules/playwright-core is missing (run `make web-deps`)"
    return None


def _require(browser: bool) -> None:
    reason = _unavailable(browser)
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"CXR_EDGE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@dataclass(frozen=True)
class Golden:
    """One synthesised file."""

    path: Path
    variant: synth.Variant
    syntax: str


def _python(path: Path, options: ReadOptions | None = None):
    """``(image, info)`` of the Python reader, or the error it raises as ``"Class: message"``."""
    try:
        return read_image(path, options)
    except Exception as exc:  # compared with the browser's error
        return f"{type(exc).__name__}: {exc}"


def _mapping_step(ds, stored: np.ndarray, units: int) -> float:
    """Most the Python intensity mapping moves for ``units`` stored values, over the image's range."""
    lo, hi = int(stored.min()), int(stored.max())
    entries = np.arange(lo, hi + 1).astype(stored.dtype)
    table, _ = to_unit_by_table(entries, ds, ds.PhotometricInterpretation == "MONOCHROME1")
    return float(np.abs(table[units:] - table[:-units]).max()) if len(table) > units else 1.0


# ------------------------------------------------------------------------------------------ golden set


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> list[Golden]:
    """Every intensity variant in every syntax the synthesiser writes, as small files."""
    folder = tmp_path_factory.mktemp("golden")
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    base = (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    files = []
    for v in synth.VARIANTS:
        stored = synth.stored_values(base, SIZE, v, seed=1)
        for syntax in synth.SYNTAXES:
            ds = synth.build_dataset(stored, v, 1)
            if synth.encode(ds, syntax):
                path = folder / f"{v.name}__{syntax}.dcm"
                path.write_bytes(synth.file_bytes(ds))
                files.append(Golden(path, v, syntax))
    assert {g.syntax for g in files} == set(synth.SYNTAXES)
    assert {g.variant.name for g in files} == {v.name for v in synth.VARIANTS}
    return files


@pytest.fixture(scope="module")
def pydicom_files(tmp_path_factory) -> list[Path]:
    """pydicom's test files (never downloaded), and DX copies of those holding another modality's image."""
    folder = tmp_path_factory.mktemp("pydicom")
    out = []
    for name in PYDICOM_FILES:
        src = get_testdata_file(name, download=False)
        if src is None:
            continue
        out.append(Path(src))
        ds = pydicom.dcmread(src, force=True)
        if "PixelData" in ds and str(ds.get("Modality", "")) not in ("DX", "OT", ""):
            ds.Modality = "DX"
            ds.save_as(folder / f"dx_{name}")
            out.append(folder / f"dx_{name}")
    assert len(out) > 30
    return out


def _ops(script: str, cases: list[dict]) -> list[dict]:
    """Runs ``web_demo/test/<script>`` on cases (JSON on stdin); returns each result."""
    _require(browser=False)
    proc = subprocess.run(
        ["node", str(WEB / "test" / script)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["results"]


def run_node(cases: list[dict]) -> list[dict]:
    """``web_demo/test/dicom_ops.mjs`` (the DICOM reader) on cases."""
    return _ops("dicom_ops.mjs", cases)


@pytest.fixture(scope="module")
def node(golden, pydicom_files) -> dict:
    """The browser reader's results in Node for the golden set and pydicom's files, by case name."""
    cases = {}
    for g in golden:
        cases[f"full/{g.path.stem}"] = {"op": "read", "path": str(g.path)}
        cases[f"stored/{g.path.stem}"] = {"op": "stored", "path": str(g.path)}
        for kinds in KINDS:
            options = {"minSide": MIN_SIDE, "reductions": list(kinds)}
            cases[f"{kinds[-1]}/{g.path.stem}"] = {"op": "read", "path": str(g.path), "options": options}
    for p in pydicom_files:
        cases[f"pydicom/{p.name}"] = {"op": "read", "path": str(p)}
    return dict(zip(cases, run_node(list(cases.values())), strict=True))


# ----------------------------------------------------------------------------------------------- tests


def test_stored_values_equal_pydicom(golden, node):
    for g in golden:
        got = node[f"stored/{g.path.stem}"]
        if g.syntax in BROWSER_UNSUPPORTED:
            assert not got["ok"] and "transfer syntax not supported in the browser" in got["error"]
            continue
        assert got["ok"], (g.path.name, got["error"])
        reference = pydicom.dcmread(g.path).pixel_array.astype(np.int64)
        diff = np.abs(decode(got["result"]["values"]).astype(np.int64) - reference).max()
        assert diff <= (LOSSY_UNITS if g.syntax in LOSSY else 0), (g.path.name, diff)


def test_full_resolution_images_equal_the_python_reader(golden, node):
    for g in golden:
        got = node[f"full/{g.path.stem}"]
        if g.syntax in BROWSER_UNSUPPORTED:
            assert got["error"] == (
                "UnsupportedImageError: transfer syntax not supported in the browser; expected a syntax "
                "the browser decodes (`cxr-edge predict` reads this file); received JPEG Extended "
                "(Process 2 and 4)"
            )
            continue
        assert got["ok"], (g.path.name, got["error"])
        image, info = read_image(g.path)
        js, js_info = decode(got["result"]["image"]), got["result"]["info"]
        assert {k: js_info[k] for k in INFO_FIELDS} == {k: info.to_dict()[k] for k in INFO_FIELDS}
        if g.syntax not in LOSSY:
            assert np.abs(js - image).max() <= FLOAT, g.path.name
            continue
        # Lossy: the browser's image is the Python mapping of its own stored values, and close to Python's.
        ds = pydicom.dcmread(g.path)
        stored = decode(node[f"stored/{g.path.stem}"]["result"]["values"]).astype(ds.pixel_array.dtype)
        mapped, _ = to_unit_by_table(stored, ds, info.inverted)
        assert np.abs(js - mapped).max() <= FLOAT, g.path.name
        assert np.abs(js - image).max() <= _mapping_step(ds, stored, LOSSY_UNITS) + FLOAT, g.path.name


@pytest.mark.parametrize("kinds", KINDS, ids=[k[-1] for k in KINDS])
def test_reduced_decodes_equal_the_python_reader(golden, node, kinds):
    reductions = set()
    for g in golden:
        if g.syntax in BROWSER_UNSUPPORTED:
            continue
        got = node[f"{kinds[-1]}/{g.path.stem}"]
        assert got["ok"], (g.path.name, got["error"])
        image, info = read_image(g.path, ReadOptions(min_side=MIN_SIDE, reductions=kinds))
        js, js_info = decode(got["result"]["image"]), got["result"]["info"]
        assert {k: js_info[k] for k in INFO_FIELDS} == {k: info.to_dict()[k] for k in INFO_FIELDS}
        reductions.add(js_info["reduction"])
        decoder = js_info["decoder"]
        dct = g.syntax == "jpeg_baseline" and kinds[-1].startswith("jpeg_dct")
        if g.syntax.startswith(("j2k", "htj2k")) and kinds[-1].startswith("j2k"):
            assert "-level/" in decoder and (kinds[-1] == "j2k_levels") == ("+area" not in decoder), decoder
        elif dct:  # libjpeg's reduced inverse DCTs (jpegscaled.js): libjpeg-turbo's pixels, exactly
            assert decoder == ("jpeg-dct/4" if kinds[-1] == "jpeg_dct" else "jpeg-dct/2+area/2"), decoder
        else:
            assert decoder.endswith("+area/4"), decoder
        tolerance = FLOAT
        if g.syntax in LOSSY and not dct:
            ds = pydicom.dcmread(g.path)
            tolerance += _mapping_step(ds, ds.pixel_array, LOSSY_UNITS)
        assert np.abs(js - image).max() <= tolerance, (g.path.name, kinds)
    assert reductions == {4}


def test_pydicom_test_files_read_or_fail_like_python(pydicom_files, node):
    browser_refuses = {  # what the Python reader hands to pydicom's own decoders
        "dx_JPGExtended.dcm": "transfer syntax not supported in the browser",  # 12-bit JPEG
        "dx_liver_1frame.dcm": "pixel encoding not supported in the browser",  # 1 bit allocated
        "dx_rtdose_1frame.dcm": "pixel encoding not supported in the browser",  # 32 bits allocated
    }
    read = 0
    for p in pydicom_files:
        got, python = node[f"pydicom/{p.name}"], _python(p)
        if p.name in browser_refuses:
            assert browser_refuses[p.name] in got["error"] and not isinstance(python, str)
        elif isinstance(python, str):
            assert not got["ok"] and got["error"] == python, p.name
        else:
            assert got["ok"], (p.name, got["error"])
            assert np.abs(decode(got["result"]["image"]) - python[0]).max() <= FLOAT, p.name
            read += 1
    assert read >= 14


# --------------------------------------------------------------------------------------- bad files


def _with_syntax(data: bytes, uid: str) -> bytes:
    """A Part 10 file with another Transfer Syntax UID in its file meta (group length fixed)."""
    at = data.find(b"\x02\x00\x10\x00UI", 132)
    n = struct.unpack_from("<H", data, at + 6)[0]
    value = uid.encode() + b"\0" * (len(uid) % 2)
    group = struct.unpack_from("<I", data, 140)[0] + len(value) - n
    element = data[at : at + 6] + struct.pack("<H", len(value)) + value
    return data[:140] + struct.pack("<I", group) + data[144:at] + element + data[at + 8 + n :]


def _bare(ds, implicit: bool) -> bytes:
    """The dataset alone: no preamble, no file meta (pydicom reads it with force=True)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def _deflated(data: bytes, edit=lambda body: body) -> bytes:
    """A deflated Part 10 file with its inflated dataset edited, deflated again."""
    end = 144 + struct.unpack_from("<I", data, 140)[0]
    body = edit(zlib.decompress(data[end:], -15))
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return data[:end] + packer.compress(body) + packer.flush()


def _lut_item(descriptor, data: bytes | None):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = descriptor
    if data is not None:
        item.LUTData = data
        item["LUTData"].VR = "OW"
    return item


@pytest.fixture(scope="module")
def bad_files(golden, tmp_path_factory) -> dict[str, Path]:
    """Files both readers refuse (or that the header checks refuse), by name."""
    folder = tmp_path_factory.mktemp("bad")
    by_syntax = {g.syntax: g for g in golden if g.variant.name == "m2_window_12"}
    px = synth.stored_from_image(
        np.linspace(0, 1, SIZE[0] * SIZE[1]).reshape(SIZE).astype(np.float32), bits=12
    )
    good = synth.file_bytes(synth.radiograph(px))
    sc = synth.SECONDARY_CAPTURE

    def dataset(syntax):
        return pydicom.dcmread(by_syntax[syntax].path)

    def frame_edit(syntax, edit):
        return synth.file_bytes(synth.with_pixel_data(dataset(syntax), edit))

    jpeg = by_syntax["jpeg_baseline"].path.read_bytes()
    deflated = by_syntax["deflated"].path.read_bytes()
    j2k = by_syntax["j2k_lossless"].path.read_bytes()
    files = {
        "garbage.dcm": bytes(range(256)) * 4,
        "garbage_preamble.dcm": b"\0" * 128 + b"DICM" + bytes(range(256)) * 4,
        "zeros.dcm": bytes(1000),
        "header_cut.dcm": good[:300],
        "truncated_native.dcm": good[:-100],
        "truncated_half.dcm": good[: len(good) // 2],
        "truncated_encapsulated.dcm": j2k[: len(j2k) * 2 // 3],
        "j2k_cut_with_eoc.dcm": frame_edit("j2k_lossless", lambda f: f[: len(f) // 2] + b"\xff\xd9"),
        "rle_header.dcm": frame_edit("rle", lambda f: struct.pack("<I", 3) + f[4:]),
        "rle_cut.dcm": frame_edit("rle", lambda f: f[:-10]),
        "components.dcm": frame_edit(
            "jpeg_baseline", lambda f: imagecodecs.jpeg8_encode(np.zeros((*SIZE, 3), np.uint8))
        ),
        "raw_implicit.dcm": _bare(synth.radiograph(px), implicit=True),
        "raw_explicit.dcm": _bare(synth.radiograph(px), implicit=False),
        "deflate_corrupt.dcm": deflated[:400] + bytes(b ^ 0x5A for b in deflated[400:]),
        "deflate_truncated.dcm": deflated[: len(deflated) // 2],
        "deflate_bomb.dcm": _deflated(
            deflated, lambda b: b + b"\xfc\xff\xfc\xffOB\0\0" + struct.pack("<I", 4 << 20) + bytes(4 << 20)
        ),
        "deflate_malformed.dcm": _bare(
            synth.radiograph(px, ImageComments="1.2.840.10008.1.2.1.99"), implicit=False
        ),
        **{
            f"cut_{s}.dcm": frame_edit(s, lambda f: f[: len(f) // 2])
            for s in (
                "jpeg_baseline",
                "jpeg_lossless_sv1",
                "jpegls_lossless",
                "j2k_lossless",
                "htj2k_lossless",
            )
        },
        **{
            f"syntax_{uid}.dcm": _with_syntax(jpeg, uid)
            for uid in (
                "1.2.840.10008.1.2.4.100",
                "1.2.840.10008.1.2.4.110",
                "1.2.3.4",
                "1.2.840.10008.1.2.4.52",
            )
        },
        "syntax_encapsulated_uncompressed.dcm": _with_syntax(jpeg, "1.2.840.10008.1.2.1.98"),
    }
    attributes = {
        "ct": {"Modality": "CT"},
        "frames_2": {"NumberOfFrames": 2},
        "frames_0": {"NumberOfFrames": 0},
        "no_rows": {"Rows": None},
        "rows_0": {"Rows": 0},
        "too_large": {"Rows": 65535, "Columns": 65535},
        "palette": {"PhotometricInterpretation": "PALETTE COLOR"},
        "samples_3": {"SamplesPerPixel": 3},
        "bits_17": {"BitsStored": 17},
        "pixel_representation_2": {"PixelRepresentation": 2},
        "slope_0": {"RescaleSlope": 0, "RescaleIntercept": 0},
        "slope_huge": {"RescaleSlope": 1e308, "RescaleIntercept": 0},
        "window_half": {"WindowWidth": 0.5, "VOILUTFunction": None},
        "voi_no_data": {"VOILUTSequence": [_lut_item([4096, 0, 16], None)]},
        "voi_depth_9": {"VOILUTSequence": [_lut_item([4096, 0, 9], bytes(8192))]},
        "voi_short_data": {"VOILUTSequence": [_lut_item([4096, 0, 16], bytes(100))]},
    }
    for name, attrs in attributes.items():
        files[f"{name}.dcm"] = synth.file_bytes(synth.radiograph(px, **attrs))
    size_mismatch = dataset("jpeg_baseline")
    size_mismatch.Rows = SIZE[0] - 1
    files["size_mismatch.dcm"] = synth.file_bytes(size_mismatch)
    frames = dataset("deflated")
    frames.NumberOfFrames = 2
    files["deflate_frames_2.dcm"] = synth.file_bytes(frames)
    files["constant.dcm"] = synth.file_bytes(synth.radiograph(np.full(SIZE, 100, np.uint16), preset=sc))
    files["constant_window.dcm"] = synth.file_bytes(synth.radiograph(np.full(SIZE, 100, np.uint16)))
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


#: Damaged frames whose codec refuses them: the message names the codec's own error (Python's
#: ImcdError, say), so the class and the text before it are compared.
CODEC_ERRORS = ("rle_cut.dcm",)


def test_bad_files_get_the_python_errors(bad_files):
    results = run_node([{"op": "read", "path": str(p)} for p in bad_files.values()])
    for (name, path), got in zip(bad_files.items(), results, strict=True):
        python = _python(path)
        assert isinstance(python, str), (name, "the Python reader read it")
        assert not got["ok"], (name, "the browser read it")
        if name in CODEC_ERRORS:
            assert got["error"].split("; received")[0] == python.split("; received")[0], name
        else:
            assert got["error"] == python, name


def test_colour_dicoms_are_refused_as_the_python_reader_refuses_colour(pydicom_files):
    colour = [
        Path(get_testdata_file(n, download=False)) for n in ("SC_rgb_small_odd.dcm", "SC_rgb_jpeg_gdcm.dcm")
    ]
    for path, got in zip(colour, run_node([{"op": "read", "path": str(p)} for p in colour]), strict=True):
        assert got["error"] == _python(path, ReadOptions(color="reject")), path.name


def test_header_checks_refuse_a_lateral_view_like_the_python_predictor(tmp_path):
    px = synth.stored_from_image(np.linspace(0, 1, 64 * 64).reshape(64, 64).astype(np.float32), bits=12)
    variants = {
        "lateral": {"ViewPosition": "LL"},
        "abdomen": {"BodyPartExamined": "ABDOMEN"},
        "other_modality": {"Modality": "OT"},
        "no_modality": {"Modality": None},
        "frontal": {"ViewPosition": "AP"},
    }
    paths = {n: synth.write_radiograph(tmp_path / f"{n}.dcm", px, **a) for n, a in variants.items()}
    results = run_node([{"op": "checked_read", "path": str(p)} for p in paths.values()])
    for (name, path), got in zip(paths.items(), results, strict=True):
        _, info = read_image(path)
        rejection = check_header(info, QualityConfig())
        if rejection is None:
            assert got["ok"] and name == "frontal", got.get("error")
            continue
        assert (
            got["error"] == f"InputRejectedError: {InputRejectedError(rejection.check, rejection.reason)}"
        ), name
    assert "view: view position LL is not frontal" in results[0]["error"]


def test_codecs_load_only_when_their_syntax_arrives(golden):
    by_syntax = {g.syntax: g.path for g in golden if g.variant.name == "m2_window_12"}
    cases = [{"op": "loaded"}]
    for syntax in ("explicit_le", "deflated", "rle", "j2k_lossless", "htj2k_lossless"):
        cases += [{"op": "read", "path": str(by_syntax[syntax])}, {"op": "loaded"}]
    loaded = [r["result"] for r in run_node(cases)[::2]]
    assert loaded == [
        [],
        ["dicomParser"],
        ["dicomParser", "fflate"],
        ["dicomParser", "fflate"],
        ["dicomParser", "fflate", "openjpeg"],
        ["dicomParser", "fflate", "openjpeg", "openjph"],
    ]


#: Where each package lies in web_demo/node_modules (``src/dicom/loader.js``, ``PACKAGE_FILES``).
PACKAGES = {
    "dicom-parser": "dicom-parser/",
    "fflate": "fflate/",
    "libjpeg-turbo": "@cornerstonejs/codec-libjpeg-turbo-8bit/",
    "jpeg-lossless": "jpeg-lossless-decoder-js/",
    "charls": "@cornerstonejs/codec-charls/",
    "openjpeg": "@cornerstonejs/codec-openjpeg/",
    "openjph": "@cornerstonejs/codec-openjph/",
}
#: One file per codec for Chromium: (case, variant, syntax, reduction kinds or None, the package the
#: case fetches first, if any).
BROWSER_CASES = (
    ("native", "m2_rescale_16", "explicit_le", None, "dicom-parser"),
    ("deflate", "m2_voilut_12", "deflated", None, "fflate"),
    ("rle", "m1_window_12", "rle", None, None),
    ("jpeg_baseline", "m2_window_12", "jpeg_baseline", None, "libjpeg-turbo"),
    ("jpeg_lossless", "m1_none_10", "jpeg_lossless_sv1", None, "jpeg-lossless"),
    ("jpeg_ls", "m2_signed_14", "jpegls_lossless", None, "charls"),
    ("j2k", "m2_signed_14", "j2k_lossless", ("area", "j2k_levels"), "openjpeg"),
    ("htj2k", "m2_voilut_12", "htj2k_lossless", ("area", "j2k_levels_half"), "openjph"),
    ("jpeg_extended", "m2_window_12", "jpeg_extended", None, None),
)


def test_chromium_reads_one_file_per_codec_like_python_and_loads_codecs_lazily(golden, tmp_path):
    _require(browser=True)
    by_name = {(g.variant.name, g.syntax): g.path for g in golden}
    cases = []
    for name, variant, syntax, kinds, _ in BROWSER_CASES:
        case = {"name": name, "file": by_name[variant, syntax].name}
        if kinds:
            case["options"] = {"minSide": MIN_SIDE, "reductions": list(kinds)}
        cases.append(case)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dir": str(golden[0].path.parent), "cases": cases}))
    proc = subprocess.run(
        ["node", str(WEB / "test" / "dicom_driver.mjs"), str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=WEB,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert not result["errors"], result["errors"]
    assert result["fetchedAtStart"] == [], "the reader fetched packages before any DICOM arrived"
    fetched = set()
    for (name, variant, syntax, kinds, package), got in zip(BROWSER_CASES, result["cases"], strict=True):
        new = set(got["fetched"]) - fetched  # each package loads with the first file that needs it
        fetched |= new
        assert {f.startswith(PACKAGES[package]) for f in new} == ({True} if package else set()), (name, new)
        path = by_name[variant, syntax]
        options = ReadOptions(min_side=MIN_SIDE, reductions=kinds) if kinds else None
        python = _python(path, options)
        if syntax in BROWSER_UNSUPPORTED:
            assert not got["ok"] and "transfer syntax not supported in the browser" in got["error"]
            continue
        assert got["ok"], (name, got["error"])
        assert np.abs(decode(got["image"]) - python[0]).max() <= FLOAT, name
        assert {k: got["info"][k] for k in INFO_FIELDS} == {k: python[1].to_dict()[k] for k in INFO_FIELDS}
        assert got["info"]["reduction"] == (4 if kinds else 1), name


def test_bits_stored_masks_and_sign_extends_as_pydicom(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4096, (40, 52)).astype(np.uint16)
    dirty = values | (rng.integers(0, 16, values.shape).astype(np.uint16) << 12)  # overlay bits above 12
    signed = (values.astype(np.int16) - 2048) & 0x0FFF  # 12-bit two's complement, high bits clear
    paths = []
    for name, pixels in (("dirty", dirty), ("signed", signed.view(np.int16))):
        ds = synth.radiograph(pixels)
        for syntax in ("explicit", "rle"):
            if syntax == "rle":  # pydicom's encoder checks the values against Bits Stored: 16 while it runs
                ds.BitsStored = 16
                ds.compress(RLELossless, pixels)
                ds.BitsStored = 12
            paths.append(tmp_path / f"{name}_{syntax}.dcm")
            paths[-1].write_bytes(synth.file_bytes(ds))
    results = run_node([{"op": "read", "path": str(p)} for p in paths])
    for path, got in zip(paths, results, strict=True):
        image, _ = read_image(path)
        assert got["ok"], (path.name, got["error"])
        assert np.abs(decode(got["result"]["image"]) - image).max() <= FLOAT, path.name
        assert np.ptp(image) > 0.5, path.name  # the bits kept span the window


def test_jpeg_lossless_every_predictor(tmp_path):
    """Process 14 with each of its 7 predictors (the synthesiser writes SV1 only)."""
    values = synth.stored_from_image(np.linspace(0, 1, 40 * 52).reshape(40, 52).astype(np.float32), bits=12)
    paths = []
    for predictor in range(1, 8):
        ds = synth.radiograph(values)
        frame = imagecodecs.jpeg8_encode(values, lossless=True, predictor=predictor, bitspersample=12)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLossless  # 1.2.840.10008.1.2.4.57
        paths.append(tmp_path / f"predictor_{predictor}.dcm")
        paths[-1].write_bytes(synth.file_bytes(ds))
    for path, got in zip(paths, run_node([{"op": "read", "path": str(p)} for p in paths]), strict=True):
        assert got["ok"], (path.name, got["error"])
        assert np.abs(decode(got["result"]["image"]) - read_image(path)[0]).max() <= FLOAT, path.name


def _jpeg_dicom(path: Path, image: np.ndarray, **params) -> Path:
    """An 8-bit JPEG baseline DICOM of ``image`` (uint8) encoded by OpenCV with ``cv2.imwrite`` params."""
    import cv2

    flags = [p for name, value in params.items() for p in (getattr(cv2, name), value)]
    ok, frame = cv2.imencode(".jpg", image, flags)
    assert ok
    ds = synth.radiograph(image)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([frame.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    path.write_bytes(synth.file_bytes(ds))
    return path


def test_dct_scaled_jpeg_equals_libjpeg_at_every_scale(tmp_path):
    """``jpegscaled.js`` against libjpeg-turbo's DCT scaling (the Python reader's ``jpeg_dct`` kinds): sizes
    that are not multiples of 8, quality 5-100 (quantisers from 1 to 255), restart intervals, smooth and
    noisy content, at 1/2, 1/4 and 1/8, bit for bit; and damaged streams, which go to the full decode."""
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:131, 0:257]
    smooth = (127 + 120 * np.sin(xx / 17.0) * np.cos(yy / 11.0)).astype(np.uint8)
    noisy = rng.integers(0, 256, (64, 72), dtype=np.uint8)
    edges = np.where(smooth > 127, 255, 0).astype(np.uint8)
    files = [
        _jpeg_dicom(tmp_path / "smooth_q90.dcm", smooth, IMWRITE_JPEG_QUALITY=90),
        _jpeg_dicom(tmp_path / "smooth_rst.dcm", smooth, IMWRITE_JPEG_QUALITY=5, IMWRITE_JPEG_RST_INTERVAL=3),
        _jpeg_dicom(tmp_path / "noisy_rst.dcm", noisy, IMWRITE_JPEG_QUALITY=100, IMWRITE_JPEG_RST_INTERVAL=1),
        _jpeg_dicom(tmp_path / "edges_q50.dcm", edges, IMWRITE_JPEG_QUALITY=50),
    ]
    cases, expected = [], []
    for path in files:
        for reduction in (2, 4, 8):
            for kind in ("jpeg_dct", "jpeg_dct_half"):
                if kind == "jpeg_dct_half" and reduction == 2:
                    continue  # half of a 2x reduction is a full decode
                min_side = min(pydicom.dcmread(path).pixel_array.shape) // reduction
                options = {"minSide": min_side, "reductions": [kind]}
                cases.append({"op": "read", "path": str(path), "options": options})
                expected.append((path, reduction, kind, ReadOptions(min_side=min_side, reductions=(kind,))))
    for (path, reduction, kind, options), got in zip(expected, run_node(cases), strict=True):
        assert got["ok"], (path.name, reduction, got["error"])
        image, info = read_image(path, options)
        info_js = got["result"]["info"]
        assert info_js["reduction"] == info.reduction == reduction, (path.name, kind)
        assert info_js["decoder"].startswith("jpeg-dct/"), info_js["decoder"]
        assert np.array_equal(decode(got["result"]["image"]), image), (path.name, reduction, kind)
    # Damaged: a byte of entropy data flipped to a marker, and the scan cut short. Python (strict libjpeg)
    # refuses both; the browser hands them to its full decode, which refuses them too.
    good = files[1].read_bytes()
    at = good.rindex(b"\xff\xd9")
    damaged = [
        (tmp_path / "marker_inside.dcm", good[: at - 40] + b"\xff\xd0" + good[at - 38 :]),
        (tmp_path / "cut.dcm", good[: at - 60] + b"\xff\xd9" + good[at + 2 :]),
    ]
    for path, content in damaged:
        path.write_bytes(content)
    options = {"minSide": 16, "reductions": ["jpeg_dct"]}
    results = run_node([{"op": "read", "path": str(p), "options": options} for p, _ in damaged])
    for (path, _), got in zip(damaged, results, strict=True):
        python = _python(path, ReadOptions(min_side=16, reductions=("jpeg_dct",)))
        assert isinstance(python, str), (path.name, "the Python reader read it")
        assert not got["ok"], (path.name, "the browser read it")
        assert got["error"].split(":")[0] == python.split(":")[0], (got["error"], python)


# ------------------------------------------------------------------------- the app: checks and inputs


def test_input_checks_match_the_python_checks():
    """``src/quality.js`` against :func:`cxr_edge.ops.quality.check`: header facts, and the pixel checks
    (resolution, blank, frontal pattern) on every sample, its shifted (lateral-like) and inverted copies."""
    images: dict[str, np.ndarray] = {}
    for path in sorted(samples_dir().glob("*.png"))[::3]:
        image, _ = read_image(path)
        images[path.name] = image
        images[f"shifted_{path.name}"] = np.ascontiguousarray(np.roll(image, image.shape[1] // 3, axis=1))
        images[f"inverted_{path.name}"] = 1.0 - image
    rng = np.random.default_rng(4)
    images["small"] = rng.random((100, 300), dtype=np.float32)
    images["blank"] = (0.5 + 0.001 * rng.random((300, 280))).astype(np.float32)
    images["noise"] = rng.random((300, 257), dtype=np.float32)
    frontal = images[next(iter(images))]
    headers = {
        "dx_pa": {"modality": "DX", "view_position": "PA", "body_part": "CHEST"},
        "lateral": {"modality": "DX", "view_position": "LL", "body_part": "CHEST"},
        "ct": {"modality": "CT"},
        "no_modality": {"modality": None},
        "abdomen": {"modality": "CR", "body_part": "ABDOMEN"},
        "colour": {"modality": "DX", "converted_from": "RGB"},
    }
    named = [(n, im, _info("png", im)) for n, im in images.items()]
    named += [(n, frontal, _info("dicom", frontal, **h)) for n, h in headers.items()]
    cases = [{"op": "quality", "image": encode(im)} for _, im, _ in named]
    for case, (name, _, info) in zip(cases, named, strict=True):
        if info.format == "dicom":
            case["info"] = {"format": "dicom", **headers[name]}
    rejected = set()
    for (name, image, info), got in zip(named, _node_ops(cases), strict=True):
        assert got["ok"], (name, got["error"])
        want = check(image, info, QualityConfig())
        expected = None if want is None else {"check": want.check, "reason": want.reason}
        assert got["result"]["rejection"] == expected, name
        if min(image.shape) >= 128:
            assert abs(got["result"]["score"] - frontal_score(image)) <= 1e-9, name
        rejected.add(None if want is None else want.check)
    every = {"resolution", "blank", "frontal_pattern", "view", "modality", "body_part", "colour"}
    assert rejected >= every | {None}


def _info(fmt: str, image: np.ndarray, **facts) -> ImageInfo:
    """The facts the checks read (the rest as a PNG's)."""
    return ImageInfo(
        source_file="x",
        format=fmt,
        width=image.shape[1],
        height=image.shape[0],
        bits_stored=8,
        photometric="MONOCHROME2",
        intensity="scaled",
        **facts,
    )


def _node_ops(cases: list[dict]) -> list[dict]:
    """``web_demo/test/node_ops.mjs`` (the app's pure modules) on cases."""
    return _ops("node_ops.mjs", cases)


#: A dropped folder tree (None: a file), as ``src/inputs.js`` walks it and ``expand_inputs`` lists it.
TREE = {
    "study": {
        "IM0002": None,
        "IM0001.dcm": None,
        "A.DCM": None,
        "notes.txt": None,
        "report.PDF": None,
        ".DS_Store": None,
        "series2": {"IM0001": None, ".git": {"config": None}, "index.json": None},
        "a_series": {"x.dcm": None},
    },
    "loose.txt": None,
}


def _make_tree(root: Path, tree: dict) -> None:
    for name, node in tree.items():
        if node is None:
            (root / name).write_bytes(b"x")
        else:
            (root / name).mkdir()
            _make_tree(root / name, node)


def test_opened_files_are_selected_like_the_cli(tmp_path):
    """Loose files are always kept; inside folders, hidden files and certain non-images are skipped;
    the order is os.walk's."""
    _make_tree(tmp_path, TREE)
    skipped: list[Path] = []
    inputs = expand_inputs([tmp_path / "loose.txt", tmp_path / "study"], skipped)
    want = [p.relative_to(tmp_path).as_posix() for p in inputs]
    folder = [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    folder = [p for p in folder if p.startswith("study/")]
    (got,) = _node_ops([{"op": "inputs", "loose": ["loose.txt"], "in_folders": folder[::-1]}])
    assert got["ok"], got["error"]
    assert got["result"]["inputs"] == want
    assert sorted(got["result"]["skipped"]) == sorted(p.relative_to(tmp_path).as_posix() for p in skipped)
    assert got["result"]["note"] == _not_images(skipped)


def test_decode_gates_are_read_like_python():
    manifest = json.loads((Bundle.load().root / "manifest.json").read_text())
    variants = [
        {"min_side": 4, "reduced": True},
        {"min_side": "x", "reduced": True},
        {"min_side": 64, "reduced": 1},
        {"min_side": 64, "reduced": True, "kinds": "area"},
        [1],
        {"min_side": 64, "reduced": True, "kinds": ["area", "j2k_levels"]},
        None,
    ]
    cases = [{"op": "parse_manifest", "manifest": manifest | {"decode": v}} for v in variants]
    for variant, got in zip(variants, _node_ops(cases), strict=True):
        try:
            BundleManifest.from_dict(manifest | {"decode": variant}, schema=False)
        except Exception as exc:  # compared with the browser's error
            assert not got["ok"] and got["error"] == f"{type(exc).__name__}: {exc}", variant
        else:
            assert got["ok"], (variant, got["error"])


# ----------------------------------------------------------- the app in Chromium: the whole pipeline

UI_SAMPLE = "pneumonia_unknown_nih_00004075_000.png"
APP_SIZE = (300, 360)  # rows, columns: above the input checks' 128 px after a 2x reduction
#: A copy of the default bundle whose decode gate reduces these small files (2x, by area or J2K levels).
REDUCED_GATE = {"min_side": 128, "reduced": True, "kinds": ["area", "jpeg_dct", "j2k_levels"]}
#: Identifiers written into every file: the app must never show, log or keep them.
PATIENT = {
    "PatientName": "Doe^Jane^Secret",
    "PatientID": "PID-7431-SECRET",
    "PatientBirthDate": "19700101",
    "AccessionNumber": "ACC-99812-SECRET",
}
#: One lossless file per codec: the offline scenario reads them from the service worker's cache.
OFFLINE_SYNTAXES = (
    *("explicit_le", "deflated", "rle", "jpeg_baseline", "jpeg_lossless_sv1"),
    *("jpegls_lossless", "j2k_lossless", "htj2k_lossless"),
)


def _chest_dataset(syntax_index: int, size=APP_SIZE, variant: synth.Variant | None = None, **attrs):
    """A chest radiograph (a shipped sample) as a synthesised dataset with the patient identifiers."""
    image, _ = read_image(samples_dir() / UI_SAMPLE)
    v = variant or synth.VARIANTS[syntax_index % len(synth.VARIANTS)]
    ds = synth.build_dataset(synth.stored_values(image, size, v, seed=syntax_index), v, syntax_index)
    synth.set_attributes(ds, {**PATIENT, **attrs})
    return ds


FULL_SIZE = (2130, 2560)  # rows, columns of a full-size detector image


@pytest.fixture(scope="module")
def full_files(tmp_path_factory) -> dict:
    """A full-size chest DICOM of every syntax the browser decodes (~12 s to encode)."""
    root = tmp_path_factory.mktemp("full")
    paths = {}
    for i, syntax in enumerate(synth.SYNTAXES):
        if syntax in BROWSER_UNSUPPORTED:
            continue
        ds = _chest_dataset(i, size=FULL_SIZE)
        if not synth.encode(ds, syntax):
            ds = _chest_dataset(i, size=FULL_SIZE, variant=synth.VARIANTS[0])
            assert synth.encode(ds, syntax), syntax
        paths[syntax] = root / f"{syntax}.dcm"
        paths[syntax].write_bytes(synth.file_bytes(ds))
    return {"dir": root, "paths": paths}


@pytest.fixture(scope="module")
def app_files(tmp_path_factory) -> dict:
    """Chest DICOMs of every syntax the browser decodes, and a folder with good and bad files."""
    root = tmp_path_factory.mktemp("app")
    syntaxes = root / "dicom"
    syntaxes.mkdir()
    by_syntax = {}
    for i, syntax in enumerate(synth.SYNTAXES):
        if syntax in BROWSER_UNSUPPORTED:
            continue
        ds = _chest_dataset(i)
        if not synth.encode(ds, syntax):  # a variant the syntax cannot carry (JPEG lossless, signed)
            ds = _chest_dataset(i, variant=synth.VARIANTS[0])
            assert synth.encode(ds, syntax), syntax
        by_syntax[syntax] = syntaxes / f"{syntax}.dcm"
        by_syntax[syntax].write_bytes(synth.file_bytes(ds))
    folder = root / "tree" / "study"
    (folder / "series2").mkdir(parents=True)

    def write(name: str, ds) -> None:
        (folder / name).write_bytes(synth.file_bytes(ds))

    good = _chest_dataset(0, size=(200, 240))
    write("IM0001", good)
    rle = _chest_dataset(1, size=(200, 240))
    assert synth.encode(rle, "rle")
    write("IM0002.dcm", rle)
    j2k = _chest_dataset(2, size=(200, 240))
    assert synth.encode(j2k, "j2k_lossless")
    write("series2/IM0003", j2k)
    write("lateral.dcm", _chest_dataset(3, size=(200, 240), ViewPosition="LL"))
    write("ct.dcm", _chest_dataset(4, size=(200, 240), Modality="CT"))
    write("abdomen.dcm", _chest_dataset(4, size=(200, 240), BodyPartExamined="ABDOMEN"))
    write("small.dcm", _chest_dataset(5, size=(100, 120)))
    (folder / "cut.dcm").write_bytes(synth.file_bytes(_chest_dataset(6, size=(200, 240)))[:-5000])
    (folder / "IM0009").write_bytes(bytes(range(256)) * 8)
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    reduced = shutil.copytree(Bundle.load().root, root / "reduced")
    manifest = json.loads((reduced / "manifest.json").read_text())
    (reduced / "manifest.json").write_text(json.dumps(manifest | {"decode": REDUCED_GATE}, indent=2) + "\n")
    return {"syntaxes": by_syntax, "dir": syntaxes, "folder": folder, "reduced": reduced}


@pytest.fixture(scope="module")
def app_run(app_files, full_files, tmp_path_factory) -> dict:
    """One Chromium session (``web_demo/test/dicom_app_driver.mjs``): parity, the app, offline."""
    _require(browser=True)
    names = [p.name for p in app_files["syntaxes"].values()]
    urls = [f"/dicom/{n}" for n in names]
    folder = app_files["folder"]
    config = {
        "mounts": {
            "/bundle/": str(Bundle.load().root),
            "/reduced/": str(app_files["reduced"]),
            "/dicom/": str(app_files["dir"]),
            "/full/": str(full_files["dir"]),
            "/samples/": str(samples_dir()),
        },
        "parity": [
            {"name": "default", "bundleUrl": "/bundle/", "urls": urls},
            {"name": "reduced", "bundleUrl": "/reduced/", "urls": urls},
            {  # no images back (22 MB of float32 each): compared through the predictions
                "name": "full",
                "bundleUrl": "/bundle/",
                "urls": [f"/full/{p.name}" for p in full_files["paths"].values()],
                "image": False,
            },
        ],
        "app": {
            "png": str(samples_dir() / UI_SAMPLE),
            "files": [str(p) for p in app_files["syntaxes"].values()],
            "folder": str(folder),
            "drop": ["/dicom/explicit_le.dcm", "/dicom/rle.dcm"],
            "tree": TREE,
        },
        "offline": {"files": [str(app_files["syntaxes"][s]) for s in OFFLINE_SYNTAXES]},
    }
    path = tmp_path_factory.mktemp("app_run") / "config.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        ["node", str(WEB / "test" / "dicom_app_driver.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=WEB,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


FLOAT_PROBS = 1e-6  # the web tests' tolerance on probabilities against the Python runtime


def _python_prediction(predictor: Predictor, path: Path, js: dict, syntax: str):
    """What the Python predictor says of the file the browser read, and the check that both read the
    same image: equal, or (lossy syntaxes) within the mapping of ``LOSSY_UNITS`` stored values, in which
    case the Python pipeline is run on the browser's image (the pipeline's parity, apart from the codec)."""
    image, info, _ = predictor.read(path)
    mine = decode(js["image"])
    assert {k: js["info"][k] for k in INFO_FIELDS} == {k: info.to_dict()[k] for k in INFO_FIELDS}, syntax
    if np.array_equal(mine, image):
        return predictor.predict_file(path), True
    assert syntax in LOSSY, (syntax, float(np.abs(mine - image).max()))
    ds = pydicom.dcmread(path)
    assert np.abs(mine - image).max() <= _mapping_step(ds, ds.pixel_array, LOSSY_UNITS) + FLOAT, syntax
    return predictor.predict_image(mine, info), False


@pytest.mark.parametrize("bundle", ["default", "reduced"])
def test_chromium_classifies_every_browser_syntax_like_the_python_predictor(app_files, app_run, bundle):
    """Full-pipeline DICOMs of every syntax the browser decodes: decoded with the bundle's decode gate
    (the ``reduced`` copy reduces them 2x: area, JPEG DCT scaling or J2K resolution levels), checked,
    classified."""
    assert not app_run["parity"]["errors"], app_run["parity"]["errors"]
    predictor = Predictor(Bundle.load(app_files["reduced"]) if bundle == "reduced" else Bundle.load())
    got = app_run["parity"]["results"][bundle]
    assert got["readOptions"] == (
        {"minSide": 128, "reductions": REDUCED_GATE["kinds"]} if bundle == "reduced" else _gate(Bundle.load())
    )
    exact = 0
    for (syntax, path), js in zip(app_files["syntaxes"].items(), got["files"], strict=True):
        assert js["ok"], (syntax, js.get("error"))
        want, same = _python_prediction(predictor, path, js, syntax)
        exact += same
        assert js["label"] == want.label, syntax
        probs = [want.probs[label] for label in predictor.labels]
        assert np.abs(np.array(js["probs"]) - probs).max() <= FLOAT_PROBS, syntax
        assert js["info"]["reduction"] == (2 if bundle == "reduced" else 1), syntax
        if bundle == "reduced" and syntax.startswith(("j2k", "htj2k")):
            assert "-level/2" in js["info"]["decoder"], js["info"]["decoder"]
        if bundle == "reduced" and syntax == "jpeg_baseline":  # libjpeg's DCT scaling, in jpegscaled.js
            assert js["info"]["decoder"] == "jpeg-dct/2", js["info"]["decoder"]
    assert exact >= len(app_files["syntaxes"]) - len(LOSSY)  # every lossless syntax read bit for bit


def test_chromium_classifies_full_size_dicoms_of_every_syntax_like_python(full_files, app_run):
    """2560 x 2130 files of every browser syntax through the app's pipeline with the default bundle's
    decode gate: 8-bit JPEG read at 1/4 by libjpeg's DCT scaling (``jpegscaled.js``), the others in full,
    as the Python predictor reads them; its labels, and its probabilities within 1e-6 (lossy codecs whose
    WebAssembly and native builds may round a stored value differently: within 0.01; HTJ2K lossy differs
    by 0.0016 here, every other syntax by less than 1e-16)."""
    predictor = Predictor(Bundle.load())
    got = app_run["parity"]["results"]["full"]
    assert got["readOptions"] == _gate(Bundle.load())
    for (syntax, path), js in zip(full_files["paths"].items(), got["files"], strict=True):
        assert js["ok"], (syntax, js.get("error"))
        want = predictor.predict_file(path)
        assert {k: js["info"][k] for k in INFO_FIELDS} == {k: want.info.to_dict()[k] for k in INFO_FIELDS}
        assert js["info"]["reduction"] == (4 if syntax == "jpeg_baseline" else 1), syntax
        if syntax == "jpeg_baseline":
            assert js["info"]["decoder"] == "jpeg-dct/4", js["info"]["decoder"]
        assert js["label"] == want.label, syntax
        probs = np.array([want.probs[label] for label in predictor.labels])
        tolerance = 0.01 if syntax in LOSSY - {"jpeg_baseline"} else FLOAT_PROBS
        assert np.abs(np.array(js["probs"]) - probs).max() <= tolerance, syntax


def _gate(bundle: Bundle) -> dict:
    decode = bundle.manifest.decode
    return {"minSide": decode.min_side, "reductions": list(decode.kinds)} if decode and decode.reduced else {}


def _package_files() -> set[str]:
    """The paths (below the server root) of the packages ``src/dicom/loader.js`` loads."""
    loader = (WEB / "src" / "dicom" / "loader.js").read_text()
    table = loader[loader.index("export const PACKAGE_FILES") :]
    return {f"/node_modules/{f}" for f in re.findall(r"'([^']+\.(?:js|wasm))'", table[: table.index("});")])}


def test_the_app_fetches_no_dicom_module_or_codec_before_a_dicom_arrives(app_run):
    app = app_run["app"]
    assert app["initialState"] == "ready" and app["png"]["state"] == "done" and app["png"]["last"]
    assert app["fetchedAtStart"] == [] and app["fetchedAfterPng"] == []
    after = set(app["fetchedAfterDicom"])
    assert "/src/dicom/reader.js" in after and _package_files() <= after, _package_files() - after


def test_the_app_classifies_several_dicoms_as_the_harness_does(app_files, app_run):
    """Several files through the file input: one row each, the same predictions as the parity run."""
    files = app_run["app"]["files"]
    assert files["state"] == "done" and not app_run["app"]["errors"], app_run["app"]["errors"]
    n = len(app_files["syntaxes"])
    assert files["summary"] == f"{n} of {n} images classified"
    parity = app_run["parity"]["results"]["default"]["files"]
    labels = Bundle.load().manifest.labels
    for (syntax, path), row, js in zip(app_files["syntaxes"].items(), files["batch"], parity, strict=True):
        assert row["path"] == path.name and row["ok"], (syntax, row.get("error"))
        assert [row["probs"][label] for label in labels] == js["probs"], syntax
        assert row["info"]["transfer_syntax"] == js["info"]["transfer_syntax"], syntax
    assert files["last"]["label"] == files["batch"][0]["label"]  # the first file is shown in full
    assert files["dicomInfo"].startswith("DICOM: ")


def _cli_folder(folder: Path) -> tuple[dict[str, dict], str]:
    """``cxr-edge predict FOLDER``: its rows by path relative to the folder's parent, and its summary."""
    result = CliRunner().invoke(cli, ["predict", str(folder)])
    assert result.exit_code == 2, result.output
    rows = {
        Path(r["path"]).relative_to(folder.parent).as_posix(): r
        for r in csv.DictReader(io.StringIO(result.stdout))
    }
    (summary,) = [line for line in result.stderr.splitlines() if "images classified" in line]
    return rows, summary


def test_a_folder_with_bad_files_gets_the_cli_rows_and_messages(app_files, app_run):
    """The folder picker: each file classified or refused with the CLI's message, none stopping the others."""
    cli_rows, summary = _cli_folder(app_files["folder"])
    app = app_run["app"]["folder"]
    assert app["state"] == "done" and app["summary"] == summary
    got = {r["path"]: r for r in app["batch"]}
    assert list(got) == list(cli_rows)  # the same files, in the same order, .txt and hidden ones skipped
    labels = Bundle.load().manifest.labels
    for path, row in cli_rows.items():
        mine = got[path]
        if row["status"] == "ok":
            assert mine["ok"] and mine["label"] == row["label"], (path, mine.get("error"))
            for label in labels:
                assert abs(mine["probs"][label] - float(row[f"prob_{label}"])) <= FLOAT_PROBS, path
        else:
            assert not mine["ok"] and mine["error"] == row["error"], path
    errors = {Path(p).name: r["error"].split(":")[0] for p, r in cli_rows.items() if r["status"] == "error"}
    assert errors == {
        "lateral.dcm": "InputRejectedError",
        "ct.dcm": "UnsupportedImageError",  # the reader's own modality check
        "abdomen.dcm": "InputRejectedError",
        "small.dcm": "InputRejectedError",
        "cut.dcm": "ImageDecodeError",
        "IM0009": "InputError",
    }
    shown = [r["cells"][1] for r in app["rows"] if r["status"] == "error"]
    assert shown == [r["error"] for r in app["batch"] if not r["ok"]]
    assert "view: view position LL is not frontal" in got["study/lateral.dcm"]["error"]


def test_dropped_files_and_folders_are_taken_like_the_cli(tmp_path, app_run):
    drop = app_run["app"]["drop"]
    assert drop["state"] == "done" and [r["path"] for r in drop["batch"]] == ["explicit_le.dcm", "rle.dcm"]
    assert all(r["ok"] for r in drop["batch"])
    _make_tree(tmp_path, TREE)
    skipped: list[Path] = []
    want = expand_inputs([tmp_path / "study", tmp_path / "loose.txt"], skipped)
    tree = app_run["app"]["tree"]  # mock FileSystemEntry objects, read in batches of 2
    assert tree["inputs"] == [p.relative_to(tmp_path).as_posix() for p in want]  # in the order dropped
    assert sorted(tree["skipped"]) == sorted(p.relative_to(tmp_path).as_posix() for p in skipped)


def test_the_app_shows_logs_and_keeps_no_patient_identifier(app_files, app_run):
    app = app_run["app"]
    seen = json.dumps([app["text"], app["html"], app["messages"], app["files"], app["folder"], app["drop"]])
    for value in PATIENT.values():
        assert value not in seen and value.split("^")[0] not in app["text"], value
    storage = app["storage"]
    kept = [storage[k] for k in ("localStorage", "sessionStorage", "indexedDB", "cookies")]
    assert kept == [0, 0, 0, ""], storage
    opened = {p.name for p in [*app_files["syntaxes"].values(), *app_files["folder"].rglob("*")]}
    assert not [p for p in storage["cached"] if p.split("/")[-1] in opened or p.startswith("/dicom/")]


def test_the_app_reads_dicoms_offline_after_a_first_visit_without_any(app_files, app_run):
    """The service worker precached the DICOM layer at install: no DICOM was opened before going offline."""
    off = app_run["offline"]
    assert not off["errors"], off["errors"]
    assert "Offline: ready" in off["offlineText"] and off["fetchedOnline"] == []
    assert "the DICOM reader and its codecs too" in off["offlineText"], off["offlineText"]
    assert off["controlled"] and off["state"] == "ready"
    online = {r["path"]: r for r in app_run["app"]["files"]["batch"]}
    rows = off["files"]["batch"]
    assert [r["path"] for r in rows] == [f"{s}.dcm" for s in OFFLINE_SYNTAXES]
    for row in rows:
        assert row["ok"], (row["path"], row.get("error"))
        assert row["probs"] == online[row["path"]]["probs"], row["path"]
    assert {f for f in _package_files() if f.endswith(".wasm")} <= set(off["fetchedOffline"])
