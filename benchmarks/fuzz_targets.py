"""The fuzz campaign's targets, their seeds and a seeded mutator (``make fuzz``, docs/security.md "Fuzzing").

A target is called with one input (bytes) and returns what became of it: ``ok`` or the class of the
typed error (:class:`~cxr_edge.errors.CxrEdgeError` subclasses), one label per path the input took. It
raises anything else: that is a crash, which the campaign records and keeps as a regression input.

* ``reader``: :func:`cxr_edge.imaging.reader.decode_image` on the bytes, in this process (the coverage
  the fuzzer follows must be here), with the default :class:`~cxr_edge.imaging.image.ReadOptions`
  limits; a decoded image must keep the reader's contract and pass the input checks without raising.
  Seeds: the shipped PNG samples (small copies: grey, 16-bit, colour, alpha), JPEG (grey, colour,
  progressive), generated DICOMs of every transfer syntax and every intensity variant
  (:mod:`cxr_edge.imaging.synth`), and pydicom's own test files.
* ``manifest``: the bundle manifest parser: the input is a manifest's JSON text (first byte even) or a
  structured edit of a shipped manifest that the rest of the bytes choose (first byte odd: a value
  replaced by another type, a huge or negative number, NaN, a long string, a deep nesting, a key
  removed); it goes through :meth:`BundleManifest.from_dict` and through :meth:`Bundle.load` of a folder
  whose ``manifest.json`` it is (with copies of the shipped bundles' files).
* ``node``: see :mod:`cxr_edge.benchmarks.fuzz_node` (C-STORE over a loopback association).

:func:`mutate` is the smoke run's engine (``tests/benchmarks/test_fuzz_smoke.py``: byte flips, interesting
integers, DICOM attribute values, cuts, splices); the campaign's engine is atheris (libFuzzer's mutators,
led by coverage), see :mod:`cxr_edge.benchmarks.fuzz`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import struct
from pathlib import Path

import numpy as np

#: Where the shipped bundles and samples are.
DATA = Path(__file__).resolve().parents[1] / "cxr_edge" / "data"

#: DICOM attributes whose values drive the reader's decisions (group, element, little-endian).
_TAGS = tuple(
    struct.pack("<HH", g, e)
    for g, e in (
        (0x0028, 0x0010),  # Rows
        (0x0028, 0x0011),  # Columns
        (0x0028, 0x0100),  # Bits Allocated
        (0x0028, 0x0101),  # Bits Stored
        (0x0028, 0x0002),  # Samples per Pixel
        (0x0028, 0x0103),  # Pixel Representation
        (0x0028, 0x0008),  # Number of Frames
        (0x0028, 0x0004),  # Photometric Interpretation
        (0x0028, 0x1050),  # Window Center
        (0x0028, 0x1051),  # Window Width
        (0x0028, 0x1053),  # Rescale Slope
        (0x0028, 0x3010),  # VOI LUT Sequence
        (0x0002, 0x0010),  # Transfer Syntax UID
        (0x7FE0, 0x0010),  # Pixel Data
        (0xFFFE, 0xE000),  # Item
    )
)
#: Codestream markers worth hitting: JPEG SOI/SOF/SOS/EOI, JPEG-LS SOF55, J2K SOC/SIZ/SOT/EOC.
_MARKERS = (b"\xff\xd8", b"\xff\xc0", b"\xff\xc3", b"\xff\xda", b"\xff\xd9", b"\xff\xf7", b"\xff\x4f",
            b"\xff\x51", b"\xff\x90")  # fmt: skip
_INTERESTING = (0, 1, 2, 7, 8, 12, 15, 16, 17, 31, 32, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)  # fmt: skip


def outcome(exc: BaseException) -> str:
    """A typed error's label: its class (``DecodeLimitError/decode_time`` with its limit)."""
    limit = getattr(exc, "limit", None)
    return f"{type(exc).__name__}/{limit}" if limit else type(exc).__name__


