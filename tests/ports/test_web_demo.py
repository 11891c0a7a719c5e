"""The browser runtime (``web_demo/``) against the Python runtime.

Two layers:

* **Node** runs the app's pure modules (resize, CLAHE, median, preprocessing, PNG decoder, bundle
  checks, lung crop, ensemble) on many random inputs and compares them with OpenCV/numpy/``cxr_edge``
  (``web_demo/test/node_ops.mjs``): the 8-bit images must be bit-identical.
* **Headless Chromium** (playwright-core driving ``/usr/bin/chromium``, ``web_demo/test/driver.mjs``)
  runs LiteRT.js: the default bundle's golden vectors, a tiny bundle with a lung segmenter built here
  (and its copy whose segmenter has role ``evidence``: full-image classifiers), a site-calibrated
  (format 4) copy of the default bundle (``site_bundle.py``), the real UI through its file input
  (screenshot), a non-image file, an offline reload served by the service worker, and the bundle line
  on signed and tampered copies of the ``paper`` bundle (WebCrypto Ed25519). One browser session does
  all of it (module fixture ``browser``).

Signed bundles (``android_demo/tools/golden_signature.py``, shared with the Android core's tests) are
also checked in Node (``src/bundle.js`` on disk): each variant's verdict and key id equal Python's.

Without node, Chromium or ``web_demo/node_modules`` (``make web-deps``) these tests skip, unless
``CXR_EDGE_REQUIRE_BROWSER=1``, which turns the skip into a failure (CI). ``web_demo/screenshot.png``
is written when missing or when ``CXR_EDGE_UPDATE_SCREENSHOT=1``.

Tolerances (observed on x86-64 with AVX-512; see web_demo/README.md):

* decoded image, 8-bit preprocessed image, model input: bit-identical (asserted exactly);
* member probabilities of the default bundle (fp32, fp16, int8): bit-identical (asserted exactly);
  the tiny bundle's 3-channel fp16 model differs by ~3e-8 (XNNPack picks another first-layer kernel),
  asserted to ``FLOAT_PROBS``;
* ensemble probabilities: float64 log/exp differ in the last bits (~1e-19), asserted to ``ENSEMBLE``;
  so are the site-calibrated bundle's member (refitted head) and output probabilities;
* heat map (CAM and its placement on the image): asserted to ``CAM`` (observed 0).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli import main as cli
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.evaluation.golden import decode, encode, vectors
from cxr_edge.imaging.reader import decode_image, read_image
from cxr_edge.ops.ensemble import Stacker, apply_temperature, combine
from cxr_edge.ops.lungcrop import CropSpec, lung_crop
from cxr_edge.ops.preprocess import PreprocessSpec, crop_region, preprocess, preprocess_u8
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web_demo"
GOLDEN = REPO / "tests" / "golden"
SCREENSHOT = WEB / "screenshot.png"
CHROMIUM = Path(os.environ.get("CXR_EDGE_CHROMIUM", "/usr/bin/chromium"))
REQUIRE = os.environ.get("CXR_EDGE_REQUIRE_BROWSER") == "1"
UI_SAMPLE = "pneumonia_unknown_nih_00004075_000.png"

FLOAT_PROBS = 1e-6  # float members that are not bit-identical (3-channel fp16 of the tiny bundle)
ENSEMBLE = 1e-12  # combined probabilities (float64 log/exp of the temperature)
CAM = 1e-6  # class activation map and the heat map placed on the image
INT8_STEP = 1 / 256  # one quantisation step of an int8 probability output


def _unavailable(browser: bool) -> str | None:
    """Why the web tests cannot run here (None when they can)."""
    if shutil.which("node") is None:
        return "node is not installed (run `make web-deps`)"
    if browser:
        if not CHROMIUM.is_file():
            return f"Chromium not found at {CHROMIUM} (run `make web-deps`)"
        for package in ("@litertjs/core", "playwright-core"):
            if not (WEB / "node_modules" / package / "package.json").is_file():
                return f"web_demo/node_modules/{package} is missing (run `make web-deps`)"
    return None


def _require(browser: bool) -> None:
    reason = _unavailable(browser)
    if reason is None:
        return
    if REQUIRE:
        pytest.fail(f"CXR_EDGE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def run_node_ops(cases: list[dict]) -> list:
    """Runs ``web_demo/test/node_ops.mjs`` on cases; returns each result (failing on a JS error)."""
    _require(browser=False)
    proc = subprocess.run(
        ["node", str(WEB / "test" / "node_ops.mjs")],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)["results"]
    return results


def _ok(results: list) -> list:
    errors = [r["error"] for r in results if not r["ok"]]
    assert not errors, errors[:3]
    return [r["result"] for r in results]


# --------------------------------------------------------------------------------------------- Node

#: (source h, w, target h, w): integer factors (OpenCV's fast path, SIMD and scalar columns) and not.
AREA_SIZES = [
    (479, 512, 256, 256),
    (512, 512, 256, 256),
    (518, 518, 259, 259),
    (1024, 768, 256, 256),
    (256, 512, 256, 256),
    (300, 301, 32, 32),
    (900, 700, 224, 200),
]
#: (h, w, clip limit, tiles): sizes that are and are not multiples of the tile grid.
CLAHE_CASES = [
    (256, 256, 2.0, 8),
    (64, 64, 2.0, 8),
    (100, 77, 2.0, 8),
    (255, 256, 3.5, 4),
    (37, 41, 1.0, 5),
    (50, 50, 40.0, 3),
    (128, 96, 0.01, 16),
]


def test_resize_clahe_median_are_bit_identical_to_opencv():
    rng = np.random.default_rng(0)
    cases, expected = [], []
    for h, w, dh, dw in AREA_SIZES:
        a = rng.random((h, w), dtype=np.float32)
        cases.append({"op": "resize_area", "image": encode(a), "width": dw, "height": dh})
        expected.append(cv2.resize(a, (dw, dh), interpolation=cv2.INTER_AREA))
    for h, w, dh, dw in [(200, 180, 256, 256), (100, 300, 256, 256), (8, 8, 479, 512), (3, 5, 7, 9)]:
        a = rng.random((h, w), dtype=np.float32)
        cases.append({"op": "resize_linear", "image": encode(a), "width": dw, "height": dh})
        expected.append(cv2.resize(a, (dw, dh), interpolation=cv2.INTER_LINEAR))
    for h, w, clip, tiles in CLAHE_CASES:
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + rng.normal(0, 10, (h, w))
        for a in (rng.integers(0, 256, (h, w), dtype=np.uint8), np.clip(smooth, 0, 255).astype(np.uint8)):
            cases.append({"op": "clahe", "image": encode(a), "clip": clip, "tiles": tiles})
            expected.append(cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(a))
    for h, w in [(256, 256), (37, 41), (1, 5)]:
        for a in (
            rng.integers(0, 256, (h, w), dtype=np.uint8),
            rng.integers(90, 110, (h, w), dtype=np.uint8),  # a narrow histogram
            np.full((h, w), 77, np.uint8),  # constant: left as it is
        ):
            cases.append({"op": "equalize", "image": encode(a)})
            expected.append(cv2.equalizeHist(a))
    for k in (3, 5, 7):
        for h, w in [(256, 256), (31, 17), (2, 3)]:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            cases.append({"op": "median", "image": encode(a), "k": k})
            expected.append(cv2.medianBlur(a, k))
    for case, want, got in zip(cases, expected, _ok(run_node_ops(cases)), strict=True):
        out = decode(got)
        assert out.dtype == want.dtype and np.array_equal(out, want), (case["op"], case["image"]["shape"])


def test_preprocessing_of_every_sample_is_bit_identical():
    specs = [
        PreprocessSpec(),
        PreprocessSpec(input_size=(32, 32)),
        PreprocessSpec(input_size=(64, 64), border=0.05, channels=3, median=5),
        PreprocessSpec(input_size=(224, 200), clahe_clip=3.0, clahe_tiles=6, normalize="unit"),
        PreprocessSpec(input_size=(64, 64), equalize=True),
    ]
    cases, expected = [], []
    for i, path in enumerate(sorted(samples_dir().glob("*.png"))):
        image, _ = read_image(path)
        spec = specs[i % len(specs)]
        h, w = image.shape
        box = [None, (37, 51, 37 + int(w * 0.7), 51 + int(h * 0.6)), (100, 100, min(250, w), min(260, h))][
            i % 3
        ]
        cases.append(
            {
                "op": "preprocess",
                "image": encode(image),
                "spec": spec.to_dict(),
                "crop_box": box and list(box),
            }
        )
        expected.append((preprocess_u8(image, spec, box), preprocess(image, spec, box)))
    for (u8, x), got in zip(expected, _ok(run_node_ops(cases)), strict=True):
        assert np.array_equal(decode(got["u8"]), u8)
        assert np.array_equal(decode(got["x"]), x)  # standardisation in numpy's float32 order


def _png(pixels: np.ndarray, color_type: int, depth: int, palette=None, interlace=False) -> bytes:
    """A minimal PNG encoder (filter 0) for the variants OpenCV cannot write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = pixels.shape[:2]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    flat = pixels.reshape(h, w, channels)

    def rows(img: np.ndarray) -> bytes:
        out = b""
        for row in img:
            if depth == 16:
                out += b"\0" + row.astype(">u2").tobytes()
            elif depth == 8:
                out += b"\0" + row.astype(np.uint8).tobytes()
            else:
                out += (
                    b"\0"
                    + np.packbits(
                        np.unpackbits(row.astype(np.uint8)[:, :, None], axis=2)[:, :, -depth:]
                    ).tobytes()
                )
        return out

    if interlace:
        passes = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
        raw = b"".join(rows(flat[y0::dy, x0::dx]) for x0, y0, dx, dy in passes if w > x0 and h > y0)
    else:
        raw = rows(flat)
    head = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace))
    body = chunk(b"IHDR", head) + (chunk(b"PLTE", palette.tobytes()) if palette is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_png_decoder_matches_the_python_reader():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    colour = rng.integers(0, 256, (29, 31, 3), dtype=np.uint8)
    files = {
        "grey8": cv2.imencode(".png", grey)[1].tobytes(),
        "grey16": cv2.imencode(".png", rng.integers(100, 40000, (33, 20), dtype=np.uint16))[1].tobytes(),
        "rgb-colour": cv2.imencode(".png", colour)[1].tobytes(),
        "rgb-grey": cv2.imencode(".png", np.repeat(grey[..., None], 3, axis=2))[1].tobytes(),
        "rgba": cv2.imencode(".png", rng.integers(0, 256, (17, 23, 4), dtype=np.uint8))[1].tobytes(),
        "rgb16": cv2.imencode(".png", rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16))[1].tobytes(),
        "grey-alpha": _png(rng.integers(0, 256, (13, 17, 2), dtype=np.uint8), 4, 8),
        "grey4": _png(rng.integers(0, 16, (15, 13), dtype=np.uint8), 0, 4),
        "grey1": _png(rng.integers(0, 2, (10, 21), dtype=np.uint8), 0, 1),
        "palette": _png(
            rng.integers(0, 7, (12, 9), dtype=np.uint8), 3, 8, rng.integers(0, 256, (7, 3), dtype=np.uint8)
        ),
        "interlaced": _png(rng.integers(0, 256, (19, 23), dtype=np.uint8), 0, 8, interlace=True),
        "interlaced16": _png(rng.integers(0, 65536, (11, 5), dtype=np.uint16), 0, 16, interlace=True),
        "sample": (samples_dir() / UI_SAMPLE).read_bytes(),
    }
    cases = [
        {"op": "decode", "bytes": base64.b64encode(b).decode(), "name": f"{k}.png"} for k, b in files.items()
    ]
    for (name, data), got in zip(files.items(), _ok(run_node_ops(cases)), strict=True):
        image, info = decode_image(data, name=f"{name}.png")
        assert np.array_equal(decode(got["image"]), image), name
        assert (
            got["info"]["intensity"] == info.intensity
            and got["info"]["converted_from"] == info.converted_from
        )


