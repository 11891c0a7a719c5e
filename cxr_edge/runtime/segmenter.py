"""The segmenter stage: image -> lung probabilities (LiteRT) -> crop box, and crop tables.

A *crop table* (``crops.csv``) records the crop of every manifest image made by one segmenter file.
Classifiers trained on lung crops read their boxes from it, and ``cxr-edge convert`` refuses to
bundle such a classifier with a different segmenter than the one that made its table, so a deployed
model sees the crops it was trained on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.errors import BundleError, CxrEdgeError, InputError
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.lungcrop import CropResult, lung_crop
from cxr_edge.ops.preprocess import CropBox, preprocess
from cxr_edge.runtime.engine import Engine

CROP_COLUMNS = ("path", "status", "reason", "x0", "y0", "x1", "y1", "segmenter_sha256")


class Segmenter:
    """Runs a bundle's segmenter and turns its mask into a crop.

    Args:
        bundle: A bundle with a ``segmenter`` entry.
        threads: LiteRT threads.
    """

    def __init__(self, bundle: Bundle, threads: int = 1):
        entry = bundle.manifest.segmenter
        if entry is None:
            raise BundleError(
                "bundle has no segmenter",
                expected="a bundle built with --segmenter",
                received=str(bundle.root),
            )
        self.entry = entry
        self._engine = Engine(bundle.path_of(entry), entry, threads=threads)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """``(h, w)`` lung probabilities at the segmenter's resolution."""
        return self._engine.run(preprocess(image, self.entry.preprocess))[..., 0]

    def __call__(self, image: np.ndarray) -> CropResult:
        """The crop decided for a decoded image (2-D float in [0, 1])."""
        return lung_crop(self.probabilities(image), image.shape, self.entry.crop)


@dataclass(frozen=True)
class CropRow:
    """One row of a crop table."""

    path: str
    status: str
    reason: str
    box: CropBox | None
    segmenter_sha256: str


def segment_paths(
    segmenter: Segmenter, items: Iterable[tuple[str, Path]]
) -> Iterable[tuple[CropRow, np.ndarray | None, CropResult | None]]:
    """Crops for ``(key, file)`` items; unreadable files give an ``error`` row and the rest go on.

    Yields:
        ``(row, image, result)``; image and result are None for errors.
    """
    for key, file in items:
        try:
            image, _ = read_image(file)
            result = segmenter(image)
        except CxrEdgeError as exc:
            yield (
                CropRow(key, "error", f"{type(exc).__name__}: {exc}", None, segmenter.entry.sha256),
                None,
                None,
            )
            continue
        yield CropRow(key, result.status, result.reason, result.box, segmenter.entry.sha256), image, result


def write_crop_table(path: str | Path, rows: Iterable[CropRow]) -> None:
    """Writes ``crops.csv`` (``path, status, reason, x0, y0, x1, y1, segmenter_sha256``)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CROP_COLUMNS)
        for r in rows:
            writer.writerow(
                [r.path, r.status, r.reason, *(r.box if r.box else ("", "", "", "")), r.segmenter_sha256]
            )


@dataclass(frozen=True)
class CropTable:
    """A read crop table: boxes by manifest path and the segmenter that made them."""

    boxes: dict[str, CropBox]
    status: dict[str, str]
    segmenter_sha256: str

    @classmethod
    def read(cls, path: str | Path) -> CropTable:
        """Reads ``crops.csv``; every row must come from the same segmenter."""
        path = Path(path)
        if not path.is_file():
            raise InputError(
                "crop table not found", expected="a crops.csv from `cxr-edge segment`", received=str(path)
            )
        boxes, status, shas = {}, {}, set()
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                shas.add(row["segmenter_sha256"])
                status[row["path"]] = row["status"]
                if row["status"] != "error":
                    boxes[row["path"]] = tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        if len(shas) != 1:
            raise InputError(
                "crop table mixes segmenters",
                expected="one segmenter_sha256",
                received=f"{len(shas)} distinct values",
            )
        return cls(boxes, status, shas.pop())

    def box(self, key: str) -> CropBox:
        """The box of one manifest path (a missing row is an error: crops must cover the data)."""
        try:
            return self.boxes[key]
        except KeyError:
            raise InputError(
                "image not in the crop table",
                expected="a box for every image",
                received=f"{key} ({self.status.get(key, 'absent')})",
            ) from None