def mutate(data: bytes, rng: random.Random, others: list[bytes] = ()) -> bytes:
    """One to eight edits of ``data``: bit flips, random and interesting values (also at DICOM
    attributes and codestream markers), deletions, insertions, duplications, cuts and splices."""
    buf = bytearray(data or b"\0")
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 8))):
        n = len(buf)
        # Headers are where the decisions are: most edits land in the first 4 KiB.
        i = rng.randrange(min(n, 4096)) if rng.random() < 0.7 else rng.randrange(n)
        op = rng.randrange(10)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.randrange(256)
        elif op == 2:
            width, order = rng.choice((1, 2, 4)), rng.choice("<>")
            value = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
            buf[i : i + width] = value.to_bytes(width, "little" if order == "<" else "big")
        elif op == 3:  # a value of a DICOM attribute (explicit VR: after tag, VR and length)
            tag = rng.choice(_TAGS)
            at = buf.find(tag)
            if at >= 0:
                off = at + rng.choice((4, 6, 8, 12))
                value = rng.choice(_INTERESTING)
                buf[off : off + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif op == 4:  # the bytes after a codestream marker (lengths, sizes, component counts)
            at = buf.find(rng.choice(_MARKERS))
            if at >= 0:
                off = at + 2 + rng.randrange(40)
                buf[off : off + 2] = struct.pack(">H", rng.choice(_INTERESTING) & 0xFFFF)
        elif op == 5:
            del buf[i : i + rng.randrange(1, 64)]
        elif op == 6:
            buf[i:i] = rng.randbytes(rng.randrange(1, 32))
        elif op == 7:
            j = rng.randrange(n)
            buf[i:i] = buf[j : j + rng.randrange(1, 256)]
        elif op == 8:
            del buf[max(1, i) :]
        elif others:
            other = rng.choice(others)
            j = rng.randrange(len(other))
            buf[i:] = other[j : j + rng.randrange(1, 4096)]
        if not buf:
            buf = bytearray(b"\0")
    return bytes(buf)


# ------------------------------------------------------------------------------------------- reader


def _png(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


def reader_seeds() -> list[bytes]:
    """Small valid inputs of every format, syntax and variant the reader knows (a few hundred KiB)."""
    import cv2

    from cxr_edge.imaging import synth

    samples = sorted((DATA / "samples").glob("*.png"))
    grey = cv2.resize(cv2.imread(str(samples[0]), cv2.IMREAD_GRAYSCALE), (64, 56))
    colour = cv2.resize(cv2.imread(str(samples[1]), cv2.IMREAD_COLOR), (48, 40))
    seeds = [
        _png(grey),
        _png(grey.astype(np.uint16) * 257),
        _png(colour),
        _png(np.dstack([colour, np.full(colour.shape[:2], 200, np.uint8)])),
        cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(),
        cv2.imencode(".jpg", colour)[1].tobytes(),
        cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
    ]
    image = grey.astype(np.float32) / 255.0
    for k, variant in enumerate(synth.VARIANTS):
        stored = synth.stored_values(image, (64, 56), variant, seed=k)
        syntaxes = synth.SYNTAXES if k == 0 else ("explicit_le", "jpegls_lossless", "rle")
        for syntax in syntaxes:
            ds = synth.build_dataset(stored, variant, k)
            if synth.encode(ds, syntax):
                seeds.append(synth.file_bytes(ds))
    seeds.append(synth.file_bytes(synth.radiograph(grey, preset=synth.SECONDARY_CAPTURE)))
    folder = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
    seeds += [f.read_bytes() for f in sorted(folder.glob("*.dcm")) if f.stat().st_size <= 64 << 10]
    return seeds


class ReaderTarget:
    """The image reader on bytes (see the module docstring)."""

    name = "reader"

    def __init__(self, work: Path | None = None):
        from cxr_edge.imaging.image import ReadOptions
        from cxr_edge.ops.quality import QualityConfig

        self.options = ReadOptions(decode_timeout_s=None)  # in-process: coverage is followed here
        self.quality = QualityConfig()

    def seeds(self) -> list[bytes]:
        """Seed inputs."""
        return reader_seeds()

    def __call__(self, data: bytes) -> list[str]:
        from cxr_edge.errors import CxrEdgeError
        from cxr_edge.imaging.reader import decode_image
        from cxr_edge.ops.quality import check

        try:
            image, info = decode_image(data, name="fuzz.dcm", options=self.options)
        except CxrEdgeError as exc:
            return [outcome(exc)]
        # The reader's contract (a crash if broken): 2-D float32 of the reported size, finite, in [0, 1].
        assert image.ndim == 2 and image.dtype == np.float32, (image.dtype, image.shape)
        assert image.shape == (info.height, info.width), (image.shape, info.width, info.height)
        lo, hi = float(image.min()), float(image.max())
        assert 0.0 <= lo < hi <= 1.0, (lo, hi)
        rejection = check(image, info, self.quality)
        return ["ok" if rejection is None else f"ok/rejected:{rejection.check}"]

    def close(self) -> None:
        """Nothing to release."""


# ------------------------------------------------------------------------------------------- manifest


class _Choices:
    """Integers drawn from the fuzz input's bytes (libFuzzer then mutates the choices themselves)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self, n: int) -> int:
        if n <= 1:
            return 0
        raw = self.data[self.pos : self.pos + 4].ljust(4, b"\0")
        self.pos += 4
        return int.from_bytes(raw, "little") % n


_ODD_VALUES = (None, True, 0, -1, 1 << 63, -(1 << 63), 10**400, 1e308, -0.0, math.nan, math.inf, "",
               "x" * 100_000, "\u202e\0\n", [], {}, [[]], {"": None})  # fmt: skip


def _paths(node, prefix=(), out=None, limit: int = 4096) -> list[tuple]:
    """Paths to the values of a JSON document (at most ``limit``)."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(prefix)
    if isinstance(node, dict):
        for key, value in node.items():
            _paths(value, (*prefix, key), out, limit)
    elif isinstance(node, list):
        for i, value in enumerate(node[:8]):
            _paths(value, (*prefix, i), out, limit)
    return out


def edit_manifest(document: dict, data: bytes) -> str:
    """A structured edit of ``document`` chosen by ``data``; returns the edited JSON text."""
    choices = _Choices(data)
    doc = json.loads(json.dumps(document))
    for _ in range(1 + choices.int(4)):
        paths = _paths(doc)
        path = paths[choices.int(len(paths))]
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key, op = path[-1], choices.int(6)
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1:
            parent[key] = _ODD_VALUES[choices.int(len(_ODD_VALUES))]
        elif op == 2:  # deep nesting: parsers that recurse
            parent[key] = json.loads("[" * 10 + "]" * 10) if choices.int(2) else _DEEP
        elif op == 3 and isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * (-1, 0, 2**40, 1e-300)[choices.int(4)]
        elif op == 4 and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * (0, 2, 1000)[choices.int(3)]
        elif op == 5 and isinstance(parent, dict):
            parent[f"{key}_unknown"] = parent[key]
    text = json.dumps(doc, allow_nan=True)
    return text.replace(json.dumps(_DEEP), "[" * 100_000 + "]" * 100_000)


_DEEP = "\u2063deep\u2063"  # stands for 100,000 nested arrays in the dumped text


class ManifestTarget:
    """The bundle manifest parser and the bundle loader (see the module docstring)."""

    name = "manifest"

    def __init__(self, work: Path):
        self.folder = Path(work) / "manifest_bundle"
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        for bundle in reversed(_bundles()):  # copies: the loader refuses links out of the bundle
            for f in (DATA / bundle).iterdir():
                if f.name != "manifest.json" and not (self.folder / f.name).exists():
                    shutil.copyfile(f, self.folder / f.name)
        self.documents = [json.loads((DATA / b / "manifest.json").read_text()) for b in _bundles()]

    def seeds(self) -> list[bytes]:
        """The shipped manifests (raw), and a structured edit of each."""
        raw = [b"\0" + (DATA / b / "manifest.json").read_bytes() for b in _bundles()]
        return raw + [b"\x01" + bytes(range(i, i + 16)) for i in range(len(raw))]

    def __call__(self, data: bytes) -> list[str]:
        from cxr_edge.bundle.folder import Bundle
        from cxr_edge.bundle.manifest import BundleManifest
        from cxr_edge.errors import CxrEdgeError

        if data[:1] and data[0] & 1:
            document = self.documents[(data[0] >> 1) % len(self.documents)]
            text = edit_manifest(document, data[1:]).encode("utf-8")
        else:
            text = data[1:]
        labels = []
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (the harness's own parse; Bundle.load has its own)
            labels.append("from_dict:not_json")
        else:
            try:
                BundleManifest.from_dict(parsed, schema=False)
                labels.append("from_dict:ok")
            except CxrEdgeError as exc:
                labels.append(f"from_dict:{outcome(exc)}")
        (self.folder / "manifest.json").write_bytes(text)
        try:
            Bundle.load(self.folder, trust=False)
            labels.append("load:ok")
        except CxrEdgeError as exc:
            labels.append(f"load:{outcome(exc)}")
        return labels

    def close(self) -> None:
        """Removes the bundle folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _bundles() -> list[str]:
    return [b for b in ("default_bundle", "paper_bundle") if (DATA / b / "manifest.json").is_file()]


def quiet() -> None:
    """Silences pydicom's warnings for this process and its decode workers (a campaign's processes only:
    it warns about every mangled value, millions of lines and none of them an outcome)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    os.environ["PYTHONWARNINGS"] = "ignore"
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def make_target(name: str, work: Path):
    """A target by name (``reader``, ``manifest``, ``node``), its work files under ``work``."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    if name == "reader":
        return ReaderTarget(work)
    if name == "manifest":
        return ManifestTarget(work)
    if name == "node":
        from cxr_edge.benchmarks.fuzz_node import NodeTarget

        return NodeTarget(work)
    raise ValueError(f"unknown fuzz target {name!r}")


TARGETS = ("reader", "manifest", "node")