def test_bad_files_get_the_python_error_messages():
    good = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    files = {
        "text": b"not an image, just some text\n" * 4,
        "binary": bytes(range(200, 256)) * 3,
        "truncated": good[: len(good) - 20],
        "empty": b"",
    }
    cases = [{"op": "decode", "bytes": base64.b64encode(b).decode(), "name": "x.png"} for b in files.values()]
    for (name, data), got in zip(files.items(), run_node_ops(cases), strict=True):
        assert not got["ok"], name
        with pytest.raises(Exception) as python_error:
            decode_image(data, name="x.png")
        assert got["error"].split(": ", 1)[1] == str(python_error.value), name


def test_bundles_are_checked_like_the_python_loader(tmp_path):
    source = Bundle.load().root
    variants = {}
    for name in ("intact", "tampered", "incomplete", "future"):
        variants[name] = shutil.copytree(source, tmp_path / name)
    model = Bundle.load().manifest.models[0].file
    with open(variants["tampered"] / model, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (variants["incomplete"] / model).unlink()
    manifest = json.loads((variants["future"] / "manifest.json").read_text())
    (variants["future"] / "manifest.json").write_text(json.dumps(manifest | {"format_version": 99}))
    cases = [{"op": "load_bundle", "dir": str(d)} for d in variants.values()]
    intact, tampered, incomplete, future = run_node_ops(cases)
    assert intact["ok"] and intact["result"]["members"] == list(Bundle.load().manifest.ensemble.members)
    assert "checksum mismatch" in tampered["error"] and model in tampered["error"]
    assert "bundle is incomplete" in incomplete["error"]
    assert "unsupported bundle format" in future["error"]


def test_service_worker_precaches_every_app_module():
    """Every module under src/ (the DICOM reader's too) and every package file the DICOM layer loads
    (``PACKAGE_FILES`` of ``src/dicom/loader.js``: the codecs' scripts and ``.wasm``), so that DICOMs of
    every syntax open offline after the first visit; the page itself loads the DICOM layer lazily."""
    shell = set(re.findall(r"'\./([^']+)'", (WEB / "sw.js").read_text()))
    modules = {p.relative_to(WEB).as_posix() for p in (WEB / "src").rglob("*.js")}
    assert any(m.startswith("src/dicom/") for m in modules)
    loader = (WEB / "src" / "dicom" / "loader.js").read_text()
    table = loader[loader.index("export const PACKAGE_FILES") :]
    table = table[: table.index("});")]
    packages = {f"node_modules/{f}" for f in re.findall(r"'([^']+\.(?:js|wasm))'", table)}
    assert len(packages) == 11 and sum(p.endswith(".wasm") for p in packages) == 4, packages
    assert modules | packages | {"index.html", "app.js", "styles.css", "app.webmanifest"} <= shell
    if (WEB / "node_modules").is_dir():  # a precached file that does not exist would fail the install
        assert [p for p in shell if p.startswith("node_modules/") and not (WEB / p).is_file()] == []


def _blob_map(rng: np.random.Generator, size: tuple[int, int], n_blobs: int) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    prob = rng.uniform(0, 0.3, size)
    for _ in range(n_blobs):
        cx, cy, rx, ry = (
            rng.uniform(0.1, 0.9),
            rng.uniform(0.1, 0.9),
            rng.uniform(0.03, 0.4),
            rng.uniform(0.03, 0.4),
        )
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        prob[inside] = rng.uniform(0.45, 1.0)
    return prob.astype(np.float32)


def _ambiguous(prob: np.ndarray, threshold: float) -> bool:
    """Whether the 2nd and 3rd largest components tie (numpy's unstable argsort then decides)."""
    binary = (prob >= np.float32(threshold)).astype(np.uint8)
    areas = sorted(
        cv2.connectedComponentsWithStats(binary, connectivity=8)[2][1:, cv2.CC_STAT_AREA], reverse=True
    )
    return len(areas) > 2 and areas[1] == areas[2]


def test_lung_crop_matches_python_including_fallbacks():
    rng = np.random.default_rng(2)
    specs = [
        CropSpec(),
        CropSpec(threshold=0.45, margin=0.1, max_components=2, min_aspect=0.8, max_aspect=1.5),
    ]
    cases, expected = [], []
    probs = [np.zeros((64, 64), np.float32), np.ones((48, 40), np.float32)]
    probs += [_blob_map(rng, (64, 64) if i % 2 else (48, 40), int(rng.integers(1, 9))) for i in range(60)]
    for i, prob in enumerate(probs):
        spec = specs[i % 2]
        if _ambiguous(prob, spec.threshold):
            continue
        shape = (int(rng.integers(300, 700)), int(rng.integers(300, 700)))
        cases.append(
            {"op": "lung_crop", "prob": encode(prob), "image_shape": list(shape), "crop": spec.to_dict()}
        )
        expected.append(lung_crop(prob, shape, spec))
    outcomes = set()
    for want, got in zip(expected, _ok(run_node_ops(cases)), strict=True):
        assert (tuple(got["box"]), got["status"], got["reason"]) == (want.box, want.status, want.reason)
        assert np.array_equal(decode(got["mask"]), want.mask)
        outcomes.add(" ".join(want.reason.split(" ")[:2]) if want.reason else "lung")
    assert outcomes == {"lung", "no lung", "lung area", "mask fragmented", "box width/height"}  # every gate


def test_ensemble_methods_match_python():
    rng = np.random.default_rng(3)
    cases, expected = [], []
    for i in range(40):
        n, k = int(rng.integers(1, 5)), 3
        probs = rng.dirichlet(np.ones(k), size=n)
        if i % 10 == 0:
            probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])[
                : max(n, 2)
            ]
        n = len(probs)
        method = ["mean", "weighted", "vote", "stacking"][i % 4]
        weights = rng.uniform(0.1, 1, n).tolist() if method == "weighted" else None
        stacker = None
        if method == "stacking":
            stacker = Stacker(
                w1=tuple(map(tuple, rng.normal(0, 1, (n * k, 9)))),
                b1=tuple(rng.normal(0, 0.1, 9)),
                w2=tuple(map(tuple, rng.normal(0, 1, (9, k)))),
                b2=tuple(rng.normal(0, 0.1, k)),
            )
        temperature = float(rng.choice([1.0, 0.7, 1.3]))
        want = combine(probs, method, weights, stacker)
        want = apply_temperature(want, temperature) if temperature != 1.0 else want
        stacking = None if stacker is None else {k: getattr(stacker, k) for k in ("w1", "b1", "w2", "b2")}
        cases.append(
            {
                "op": "combine",
                "probs": probs.tolist(),
                "method": method,
                "weights": weights,
                "stacking": stacking,
            }
            | {"temperature": temperature}
        )
        expected.append(want)
    for case, want, got in zip(cases, expected, _ok(run_node_ops(cases)), strict=True):
        assert np.abs(np.array(got) - want).max() <= ENSEMBLE, case["method"]
        assert int(np.argmax(got)) == int(np.argmax(want))


