"""``cxr-edge decode-gate``: measure and record whether a bundle may decode DICOMs at reduced resolution."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import click

from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.cli.common import bundle_option, clean_errors, data_option, root_option, split_option
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.errors import SpecError


@click.command("decode-gate")
@bundle_option
@data_option
@split_option()
@root_option
@click.option("--images", default=60, show_default=True, type=click.IntRange(1), help="Validation images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Gated copy of the bundle.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@clean_errors
def decode_gate_cmd(bundle_dir, manifest_path, split_path, root, images, out, force):
    """Gate reduced-resolution DICOM decoding for a bundle and write a copy that records the verdict.

    Each validation image becomes a full-size 12-bit DICOM (uncompressed, JPEG baseline, JPEG 2000),
    predicted by the bundle decoded at full and at reduced resolution; the copy decodes reduced only,
    by the kinds that keep 99% of the argmax decisions outside the abstention band. (`cxr-edge
    convert` runs the same gate.) The input bundle is never modified.
    """
    from cxr_edge.dataset.splits import spread
    from cxr_edge.evaluation.decode_gate import KINDS, REFERENCE, decode_gate

    source = Bundle.load(bundle_dir)
    target = Path(out)
    if target.resolve() == source.root.resolve():
        raise SpecError("--out is the input bundle", expected="a new folder", received=str(target))
    if target.exists() and any(target.iterdir()) and not force:
        raise SpecError("output folder is not empty", expected="a new folder (or --force)", received=out)
    manifest = load_manifest(manifest_path, root, check_files=False)
    val = read_split(split_path, manifest).records(manifest, "val")
    config = decode_gate(source.root, [r.file for r in spread(val, images)], progress=True)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source.root, target)
    write_manifest(target, dataclasses.replace(source.manifest, decode=config))
    for kind in (*KINDS, REFERENCE):
        g = config.gate[kind]
        click.echo(
            f"{kind:10s} 1/{'/'.join(map(str, g['reduction']))}: agreement {g['argmax_agreement']:.3f} "
            f"(outside the abstention band {g['argmax_agreement_outside_band']:.3f} of "
            f"{g['images_outside_band']}), max |dp| {g['max_abs_diff']:.3f}, "
            f"mean |dp| {g['mean_abs_diff']:.4f}"
            + ("  [reference: lossy JPEG at full resolution]" if kind == REFERENCE else "")
        )
    verdict = (
        f"passed for {', '.join(config.kinds)}" if config.reduced else "failed: full-resolution decoding"
    )
    click.echo(f"decode gate {verdict} (min side {config.min_side} px) -> {target}")
