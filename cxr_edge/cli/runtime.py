"""Runtime commands: predict, demo, evaluate, segment, split (no TensorFlow needed; bundle: cli/bundle.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli.common import (
    bundle_option,
    checks_option,
    clean_errors,
    manifest_option,
    models_option,
    root_option,
    threads_option,
)
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.samples import load_samples
from cxr_edge.dataset.splits import PARTS, extend_split, make_split, read_split, write_split
from cxr_edge.errors import one_line, printable_path
from cxr_edge.imaging.reader import read_image
from cxr_edge.runtime.pipeline import Outcome, Predictor, PredictorSpec, expand_inputs
from cxr_edge.runtime.rows import CsvRows, RowWriter, outcome_row


@click.command("predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@bundle_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Write rows to FILE.csv or FILE.jsonl (default: CSV on standard output).",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run: keep --out, skip inputs that already have a row, append the rest.",
)
@models_option
@threads_option
@checks_option
@click.option(
    "--heatmaps",
    "heatmap_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Write a heat-map overlay PNG per image into DIR (Grad-CAM of the predicted label, lung outline, "
    "colour scale; REFER on referred images) and add a `heatmap` column with its path.",
)
@clean_errors
def predict_cmd(paths, bundle_dir, out, force, resume, models, threads, checks, heatmap_dir):
    """Classify chest X-rays (PNG, JPEG, DICOM files or folders, searched recursively).

    Writes one row per input: path, status, error, label, prob_<label>..., crop, lung_fraction, flags,
    referral, latency_ms (lung_fraction with a segmenter; flags such as "evidence outside the lungs";
    referral when the bundle's referral band says "refer to a radiologist"). A file that cannot be
    read, or that an input check refuses (a lateral view, a CT, a blank or tiny image: the checks of
    the DICOM node), gets status=error with the reason and the others are still processed. Exits with
    0 when every input succeeded and 2 when any failed. With --resume, inputs that already have a row
    in --out (matched by path) are skipped and new rows are appended; nothing written is changed.
    """
    if resume and (force or not out):
        raise click.UsageError("--resume needs --out and cannot be combined with --force")
    predictor = PredictorSpec(bundle_dir, models, threads, checks).build()
    not_images: list[Path] = []
    files = expand_inputs(paths, skipped=not_images)
    failed = 0
    extra = ("heatmap",) if heatmap_dir else ()
    writer = RowWriter(out, predictor.labels, overwrite=force, append=resume, extra=extra) if out else None
    if resume:
        files, skipped = _not_yet_written(files, writer.done_paths)
        click.echo(f"resuming {out}: {skipped} inputs already have a row, {len(files)} to go", err=True)
    stdout_csv = CsvRows(sys.stdout, predictor.labels, extra=extra) if writer is None else None
    try:
        for outcome in tqdm(
            predictor.predict_many(files),
            total=len(files),
            desc="predict",
            unit="img",
            disable=None,
            file=sys.stderr,
        ):
            failed += not outcome.ok
            # The heat map first, so that its row can say where it is.
            picture = _write_heatmap(Path(heatmap_dir), outcome) if heatmap_dir and outcome.ok else None
            extra = {"heatmap": printable_path(picture)} if picture else {}
            if writer is not None:
                writer.write(outcome, extra)
            else:
                row = outcome_row(outcome, predictor.labels)
                stdout_csv.write(row | ({"heatmap": extra.get("heatmap", "")} if heatmap_dir else {}))
            if not outcome.ok:
                click.echo(f"error: {one_line(outcome.path)}: {outcome.error}", err=True)
    finally:
        if writer is not None:
            writer.close()
    click.echo(
        f"{len(files) - failed} of {len(files)} images classified"
        + (f", {failed} failed" if failed else "")
        + (f"; {_not_images(not_images)}" if not_images else "")
        + (f"; rows in {out}" if out else ""),
        err=True,
    )
    sys.exit(2 if failed else 0)


def _not_images(skipped: list[Path]) -> str:
    """The summary's note on files skipped in folders: how many, and their kinds (not their names)."""
    kinds = sorted({p.suffix.lower() for p in skipped})
    return f"{len(skipped)} non-image file(s) in folders skipped ({', '.join(kinds)})"


def _not_yet_written(files: list[Path], done: set[str]) -> tuple[list[Path], int]:
    """Inputs without a row yet (matched as written or as absolute paths), each once, and the skip count.

    Rows hold :func:`~cxr_edge.errors.printable_path` names, so inputs are compared in that form.
    """
    done_abs = {os.path.abspath(p) for p in done}
    todo, seen = [], set()
    for f in files:
        key = os.path.abspath(f)
        if printable_path(f) in done or printable_path(key) in done_abs or key in seen:
            continue
        seen.add(key)
        todo.append(f)
    return todo, len(files) - len(todo)


def _write_heatmap(folder: Path, outcome: Outcome) -> Path | None:
    """Overlay of the predicted label's heat map on the image (re-read: predictions keep no pixels).

    A referred prediction says "REFER" first: its label is not a result. The lung outline is drawn
    where the segmenter's crop was used; the colour scale runs from low to high evidence.
    """
    import cv2

    from cxr_edge.ops.cam import overlay

    pred = outcome.prediction
    if pred.cam is None:
        return None
    image, _ = read_image(outcome.path)
    folder.mkdir(parents=True, exist_ok=True)
    stem = printable_path(outcome.path).strip("/").replace("/", "__").rsplit(".", 1)[0]
    said = f"{pred.label} {pred.probs[pred.label]:.2f}"
    lines = [f"REFER: {pred.referral}", f"(most likely {said})"] if pred.referral else [said]
    lines += [f"warning: {flag}" for flag in pred.flags]
    picture = overlay(image, pred.heatmap(image.shape), lines, lungs=pred.lungs(image.shape), scale=True)
    path = folder / f"{stem}_heatmap.png"
    cv2.imwrite(str(path), picture)
    return path


@click.command("demo")
@bundle_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    default="cxr-edge-demo.csv",
    show_default=True,
    help="CSV with one row per sample.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@clean_errors
def demo_cmd(bundle_dir, out, force):
    """Classify the shipped sample X-rays with the shipped (or given) bundle and print a table."""
    predictor = Predictor(Bundle.load(bundle_dir))
    manifest = predictor.bundle.manifest
    samples = load_samples()
    ens = manifest.ensemble
    stages = (["segment -> lung crop"] if manifest.segmenter else []) + [
        f"{ens.method} of {len(ens.members)} model(s): {', '.join(ens.members)}"
    ]
    click.echo(f"bundle {manifest.name}: {' -> '.join(stages)} on {len(samples)} shipped samples\n")
    click.echo(f"{'file':<46} {'source':<9} {'truth':<29} {'prediction':<12} {'p':>5} {'ms':>7}")
    correct = 0
    latencies = []
    with RowWriter(out, predictor.labels, overwrite=force) as writer:
        for sample, outcome in zip(samples, predictor.predict_many(s.file for s in samples), strict=True):
            writer.write(outcome)
            if not outcome.ok:
                click.echo(f"{sample.file.name:<46} error: {outcome.error}")
                continue
            pred = outcome.prediction
            truth = manifest.label_map.get(sample.label, sample.label)  # e.g. bacterial -> pneumonia
            correct += pred.label == truth
            latencies.append(pred.timings_ms["total"])
            mark = "" if pred.label == truth else "  <- wrong"
            mark += f"  (refer: {pred.referral})" if pred.referral else ""
            mark += "".join(f"  [{flag}]" for flag in pred.flags)
            shown = sample.label if truth == sample.label else f"{sample.label}->{truth}"
            click.echo(
                f"{sample.file.name:<46} {sample.source:<9} {shown:<29} {pred.label:<12} "
                f"{pred.probs[pred.label]:5.2f} {pred.timings_ms['total']:7.1f}{mark}"
            )
    if latencies:
        latencies.sort()
        click.echo(
            f"\n{correct}/{len(samples)} correct; median latency {latencies[len(latencies) // 2]:.1f} ms "
            "per image (decode + preprocess + classify, 1 thread)"
        )
    click.echo(
        "Samples are a handful of test-split images from hospitals the model trained on: such numbers "
        "are optimistic. What to expect in an unseen hospital: `cxr-edge bundle card` (leave-one-source-"
        "out results) and README, 'Honest numbers'."
    )
    click.echo(f"rows written to {out}")


@click.command("split")
@manifest_option()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Split CSV to write.")
@click.option(
    "--test",
    "test_fraction",
    default=0.1,
    show_default=True,
    type=float,
    help="Fraction of patients for test.",
)
@click.option(
    "--val",
    "val_fraction",
    default=0.1,
    show_default=True,
    type=float,
    help="Fraction of the remaining patients for validation.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--extend",
    "previous",
    type=click.Path(exists=True, dir_okay=False),
    help="Split of an earlier version of the manifest: its patients keep their parts, new patients are "
    "assigned with the fractions above (for a grown data kit).",
)
@root_option
@click.option("--force", is_flag=True, help="Replace an existing split file.")
@clean_errors
def split_cmd(manifest_path, out, test_fraction, val_fraction, seed, previous, root, force):
    """Write a patient-level, stratified train/val/test split that every later stage reads."""
    manifest = load_manifest(manifest_path, root)
    if previous is not None:
        made = extend_split(manifest, read_split(previous), test_fraction, val_fraction, seed)
    else:
        made = make_split(manifest, test_fraction, val_fraction, seed)
    split = write_split(out, manifest, made, overwrite=force)
    summary = split.summary(manifest)
    labels = manifest.labels
    click.echo(f"{'part':<6} {'patients':>8} " + " ".join(f"{lab:>18}" for lab in labels))
    for part, counts in summary.items():
        click.echo(
            f"{part:<6} {counts['patients']:>8} " + " ".join(f"{counts.get(lab, 0):>18}" for lab in labels)
        )
    click.echo(f"split written to {Path(out)} (sha256 {split.sha256[:16]}...); no patient is in two parts")


@click.command("evaluate")
@bundle_option
@click.option(
    "--manifest",
    "manifest_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled manifest CSV (the data kit's format).",
)
@root_option
@click.option(
    "--split",
    "split_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Evaluate only one part of this split (see --part).",
)
@click.option(
    "--part",
    default="test",
    show_default=True,
    type=click.Choice(PARTS),
    help="Split part evaluated when --split is given.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder for metrics.json and report.md."
)
@click.option(
    "--audit-source", is_flag=True, help="Also test whether the source is predictable from the outputs."
)
@click.option(
    "--n-boot", default=2000, show_default=True, type=click.IntRange(100), help="Bootstrap replicates."
)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64), help="LiteRT threads.")
@click.option(
    "--compare",
    "compare_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Another bundle to test against on the same images (e.g. the unpruned one): McNemar and "
    "paired DeLong for the ensembles and for each model and its counterpart.",
)
@click.option("--force", is_flag=True, help="Overwrite a previous evaluation in --out.")
@clean_errors
def evaluate_cmd(
    bundle_dir, manifest_path, root, split_path, part, out, audit_source, n_boot, threads, compare_dir, force
):
    """Evaluate a bundle on a labelled manifest: metrics with intervals, per source, paired tests.

    Rows with labels the bundle does not know, and files that cannot be read, are listed in the
    report and skipped; they do not stop the evaluation.
    """
    from cxr_edge.evaluation.evaluate import compare, ensemble_probs, evaluate
    from cxr_edge.evaluation.report import write_evaluation
    from cxr_edge.evaluation.shortcut import audit

    bundle = Bundle.load(bundle_dir)
    manifest = load_manifest(manifest_path, root, check_files=False)
    records = list(manifest.records)
    if split_path:
        records = read_split(split_path, manifest).records(manifest, part)
    metrics, preds = evaluate(bundle, records, n_boot=n_boot, threads=threads)
    if compare_dir:
        metrics.setdefault("paired", {})["vs_bundle"] = compare(
            bundle, preds, Bundle.load(compare_dir), threads=threads
        )
    if audit_source:
        metrics["audit"] = audit(
            preds.per_model,
            bundle.manifest.ensemble.members,
            bundle.labels,
            preds.y,
            [r.source for r in preds.records],
            [r.patient_id for r in preds.records],
        )
    title = f"Evaluation of {bundle.manifest.name} on {Path(manifest_path).name}" + (
        f" ({part})" if split_path else ""
    )
    folder = write_evaluation(
        out, metrics, preds.y, ensemble_probs(bundle, preds), title=title, overwrite=force
    )
    ens = metrics["ensemble"]
    click.echo(
        f"{metrics['n']} images ({len(metrics['skipped'])} skipped): accuracy {ens['accuracy']:.3f} "
        f"[{ens['accuracy_ci'][0]:.3f}, {ens['accuracy_ci'][1]:.3f}], macro AUC "
        + (f"{ens['auc_macro']:.3f}" if ens["auc_macro"] is not None else "n/a")
    )
    click.echo(f"report: {folder / 'report.md'}")