def test_lung_fraction_and_referral_match_python():
    from cxr_edge.ops.cam import lung_fraction
    from cxr_edge.ops.quality import ReferralBand, referral_reason

    rng = np.random.default_rng(4)
    cases, expected = [], []
    for i in range(40):
        h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        cam = rng.random((h, w), dtype=np.float32) * (rng.random((h, w)) > 0.4)
        H, W = int(rng.integers(300, 700)), int(rng.integers(300, 700))
        x0, y0 = int(rng.integers(0, W // 4)), int(rng.integers(0, H // 4))
        region = [x0, y0, int(rng.integers(W // 2, W + 1)), int(rng.integers(H // 2, H + 1))]
        seg_region = [[0, 0, W, H], [W // 10, H // 12, W - W // 10, H - H // 12]][i % 2]
        mask = ((rng.random((int(rng.integers(16, 80)), int(rng.integers(16, 80)))) > 0.5) * 255).astype(
            np.uint8
        )
        frame = [[32, 32], [64, 48], [256, 256], [h, w]][i % 4]
        cases.append(
            {
                "op": "lung_fraction",
                "cam": encode(cam),
                "region": region,
                "mask": encode(mask),
                "mask_region": seg_region,
                "frame": frame,
            }
        )
        expected.append(lung_fraction(cam, tuple(region), mask, tuple(seg_region), tuple(frame)))
    cases.append(
        {
            "op": "lung_fraction",
            "cam": encode(np.zeros((4, 4), np.float32)),
            "region": [0, 0, 8, 8],
            "mask": encode(np.full((4, 4), 255, np.uint8)),
            "mask_region": [0, 0, 8, 8],
            "frame": [8, 8],
        }
    )
    expected.append(None)
    for i in range(60):
        probs = rng.dirichlet(np.ones(3) * [0.3, 1, 3][i % 3])
        if i % 10 == 0:
            probs = np.array([0.125, 0.375, 0.5])  # exact binary ties of the 2-decimal formatting
        band = ReferralBand(
            min_top_prob=float(rng.choice([0.0, 0.375, 0.5, 0.6, 0.9])),
            min_margin=float(rng.choice([0.0, 0.125, 0.3])),
        )
        names = dict(zip(("a", "b", "c"), probs.tolist(), strict=True))
        cases.append(
            {
                "op": "referral",
                "probs": probs.tolist(),
                "band": {"min_top_prob": band.min_top_prob, "min_margin": band.min_margin},
            }
        )
        expected.append(referral_reason(names, band))
    cases.append({"op": "referral", "probs": [0.2, 0.8], "band": None})
    expected.append(None)
    for case, want, got in zip(cases, expected, _ok(run_node_ops(cases)), strict=True):
        if case["op"] == "lung_fraction" and want is not None:
            assert abs(got - want) <= 1e-9, case["frame"]
        else:
            assert got == want, case.get("probs")
    assert {e is None for e in expected[41:]} == {True, False}


def test_format_3_manifests_are_read_and_checked_like_python(tmp_path):
    import copy

    from tiny_bundle import FAILURE_MODES, LABELS, default_as_format3, synthetic_loso_report

    from cxr_edge.bundle.card import LOSO_NOTE, CardTask, LosoRecord, ModelCard
    from cxr_edge.bundle.manifest import BundleManifest
    from cxr_edge.errors import CxrEdgeError
    from cxr_edge.ops.quality import ReferralBand

    card = ModelCard(
        intended_use="Web tests.",
        task=CardTask(LABELS, {"bacterial": "pneumonia_unknown"}),
        loso=LosoRecord("tiny", "cxr-edge loso", synthetic_loso_report(), LOSO_NOTE),
        failure_modes=FAILURE_MODES,
    )
    root = default_as_format3(
        tmp_path / "b3",
        card=card,
        label_map={"bacterial": "pneumonia_unknown"},
        abstain=ReferralBand(0.55, 0.05),
    )
    base = json.loads((root / "manifest.json").read_text())
    mutations = {
        "intact": lambda d: None,
        "format 2 with a label map": lambda d: d.update(format_version=2),
        "label map to an unknown label": lambda d: d.update(label_map={"bacterial": "pneumonia"}),
        "lung evidence without a segmenter": lambda d: d.update(
            lung_evidence={"min_fraction": 0.4, "chosen_on": "x"}
        ),
        "lung evidence above 1": lambda d: d.update(lung_evidence={"min_fraction": 1.5, "chosen_on": "x"}),
        "card without its disclaimer": lambda d: d["card"].update(disclaimer="fine for patients"),
        "card about other labels": lambda d: d["card"]["task"].update(labels=["a", "b", "c"]),
        "referral band above 1": lambda d: d["ensemble"].update(
            abstain={"min_top_prob": 1.5, "min_margin": 0}
        ),
    }
    cases, python = [], []
    for change in mutations.values():
        data = copy.deepcopy(base)
        change(data)
        cases.append({"op": "parse_manifest", "manifest": data})
        try:
            BundleManifest.from_dict(data)
            python.append(None)
        except CxrEdgeError as exc:
            python.append(str(exc))
    results = run_node_ops(cases)
    for name, want, got in zip(mutations, python, results, strict=True):
        assert got["ok"] == (want is None), (name, got, want)
    intact = results[0]["result"]
    assert intact["format_version"] == 3 and intact["label_map"] == {"bacterial": "pneumonia_unknown"}
    assert intact["abstain"] == {"min_top_prob": 0.55, "min_margin": 0.05} and intact["lung_evidence"] is None
    assert intact["card"] == card.to_dict()
    for name, want, got in zip(mutations, python, results, strict=True):
        if want is not None and "follow its schema" not in want:  # the same sentence as Python's
            assert want.split(";")[0].split(": ")[-1] in got["error"], name


def test_segmenter_roles_are_read_like_python():
    """``segmenter.role``: absent means ``crop``; ``crop`` and ``evidence`` are read; others are refused."""
    from cxr_edge.bundle.manifest import BundleManifest
    from cxr_edge.errors import CxrEdgeError

    base = json.loads((Bundle.load("paper").root / "manifest.json").read_text())
    roles = {"absent": ..., "crop": "crop", "evidence": "evidence", "unknown": "lungs", "null": None}
    cases, python = [], []
    for role in roles.values():
        data = json.loads(json.dumps(base))
        data["segmenter"].pop("role", None)
        if role is not ...:
            data["segmenter"]["role"] = role
        cases.append({"op": "parse_manifest", "manifest": data})
        try:
            python.append(str(BundleManifest.from_dict(data).segmenter.role))
        except CxrEdgeError:
            python.append(None)
    results = run_node_ops(cases)
    for name, want, got in zip(roles, python, results, strict=True):
        assert got["ok"] == (want is not None), (name, got, want)
        if want is not None:
            assert got["result"]["segmenter"]["role"] == want, name
            assert got["result"]["segmenter"]["crops"] == (want == "crop"), name
        else:
            assert "unknown segmenter role" in got["error"] and "crop or evidence" in got["error"], name
    assert python == ["crop", "crop", "evidence", None, None]


def test_server_takes_a_preset_or_a_folder(tmp_path):
    """``serve.mjs --bundle`` resolves preset names as ``cxr_edge.bundle.presets.resolve`` does."""
    from cxr_edge.bundle.presets import PRESETS

    _require(browser=False)
    (tmp_path / "paper").mkdir()  # a folder of a preset's name wins over the preset
    script = (
        "const { parseArgs } = await import(process.argv[1]);"
        "const out = {};"
        "for (const v of ['default', 'paper', 'some/folder'])"
        "  out[v] = parseArgs(['--bundle', v]).mounts['/bundle/'];"
        "out.none = parseArgs([]).mounts['/bundle/'];"
        "console.log(JSON.stringify(out));"
    )
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script, (WEB / "serve.mjs").as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["default"]) == PRESETS["default"].path == Path(got["none"])
    assert Path(got["paper"]) == tmp_path / "paper"
    assert Path(got["some/folder"]) == tmp_path / "some" / "folder"
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script, (WEB / "serve.mjs").as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["paper"]) == PRESETS["paper"].path


def test_site_operations_match_python():
    """Refitted heads on feature maps and the site temperature and bias (``cxr_edge.ops.site``)."""
    from site_bundle import math_cases

    cases = math_cases()
    requests = [
        {"op": "site_head", **{k: c[k] for k in ("features", "weights", "bias")}} for c in cases["heads"]
    ]
    requests += [
        {"op": "site_apply", **{k: c[k] for k in ("probs", "temperature", "bias")}} for c in cases["apply"]
    ]
    expected = [c["expected"] for c in cases["heads"] + cases["apply"]]
    for request, want, got in zip(requests, expected, _ok(run_node_ops(requests)), strict=True):
        assert np.abs(np.array(got) - want).max() <= ENSEMBLE, request["op"]
        assert int(np.argmax(got)) == int(np.argmax(want))


@pytest.fixture(scope="module")
def calibrated_bundle(tmp_path_factory) -> Path:
    """The site-calibrated (format 4) copy of the default bundle of ``site_bundle.py``."""
    from site_bundle import write_site_bundle

    return write_site_bundle(tmp_path_factory.mktemp("site") / "bundle")


def test_format_4_manifests_are_read_and_checked_like_python(calibrated_bundle):
    from site_bundle import apply_ops, manifest_cases

    base = json.loads((calibrated_bundle / "manifest.json").read_text())
    cases = manifest_cases(calibrated_bundle)
    requests = [{"op": "parse_manifest", "manifest": apply_ops(base, c["ops"])} for c in cases]
    requests.append({"op": "load_bundle", "dir": str(calibrated_bundle)})
    *results, loaded = run_node_ops(requests)
    for case, got in zip(cases, results, strict=True):
        want = case["python_error"]
        assert got["ok"] == (want is None), (case["name"], got, want)
        if want is not None and "follow its schema" not in want:  # the same sentence as Python's
            assert want.split(";")[0].split(": ")[-1] in got["error"], case["name"]
    by_name = {c["name"]: got for c, got in zip(cases, results, strict=True)}
    assert "unsupported bundle format" in by_name["format 5"]["error"]  # a later format is refused
    site = by_name["intact"]["result"]["site"]
    assert by_name["intact"]["result"]["format_version"] == 4
    assert (site["name"], site["date"], site["method"]) == (
        base["site"]["name"],
        base["site"]["date"],
        "head",
    )
    assert site["temperature"] == base["site"]["temperature"] and site["bias"] == base["site"]["bias"]
    assert site["heads"] == list(base["site"]["heads"]) == base["ensemble"]["members"]
    assert loaded["ok"] and loaded["result"]["members"] == base["ensemble"]["members"], loaded


# ------------------------------------------------------------------------------------------ signed bundles

#: The signed bundles and Python's verdicts, shared with the Android core's tests (loaded by path).
SIGNATURE_HELPER = REPO / "android_demo" / "tools" / "golden_signature.py"

#: Loads bundles with ``src/bundle.js`` (a fetch() stand-in reading folders from disk, optionally announcing
#: whether signature.json exists as serve.mjs does), parses signature.json texts, and checks one signature
#: with a WebCrypto that has no Ed25519. Request on stdin, results on stdout (JSON).
SIGNATURE_SCRIPT = r"""
import { readFileSync } from 'node:fs';
import path from 'node:path';
const m = await import(process.argv[1]);
const request = JSON.parse(readFileSync(0, 'utf8'));
const out = { loads: {}, parsed: [], requested: {} };
const describe = (sig) => ({ status: sig.status, keyId: sig.keyId, claimedKeyId: sig.claimedKeyId,
  signedAt: sig.signedAt, text: sig.text, notFoundUrl: sig.notFoundUrl ?? null });
for (const [name, item] of Object.entries(request.loads)) {
  const requested = [];
  const fetchFn = async (url) => {
    const file = new URL(url).pathname.split('/').pop();
    requested.push(file);
    let bytes;
    try {
      bytes = readFileSync(path.join(item.dir, file));
    } catch {
      return new Response('', { status: 404 });
    }
    const headers = {};
    if (item.announce && file === 'manifest.json') {
      let signed = true;
      try { readFileSync(path.join(item.dir, 'signature.json')); } catch { signed = false; }
      headers['X-Cxr-Edge-Signature'] = signed ? 'present' : 'absent';
    }
    return new Response(bytes, { status: 200, headers });
  };
  try {
    const bundle = await m.loadBundleFromUrl('http://bundle.invalid/b/', { fetchFn });
    out.loads[name] = { ok: true, name: bundle.manifest.name, signature: describe(bundle.signature) };
  } catch (err) {
    out.loads[name] = { ok: false, error: `${err.name}: ${err.message}` };
  }
  out.requested[name] = requested;
}
for (const text of request.texts) {
  try {
    const sig = m.parseSignature(new TextEncoder().encode(text));
    const publicKey = Buffer.from(sig.public_key).toString('base64');
    out.parsed.push({ ok: true, key_id: sig.key_id, public_key: publicKey, signed_at: sig.signed_at });
  } catch (err) {
    out.parsed.push({ ok: false, short: err.short, error: err.message });
  }
}
const signed = request.unsupported;
const manifest = new Uint8Array(readFileSync(path.join(signed, 'manifest.json')));
const signature = new Uint8Array(readFileSync(path.join(signed, 'signature.json')));
const noEd25519 = {
  importKey: async () => {
    throw new DOMException('Algorithm: Unrecognized name', 'NotSupportedError');
  },
};
out.unsupported = describe(await m.checkSignature(manifest, signature, { subtle: noEd25519 }));
out.noWebCrypto = describe(await m.checkSignature(manifest, signature, { subtle: null }));
out.keyIds = {};
for (const [name, raw] of Object.entries(request.rawKeys)) {
  out.keyIds[name] = await m.keyIdOf(new Uint8Array(Buffer.from(raw, 'base64')));
}
console.log(JSON.stringify(out));
"""


def _signature_helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cxr_edge_golden_signature", SIGNATURE_HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def signed_bundles(tmp_path_factory) -> dict:
    """Key pairs and signed, tampered and unsigned copies of the ``paper`` bundle (it pins a self-test file),
    with Python's verdicts.

    ``verdicts``: the signature checked against the key each bundle embeds (what the app reports);
    ``loads``: :meth:`Bundle.load` without a trust policy (read, or refused for a changed model file).
    """
    helper = _signature_helper()
    folder = tmp_path_factory.mktemp("signed")
    keys = helper.make_keys(folder / "keys")
    roots = helper.make_bundles(folder / "bundles", keys)
    return {
        "helper": helper,
        "keys": keys,
        "roots": roots,
        "verdicts": {name: helper.own_key_verdict(root) for name, root in roots.items()},
        "loads": {name: helper.load_verdict(root, None) for name, root in roots.items()},
    }


def test_signed_bundles_are_checked_like_python(signed_bundles):
    """``signature.json``: the verdict against the embedded key and its key id are Python's, every variant."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from cxr_edge.bundle.signature import load_public_key

    _require(browser=False)
    helper, roots, keys = signed_bundles["helper"], signed_bundles["roots"], signed_bundles["keys"]
    loads = {name: {"dir": str(root), "announce": False} for name, root in roots.items()}
    # serve.mjs's header: "absent" spares the request (and its 404), "present" reads the signature.
    loads |= {f"announced {n}": {"dir": str(roots[n]), "announce": True} for n in ("unsigned", "signed")}
    cases = helper.signature_cases(roots["signed"])
    request = {"loads": loads, "texts": [c["text"] for c in cases], "unsupported": str(roots["signed"])}
    raw_keys = {
        n: load_public_key(k["public"]).public_bytes(Encoding.Raw, PublicFormat.Raw) for n, k in keys.items()
    }
    request["rawKeys"] = {n: base64.b64encode(r).decode() for n, r in raw_keys.items()}
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", SIGNATURE_SCRIPT, (WEB / "src" / "bundle.js").as_uri()],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got["keyIds"] == {n: k["key_id"] for n, k in keys.items()}  # key_id(): sha256 of the raw key
    statuses = set()
    for name, python in signed_bundles["verdicts"].items():
        mine, load = got["loads"][name], signed_bundles["loads"][name]
        if not load["ok"]:  # a changed model or self-test file: refused before the signature matters
            assert not mine["ok"] and load["problem"] in mine["error"], (name, mine, load)
            continue
        assert mine["ok"], (name, mine)
        sig = mine["signature"]
        assert sig["status"] == python["status"], (name, sig, python)
        statuses.add(sig["status"])
        assert sig["keyId"] == python.get("key_id") and sig["claimedKeyId"] == python.get("claimed_key_id")
        if python["status"] == "valid":
            assert sig["text"].startswith(f"signature valid for key {python['key_id']}"), sig["text"]
            assert "not a trust decision" in sig["text"] and sig["signedAt"] == python["signed_at"]
        elif python["status"] == "invalid":
            assert "NOT" in sig["text"], sig["text"]
        elif python["status"] == "unsigned":
            assert sig["text"] == "unsigned", sig
            assert sig["notFoundUrl"] == "http://bundle.invalid/b/signature.json", (
                sig
            )  # kept out of the cache
    assert statuses == {"unsigned", "valid", "invalid", "malformed"}
    assert got["loads"]["signed"]["signature"]["keyId"] == keys["maker"]["key_id"]
    edited = got["loads"]["manifest_edited"]["signature"]["text"]
    assert edited.startswith("signature does NOT match the manifest"), edited
    # With serve.mjs's header: no request for a signature that is not there; the same verdict otherwise.
    assert "signature.json" not in got["requested"]["announced unsigned"]
    assert got["loads"]["announced unsigned"]["signature"]["status"] == "unsigned"
    assert got["loads"]["announced unsigned"]["signature"]["notFoundUrl"] is None
    assert got["loads"]["announced signed"]["signature"] == got["loads"]["signed"]["signature"]
    # signature.json texts: read or refused as read_signature does.
    for case, mine in zip(cases, got["parsed"], strict=True):
        want = case["python"]
        assert mine["ok"] == want["ok"], (case["name"], mine, want)
        if want["ok"]:
            assert (mine["key_id"], mine["public_key"], mine["signed_at"]) == (
                want["key_id"],
                want["public_key"],
                want["signed_at"],
            )
        else:
            assert mine["short"] == want["problem"], case["name"]
            sentence = want["message"].split("; received")[0]  # what was received: each library's words
            assert mine["error"].split("; received")[0] == sentence, case["name"]
    # A browser without Ed25519 (or without WebCrypto) says so and names the claimed key: never "valid".
    for check in (got["unsupported"], got["noWebCrypto"]):
        assert check["status"] == "unsupported" and check["keyId"] == keys["maker"]["key_id"], check
        assert "cannot verify Ed25519" in check["text"], check["text"]


# ------------------------------------------------------------------------------------------ browser


TINY_SAMPLES = ("covid_hannover_006f3a8a.png", "normal_nih_00003552_004.png")
#: More samples for lung fraction, flag and referral parity (both sides of each threshold occur).
TINY_EXTRA = tuple(p.name for p in sorted(samples_dir().glob("*.png"))[1:7])


@pytest.fixture(scope="module")
def segmenter_bundle(request) -> Path | None:
    """The tiny format-3 segmenter bundle (``tests/tiny_bundle.py``), or None without TensorFlow."""
    _require(browser=True)  # only the browser tests use it: do not build it when they cannot run
    try:
        import keras  # noqa: F401
    except ImportError:
        return None
    return request.getfixturevalue("tiny_segmenter_bundle")


@pytest.fixture(scope="module")
def evidence_bundle(segmenter_bundle, tmp_path_factory) -> Path | None:
    """The tiny segmenter bundle with ``segmenter.role`` "evidence" (the manifest is not hashed)."""
    if segmenter_bundle is None:
        return None
    root = shutil.copytree(segmenter_bundle, tmp_path_factory.mktemp("evidence") / "bundle")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["segmenter"]["role"] = "evidence"
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    assert not Bundle.load(root).manifest.segmenter.crops
    return root


#: Members of the site-calibrated bundle's subset run: its heads apply, its temperature and bias do not.
SITE_SUBSET = 2
#: Signed bundles the app is opened on (``signed_bundles``): signed, and changed after signing.
SIGNED_UI = ("signed", "manifest_edited")


@pytest.fixture(scope="module")
def browser(segmenter_bundle, evidence_bundle, calibrated_bundle, signed_bundles, tmp_path_factory) -> dict:
    """One headless-Chromium session over every browser scenario (``web_demo/test/driver.mjs``)."""
    _require(browser=True)
    tmp = tmp_path_factory.mktemp("browser")
    bad = tmp / "notes.png"
    bad.write_text("this is not an image, just some text\n")
    golden = json.loads((GOLDEN / "index.json").read_text())["files"]
    stems = [json.loads((GOLDEN / g).read_text())["file"] for g in golden]
    items = [{"name": f"default/{s}", "bundleUrl": "/bundle/", "imageUrl": f"/samples/{s}"} for s in stems]
    items.append(
        {
            "name": f"threaded/{stems[0]}",
            "bundleUrl": "/bundle/",
            "imageUrl": f"/samples/{stems[0]}",
            "threads": 2,
        }
    )
    subset = list(Bundle.load(calibrated_bundle).manifest.ensemble.members[:SITE_SUBSET])
    items += [{"name": f"site/{s}", "bundleUrl": "/site/", "imageUrl": f"/samples/{s}"} for s in stems]
    items.append(
        {"name": f"site-subset/{stems[0]}", "bundleUrl": "/site/", "imageUrl": f"/samples/{stems[0]}"}
        | {"members": subset}
    )
    mounts = {"/bundle/": str(Bundle.load().root), "/samples/": str(samples_dir())}
    mounts["/site/"] = str(calibrated_bundle)
    if segmenter_bundle is not None:
        mounts["/tiny/"] = str(segmenter_bundle)
        items += [
            {"name": f"tiny/{s}", "bundleUrl": "/tiny/", "imageUrl": f"/samples/{s}"}
            for s in TINY_SAMPLES + TINY_EXTRA
        ]
    if evidence_bundle is not None:
        mounts["/tiny-evidence/"] = str(evidence_bundle)
        items += [
            {"name": f"tiny-evidence/{s}", "bundleUrl": "/tiny-evidence/", "imageUrl": f"/samples/{s}"}
            for s in TINY_SAMPLES + TINY_EXTRA
        ]
    bundles = []
    if segmenter_bundle is not None:
        bundles = [
            {"name": "tiny", "query": "?bundle=/tiny/&sw=0", "image": str(samples_dir() / TINY_SAMPLES[0])}
        ]
    # The app's bundle line on a signed bundle and on one whose manifest changed after signing.
    for name in SIGNED_UI:
        mounts[f"/{name}/"] = str(signed_bundles["roots"][name])
        query = f"?bundle=/{name}/&sw=0"
        bundles.append({"name": name, "query": query, "image": str(samples_dir() / UI_SAMPLE)})
    empty = tmp / "no_litert"
    empty.mkdir()
    config = {
        "mounts": mounts,
        "golden": items,
        "bundles": bundles,
        "missingRuntime": str(empty),
        "threads": 1,
        "ui": {"image": str(samples_dir() / UI_SAMPLE), "bad": str(bad), "screenshot": str(tmp / "shot.png")}
        | {"offline": True},
    }
    (tmp / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        ["node", str(WEB / "test" / "driver.mjs"), str(tmp / "config.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=WEB,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    result["golden"] = {g["name"]: g for g in result["golden"]}
    return result


def test_default_bundle_reproduces_the_golden_vectors(browser):
    runtime = browser["runtimes"]["1"]
    assert runtime["threads"] == 1 and runtime["crossOriginIsolated"]
    bundle = Bundle.load()
    quant = {e.name: e.quant for e in bundle.manifest.models}
    for name in json.loads((GOLDEN / "index.json").read_text())["files"]:
        stored = json.loads((GOLDEN / name).read_text())
        got = browser["golden"][f"default/{stored['file']}"]
        image, _ = read_image(samples_dir() / stored["file"])
        assert np.array_equal(decode(got["decoded"]), image)  # deterministic PNG decoder
        assert np.array_equal(decode(got["preprocessed_u8"]), decode(stored["preprocessed_u8"]))
        x = decode(got["model_input"])
        seg = stored.get("segmenter")
        mask_box = seg["crop"]["box"] if seg else None
        assert got.get("segmenter", {}).get("crop", {}).get("box") == mask_box  # the same lung mask's box
        # The classifiers see that box only when the segmenter crops (role "evidence": the full image).
        box = mask_box if seg and seg.get("role", "crop") == "crop" else None
        assert got.get("segmenter", {}).get("role", "crop") == (seg.get("role", "crop") if seg else "crop")
        assert got["crop_box"] == box and (got["crop"] == "none") == (box is None)
        assert np.abs(x - preprocess(image, bundle.spec, crop_box=tuple(box) if box else None)).max() <= 1e-6
        assert np.abs(x.reshape(-1)[:16] - stored["model_input"]["first"]).max() <= 1e-6
        assert abs(float(x.mean()) - stored["model_input"]["mean"]) <= 1e-6
        for model, want in stored["models"].items():
            mine = got["models"][model]
            if quant[model] == "int8":  # integer kernels: bit-identical
                assert np.array_equal(np.float32(mine["probs"]), np.float32(want["probs"])), model
            else:  # float kernels: XNNPack's WASM and x86 builds may round a sum differently
                diff = np.abs(np.float32(mine["probs"]) - np.float32(want["probs"])).max()
                assert diff <= FLOAT_PROBS, model
            assert float(decode(mine["features"]).sum()) == pytest.approx(want["features_sum"], rel=1e-6)
        assert got["ensemble"]["label"] == stored["ensemble"]["label"]
        assert np.abs(np.array(got["ensemble"]["probs"]) - stored["ensemble"]["probs"]).max() <= ENSEMBLE
        assert np.abs(decode(got["cam"]) - decode(stored["cam"])).max() <= CAM
        heat = Predictor().predict_image(image).heatmap(image.shape)
        assert np.abs(decode(got["heatmap"]) - heat).max() <= CAM
    assert not browser["harnessErrors"], browser["harnessErrors"]


def test_threaded_wasm_gives_the_same_results(browser):
    runtime = browser["runtimes"]["2"]
    assert runtime["wasm"] == "litert_wasm_threaded_internal" and runtime["threads"] == 2
    name = next(k for k in browser["golden"] if k.startswith("threaded/"))
    threaded, single = browser["golden"][name], browser["golden"][name.replace("threaded/", "default/")]
    for model, out in single["models"].items():
        assert np.abs(np.array(threaded["models"][model]["probs"]) - out["probs"]).max() <= FLOAT_PROBS
    assert np.abs(np.array(threaded["ensemble"]["probs"]) - single["ensemble"]["probs"]).max() <= FLOAT_PROBS


def test_site_calibrated_bundle_matches_python(browser, calibrated_bundle):
    """Format 4: refitted member heads, then the site temperature and bias, as ``Predictor`` applies them."""
    from site_bundle import check_visible, expected

    bundle = Bundle.load(calibrated_bundle)
    stems = [k.split("/", 1)[1] for k in browser["golden"] if k.startswith("site/")]
    want = expected(bundle, [samples_dir() / s for s in stems])
    check_visible(want, expected(Bundle.load(), [samples_dir() / s for s in stems]))
    subset = list(bundle.manifest.ensemble.members[:SITE_SUBSET])
    want_subset = expected(bundle, [samples_dir() / stems[0]], members=subset)
    runs = [(f"site/{s}", want[s]) for s in stems] + [(f"site-subset/{stems[0]}", want_subset[stems[0]])]
    for name, python in runs:
        got = browser["golden"][name]
        assert got["format_version"] == 4 and got["site"]["name"] == bundle.manifest.site.name, name
        assert list(got["per_model"]) == list(python["per_model"]), name
        for member, probs in python["per_model"].items():
            mine = [got["per_model"][member][label] for label in bundle.labels]
            assert np.abs(np.array(mine) - probs).max() <= ENSEMBLE, (name, member)
        assert got["ensemble"]["label"] == python["label"], name
        assert np.abs(np.array(got["ensemble"]["probs"]) - python["probs"]).max() <= ENSEMBLE, name
        assert got["referral"] == python["referral"], name
        assert np.abs(decode(got["cam"]) - decode(python["cam"])).max() <= CAM, name
    # A port that ignored the site section would have produced the parent's outputs.
    parent = {s: browser["golden"][f"default/{s}"]["ensemble"] for s in stems}
    assert any(want[s]["label"] != parent[s]["label"] for s in stems)
    # The subset's members keep their heads (its output, compared above, has no site temperature or bias).
    assert want_subset[stems[0]]["per_model"] == {m: want[stems[0]]["per_model"][m] for m in subset}


@pytest.mark.train
def test_segmenter_bundle_crop_and_probabilities_match_python(browser, segmenter_bundle):
    if segmenter_bundle is None:
        pytest.skip("needs TensorFlow (the [train] extra) to build the tiny segmenter bundle")
    bundle = Bundle.load(segmenter_bundle)
    predictor, segmenter = Predictor(bundle), Segmenter(bundle)
    for sample in TINY_SAMPLES:
        got = browser["golden"][f"tiny/{sample}"]
        want = vectors(bundle, samples_dir() / sample)
        image, _ = read_image(samples_dir() / sample)
        mask = segmenter.probabilities(image)
        assert np.abs(decode(got["segmenter"]["mask_probabilities"]) - mask).max() <= 1e-6
        assert got["segmenter"]["crop"] == want["segmenter"]["crop"]
        assert want["segmenter"]["crop"]["status"] == "lung"  # the lung-crop path, not the fallback
        assert np.array_equal(decode(got["preprocessed_u8"]), decode(want["preprocessed_u8"]))
        for model, out in want["models"].items():
            limit = INT8_STEP if bundle.manifest.model(model).quant == "int8" else FLOAT_PROBS
            assert np.abs(np.array(got["models"][model]["probs"]) - out["probs"]).max() <= limit, model
        assert got["ensemble"]["label"] == want["ensemble"]["label"]
        assert np.abs(np.array(got["ensemble"]["probs"]) - want["ensemble"]["probs"]).max() <= FLOAT_PROBS
        pred = predictor.predict_image(image)
        assert tuple(got["cam_region"]) == pred.cam_region == tuple(want["segmenter"]["crop"]["box"])
        assert np.abs(decode(got["heatmap"]) - pred.heatmap(image.shape)).max() <= 1e-5
        assert want["segmenter"]["role"] == got["segmenter"]["role"] == "crop"
        assert (got["crop"], got["crop_reason"], tuple(got["crop_box"])) == (
            pred.crop,
            pred.crop_reason,
            pred.crop_box,
        )
        assert tuple(got["lung_region"]) == pred.lung_region
        assert np.array_equal(decode(got["lung_mask"]), pred.lung_mask)
    # Lung fraction, flags and referral on more samples: within the heat maps' tolerance, same texts.
    flagged, referred = set(), set()
    for sample in TINY_SAMPLES + TINY_EXTRA:
        got = browser["golden"][f"tiny/{sample}"]
        want = vectors(bundle, samples_dir() / sample)
        assert (got["lung_fraction"] is None) == (want["lung_fraction"] is None), sample
        if want["lung_fraction"] is not None:
            assert abs(got["lung_fraction"] - want["lung_fraction"]) <= CAM, sample
        assert got["flags"] == want["flags"] and got["referral"] == want["referral"], sample
        flagged.add(bool(want["flags"]))
        referred.add(want["referral"] is not None)
    assert flagged == referred == {True, False}  # both sides of both thresholds were compared


@pytest.mark.train
def test_evidence_role_segmenter_bundle_matches_python(browser, evidence_bundle):
    """Role "evidence": the segmenter runs and its mask judges the heat map; the classifiers see it all.

    The same tiny bundle as above with only ``segmenter.role`` changed: a port that cropped anyway would
    feed the classifiers the lung crop (another model input, other probabilities) and report crop
    ``lung`` with its box, and would place the heat map (and measure its lung fraction) on the crop.
    """
    if evidence_bundle is None:
        pytest.skip("needs TensorFlow (the [train] extra) to build the tiny segmenter bundle")
    bundle = Bundle.load(evidence_bundle)
    predictor, segmenter = Predictor(bundle), Segmenter(bundle)
    spec = bundle.spec
    fractions, differs = [], []
    for sample in TINY_SAMPLES + TINY_EXTRA:
        got = browser["golden"][f"tiny-evidence/{sample}"]
        want = vectors(bundle, samples_dir() / sample)
        image, _ = read_image(samples_dir() / sample)
        pred = predictor.predict_image(image)
        # The segmenter still runs and decides on its mask (the crop result is its plausibility verdict).
        assert want["segmenter"]["role"] == got["segmenter"]["role"] == "evidence", sample
        assert got["segmenter"]["crop"] == want["segmenter"]["crop"], sample
        mask = segmenter.probabilities(image)
        assert np.abs(decode(got["segmenter"]["mask_probabilities"]) - mask).max() <= 1e-6, sample
        # ... but the classifiers see the full image: the border crop of a bundle without a segmenter.
        assert np.array_equal(decode(got["preprocessed_u8"]), decode(want["preprocessed_u8"])), sample
        assert np.array_equal(decode(want["preprocessed_u8"]), preprocess_u8(image, spec)), sample
        x = decode(got["model_input"])
        assert np.abs(x - preprocess(image, spec)).max() <= 1e-6, sample
        lung_box = tuple(want["segmenter"]["crop"]["box"])
        differs.append(
            not np.array_equal(preprocess_u8(image, spec, crop_box=lung_box), preprocess_u8(image, spec))
        )
        for model, out in want["models"].items():
            limit = INT8_STEP if bundle.manifest.model(model).quant == "int8" else FLOAT_PROBS
            diff = np.abs(np.array(got["models"][model]["probs"]) - out["probs"]).max()
            assert diff <= limit, (sample, model)
        assert got["ensemble"]["label"] == want["ensemble"]["label"] == pred.label, sample
        assert np.abs(np.array(got["ensemble"]["probs"]) - want["ensemble"]["probs"]).max() <= FLOAT_PROBS
        # The Prediction's crop fields say "no crop"; the heat map belongs to the full-image region.
        assert (pred.crop, pred.crop_reason, pred.crop_box) == ("none", "", None), sample
        assert (got["crop"], got["crop_reason"], got["crop_box"]) == ("none", "", None), sample
        assert tuple(got["cam_region"]) == pred.cam_region == crop_region(image.shape, spec), sample
        assert np.abs(decode(got["heatmap"]) - pred.heatmap(image.shape)).max() <= 1e-5, sample
        # The lung mask still judges the evidence, and outlines the lungs, when it is plausible.
        assert (got["lung_fraction"] is None) == (pred.lung_fraction is None), sample
        assert (pred.lung_fraction is None) == (want["segmenter"]["crop"]["status"] != "lung"), sample
        if pred.lung_fraction is not None:
            assert abs(got["lung_fraction"] - pred.lung_fraction) <= CAM, sample
            assert pred.lung_fraction == want["lung_fraction"], sample
            fractions.append(pred.lung_fraction)
            assert tuple(got["lung_region"]) == pred.lung_region, sample
            assert np.array_equal(decode(got["lung_mask"]), pred.lung_mask), sample
        else:
            assert got["lung_region"] is None and got["lung_mask"] is None, sample
        assert got["flags"] == list(pred.flags) == want["flags"], sample
        assert got["referral"] == pred.referral == want["referral"], sample
        # The same sample through the crop-role bundle: what a port ignoring the role would report.
        cropping = browser["golden"][f"tiny/{sample}"]
        assert cropping["crop"] != "none" and cropping["crop_box"] is not None, sample
    assert fractions, "no sample had a plausible lung mask: the lung fraction was never compared"
    assert any(differs), "the lung crop never changed the model input: the role was not tested"
    crop_probs = [browser["golden"][f"tiny/{s}"]["ensemble"]["probs"] for s in TINY_SAMPLES + TINY_EXTRA]
    full_probs = [
        browser["golden"][f"tiny-evidence/{s}"]["ensemble"]["probs"] for s in TINY_SAMPLES + TINY_EXTRA
    ]
    assert np.abs(np.array(crop_probs) - np.array(full_probs)).max() > FLOAT_PROBS


@pytest.mark.train
def test_ui_shows_the_model_card_lung_fraction_and_referral(browser, segmenter_bundle):
    if segmenter_bundle is None:
        pytest.skip("needs TensorFlow (the [train] extra) to build the tiny segmenter bundle")
    from tiny_bundle import FAILURE_MODES

    (ui,) = [b for b in browser["bundles"] if b["name"] == "tiny"]
    assert ui["state"] == "done" and "tiny-segmenter-test" in ui["bundleName"] and ui["cardOpen"]
    card = Bundle.load(segmenter_bundle).manifest.card
    assert card.disclaimer in ui["cardText"] and card.intended_use in ui["cardText"]
    assert card.loso.note in ui["cardText"] and ui["cardFailures"] == list(FAILURE_MODES)
    assert ui["cardLosoRows"] == len(card.loso.report["by_source"]) + 1  # + pooled
    lo, hi = card.loso.report["pooled"]["accuracy"]["ci"]
    assert f"({lo:.2f}-{hi:.2f})" in ui["cardText"]
    want = Predictor(Bundle.load(segmenter_bundle)).predict_file(samples_dir() / TINY_SAMPLES[0])
    got = ui["prediction"]
    assert got["referral"] == want.referral and got["flags"] == list(want.flags)
    assert (ui["referralText"] is None) == (want.referral is None)
    if want.referral:
        assert ui["referralText"] == f"Refer to a radiologist: {want.referral}."
    assert f"Lung fraction {want.lung_fraction:.3f}" in ui["evidenceText"]
    assert ("evidence outside the lungs" in ui["evidenceText"]) == bool(want.flags)
    assert not ui["consoleErrors"], ui["consoleErrors"]


def test_ui_says_whether_the_bundle_is_signed_and_by_which_key(browser, signed_bundles):
    """WebCrypto Ed25519 in Chromium: Python's verdict and key id on the bundle line; no trust claimed."""
    got = {b["name"]: b for b in browser["bundles"] if b["name"] in SIGNED_UI}
    verdicts = signed_bundles["verdicts"]
    maker = signed_bundles["keys"]["maker"]["key_id"]
    assert verdicts["signed"]["status"] == "valid" and verdicts["signed"]["key_id"] == maker
    signed = got["signed"]
    assert signed["state"] == "done" and not signed["consoleErrors"], signed
    assert f"signature valid for key {maker}" in signed["bundleName"], signed["bundleName"]
    assert "(not a trust decision: the app has no trusted keys)" in signed["bundleName"]
    assert verdicts["manifest_edited"]["status"] == "invalid"
    edited = got["manifest_edited"]
    assert "(edited after signing)" in edited["bundleName"]  # the changed manifest is what was loaded
    assert f"signature does NOT match the manifest (signed by {maker})" in edited["bundleName"], edited
    assert "signature valid" not in edited["bundleName"] and not edited["consoleErrors"], edited
    # The shipped default bundle is unsigned: said so, and no request for a signature.json it lacks.
    assert browser["ui"]["bundleName"].endswith("; unsigned"), browser["ui"]["bundleName"]


def _cli_prediction(path: Path) -> dict:
    result = CliRunner().invoke(cli, ["predict", str(path)])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    return {"label": row["label"], **{k[5:]: float(v) for k, v in row.items() if k.startswith("prob_")}}


def test_ui_predicts_the_cli_label_and_saves_a_screenshot(browser):
    ui = browser["ui"]
    assert ui["initialState"] == "ready" and "cxr-edge-default" in ui["bundleName"]
    first = ui["steps"]["first"]
    assert first["state"] == "done" and first["resultVisible"] and first["error"] is None
    python = _cli_prediction(samples_dir() / UI_SAMPLE)
    assert first["prediction"]["label"] == python["label"]
    for label, p in first["prediction"]["probs"].items():
        assert p == pytest.approx(python[label], abs=1e-6)
    assert first["members"] == len(Bundle.load().manifest.ensemble.members) and first["timingRows"] >= 5
    assert {"decode", "preprocess", "combine", "heatmap", "total"} <= set(first["prediction"]["timings_ms"])
    shot = Path(ui["screenshot"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("CXR_EDGE_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        shutil.copyfile(shot, SCREENSHOT)
    assert not ui["consoleErrors"], ui["consoleErrors"]


def test_bad_input_shows_an_error_and_the_next_image_works(browser):
    steps = browser["ui"]["steps"]
    assert steps["bad"]["state"] == "error" and not steps["bad"]["resultVisible"]
    assert "not an image" in steps["bad"]["error"] and "received text data" in steps["bad"]["error"]
    assert steps["again"]["state"] == "done" and steps["again"]["error"] is None
    assert steps["again"]["prediction"]["probs"] == steps["first"]["prediction"]["probs"]


def test_app_works_offline_from_the_service_worker_cache(browser):
    ui = browser["ui"]
    assert "Offline: ready" in ui["offlineText"] and ui["offlineControlled"]
    offline = ui["steps"]["offline"]
    assert offline["state"] == "done", offline["error"]
    assert offline["prediction"]["probs"] == ui["steps"]["first"]["prediction"]["probs"]


def test_try_a_sample_button_classifies_a_shipped_sample_like_the_cli(browser):
    sample = browser["ui"]["steps"]["sample"]
    assert sample["state"] == "done", sample
    with open(samples_dir() / "samples.csv", newline="") as fh:
        first = next(csv.DictReader(fh))["file"]  # the button goes through samples.csv in order
    assert f"sample: {first}" in sample["sampleText"]
    python = _cli_prediction(samples_dir() / first)
    assert sample["prediction"]["label"] == python["label"]


def test_a_page_without_litert_says_what_to_run(browser):
    """Served without node_modules/@litertjs, the page once stayed on "loading" forever."""
    missing = browser["missingRuntime"]
    assert missing["state"] == "error" and "make web-deps" in missing["runtime"]


def test_server_refuses_to_start_without_its_packages(tmp_path):
    _require(browser=False)
    shutil.copyfile(WEB / "serve.mjs", tmp_path / "serve.mjs")  # a copy next to no node_modules
    proc = subprocess.run(
        ["node", str(tmp_path / "serve.mjs"), "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "make web-deps" in proc.stderr and "npm ci" in proc.stderr
