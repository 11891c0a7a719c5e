"""A realistic DICOM corpus: full-size, 10-16-bit chest radiographs in every transfer syntax a cart sends.

    python -m cxr_edge.benchmarks.dicom_corpus --out build/dicom_corpus [--size 2130x2560] [--images N]
                                      [--manifest ../shared/data/manifest.csv] [--pydicom-files]

Made from kit images (or the shipped samples), never committed: each source image is enlarged to the
detector size (default 2560 x 2130, a 43 x 35 cm DX plate at ~0.17 mm), mapped to stored values of
``bits`` bits with detector-like noise (so lossless codecs see realistic entropy), and written in each
of the intensity **variants** (MONOCHROME1/2; window, VOI LUT sequence, rescale, none) and each
**transfer syntax** (:mod:`cxr_edge.imaging.synth`). ``--pydicom-files`` adds the real, single-frame greyscale
files of pydicom's test data (other modalities, odd encoders), for the decoder parity tests.

Writes ``OUT/<syntax>/<variant>_<n>.dcm`` and ``OUT/corpus.csv`` (path, syntax, variant, rows,
columns, bits, photometric, bytes, source).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click

from cxr_edge.dataset.samples import load_samples
from cxr_edge.imaging.reader import read_image
from cxr_edge.imaging.synth import SYNTAXES, VARIANTS, Variant, build_dataset, encode, stored_values

#: Real files of pydicom's test data used for decoder parity (single-frame greyscale, various encoders).
PYDICOM_FILES = (
    "JPEG-lossy.dcm",
    "JPGExtended.dcm",
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm",
    "MR_small_RLE.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "693_J2KI.dcm",
    "CT_small.dcm",
)


def _source_images(manifest: Path | None, n: int) -> list[Path]:
    by_source: dict[str, list[Path]] = {}
    if manifest is None:
        for sample in load_samples():
            by_source.setdefault(sample.source, []).append(sample.file)
    else:
        with manifest.open(newline="") as f:
            for row in csv.DictReader(f):
                by_source.setdefault(row["source"], []).append(manifest.parent / row["path"])
    # One image per source in turn, so the corpus spans detectors, not one hospital.
    picked: list[Path] = []
    while len(picked) < n and any(by_source.values()):
        for files in by_source.values():
            if files and len(picked) < n:
                picked.append(files.pop(0))
    return picked


def make_corpus(
    out: Path,
    size: tuple[int, int] = (2130, 2560),
    images: int = 2,
    manifest: Path | None = None,
    syntaxes: tuple[str, ...] = tuple(SYNTAXES),
    variants: tuple[Variant, ...] = VARIANTS,
    pydicom_files: bool = False,
) -> list[dict]:
    """Writes the corpus and its index; returns the index rows."""
    rows: list[dict] = []
    sources = _source_images(manifest, images)
    for n, src in enumerate(sources):
        image, _ = read_image(src)
        for variant in variants:
            stored = stored_values(image, size, variant, seed=n)
            for syntax in syntaxes:
                ds = build_dataset(stored, variant, n)
                if not encode(ds, syntax):
                    continue
                path = out / syntax / f"{variant.name}_{n}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                rows.append(_row(path, out, syntax, variant.name, ds, src.name))
    if pydicom_files:
        rows.extend(_copy_pydicom_files(out))
    with (out / "corpus.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _row(path: Path, out: Path, syntax: str, variant: str, ds, source: str) -> dict:
    return {
        "path": str(path.relative_to(out)),
        "syntax": syntax,
        "variant": variant,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "bits": int(ds.BitsStored),
        "photometric": str(ds.PhotometricInterpretation),
        "bytes": path.stat().st_size,
        "source": source,
    }


def _copy_pydicom_files(out: Path) -> list[dict]:
    import pydicom
    from pydicom.data import get_testdata_file

    rows = []
    for name in PYDICOM_FILES:
        src = get_testdata_file(name)
        if src is None:
            continue
        data = Path(src).read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        path = out / "pydicom" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        syntax = ds.file_meta.TransferSyntaxUID.name
        rows.append(_row(path, out, f"pydicom:{syntax}", "real", ds, name))
    return rows


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Corpus folder.")
@click.option("--size", default="2130x2560", show_default=True, help="ROWSxCOLUMNS of every image.")
@click.option(
    "--images", type=int, default=2, show_default=True, help="Source images (each in every variant)."
)
@click.option(
    "--manifest", type=click.Path(exists=True, path_type=Path), help="Kit manifest (default: samples)."
)
@click.option("--syntax", "syntaxes", multiple=True, type=click.Choice(list(SYNTAXES)), help="Only these.")
@click.option("--variant", "variant_names", multiple=True, help="Only these variants (names in VARIANTS).")
@click.option("--pydicom-files/--no-pydicom-files", default=True, show_default=True)
def main(out, size, images, manifest, syntaxes, variant_names, pydicom_files) -> None:
    """Writes the benchmark corpus."""
    rows_cols = tuple(int(v) for v in size.lower().split("x"))
    chosen = tuple(v for v in VARIANTS if not variant_names or v.name in variant_names)
    written = make_corpus(
        out, rows_cols, images, manifest, tuple(syntaxes) or tuple(SYNTAXES), chosen, pydicom_files
    )
    total = sum(r["bytes"] for r in written) / 2**20
    click.echo(f"{len(written)} files, {total:.0f} MiB -> {out}")


if __name__ == "__main__":
    main()