@click.command("segment")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@bundle_option
@click.option(
    "--manifest",
    "manifest_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Segment every image of a manifest (keys of crops.csv are its `path` column).",
)
@root_option
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder for crops.csv, masks, overlays."
)
@click.option("--images/--no-images", default=True, show_default=True, help="Write mask and overlay PNGs.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64), help="LiteRT threads.")
@click.option("--force", is_flag=True, help="Replace an existing crops.csv in --out.")
@clean_errors
def segment_cmd(paths, bundle_dir, manifest_path, root, out, images, threads, force):
    """Segment the lungs: crops.csv (box, lung/fallback and why) plus mask and overlay PNGs.

    Unreadable files get an error row and the rest are processed; exit code 2 when any failed.
    """
    import cv2

    from cxr_edge.ops.lungcrop import overlay
    from cxr_edge.runtime.segmenter import Segmenter, segment_paths, write_crop_table

    if bool(paths) == bool(manifest_path):
        raise click.UsageError("give either PATH... or --manifest")
    out_dir = Path(out)
    if (out_dir / "crops.csv").exists() and not force:
        raise click.ClickException(f"{out_dir / 'crops.csv'} exists (use --force to replace it)")
    segmenter = Segmenter(Bundle.load(bundle_dir), threads=threads)
    not_images: list[Path] = []
    if manifest_path:
        items = [(r.path, r.file) for r in load_manifest(manifest_path, root, check_files=False).records]
    else:
        items = [(str(p), p) for p in expand_inputs(paths, skipped=not_images)]
    if images:
        (out_dir / "masks").mkdir(parents=True, exist_ok=True)
        (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"lung": 0, "fallback": 0, "error": 0}
    for row, image, result in tqdm(
        segment_paths(segmenter, items), total=len(items), desc="segment", disable=None, file=sys.stderr
    ):
        rows.append(row)
        counts[row.status] += 1
        if row.status == "error":
            click.echo(f"error: {one_line(row.path)}: {row.reason}", err=True)
        elif images:
            stem = row.path.strip("/").replace("/", "__").rsplit(".", 1)[0]
            cv2.imwrite(str(out_dir / "masks" / f"{stem}_mask.png"), result.mask)
            cv2.imwrite(str(out_dir / "overlays" / f"{stem}_overlay.png"), overlay(image, result))
    write_crop_table(out_dir / "crops.csv", rows)
    click.echo(
        f"{counts['lung']} lung crops, {counts['fallback']} fallbacks, {counts['error']} errors; "
        + (f"{_not_images(not_images)}; " if not_images else "")
        + f"table in {out_dir / 'crops.csv'}",
        err=True,
    )
    sys.exit(2 if counts["error"] else 0)
