"""``cxr-edge site``: a hospital checks the bundle on its own labelled images (``validate``), adapts it
(``calibrate``) and watches for drift (``monitor``). No TensorFlow needed."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import click

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli.common import bundle_option, clean_errors, threads_option
from cxr_edge.formatting import interval
from cxr_edge.ops.site import SiteMethod
from cxr_edge.runtime.pipeline import Predictor

NORMAL = "normal"


@click.group("site")
def site_group() -> None:
    """A new hospital: validate the bundle locally, calibrate it on a few labelled images, watch drift."""


def _labels_args(func):
    func = click.option(
        "--map",
        "label_map",
        multiple=True,
        help="CSV label -> bundle label, RAW=LABEL (repeat); the bundle's own map applies too.",
    )(func)
    func = click.option(
        "--normal",
        default=NORMAL,
        show_default=True,
        help="The label meaning normal (abnormal = every other label).",
    )(func)
    return click.argument("labels_csv", type=click.Path(dir_okay=False))(func)


def _observe(bundle: Bundle, labels_csv, label_map, threads, *, digests: bool):
    from cxr_edge.site.labels import parse_map, read_labels
    from cxr_edge.site.observe import observe

    mapping = {**bundle.manifest.label_map, **parse_map(label_map)}
    site = read_labels(labels_csv, bundle.labels, label_map=mapping)
    return site, observe(Predictor(bundle, threads=threads), site, digests=digests)


@site_group.command("validate")
@_labels_args
@bundle_option
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder for report.md, report.json, plots."
)
@click.option("--force", is_flag=True, help="Write into an --out folder that already holds a report.")
@threads_option
@clean_errors
def validate_cmd(labels_csv, label_map, normal, bundle_dir, out, force, threads):
    """A local validation study on LABELS_CSV (path,label[,patient_id]; paths relative to the CSV).

    Per-class sensitivity and specificity (Clopper-Pearson), within-site AUC one-vs-rest and
    abnormal-vs-normal (DeLong), calibration error, referral rate, the bundle's promise (its LOSO
    results, or its site calibration's) beside what was observed, and how many more cases would give
    a +-0.05 interval. Unreadable images are error rows; no patient identifier reaches the report.
    """
    from cxr_edge.site.report import write_study
    from cxr_edge.site.validate import study

    if (Path(out) / "report.json").exists() and not force:
        raise click.ClickException(f"{out} already holds a report (--force to replace it)")
    bundle = Bundle.load(bundle_dir)
    # Digests tell the calibration's own images: only a calibrated bundle has any to compare with.
    site, obs = _observe(bundle, labels_csv, label_map, threads, digests=bundle.manifest.site is not None)
    result = study(bundle, obs, normal=normal, has_patients=site.has_patients)
    path = write_study(out, result, obs)
    m = result["metrics"]
    click.echo(f"{len(obs)} images classified, {len(obs.errors)} error rows")
    if result["images"]["calibration_images"]:
        click.echo(
            f"warning: {result['images']['calibration_images']} of them were used to fit the site "
            "calibration: in-sample numbers, not a validation",
            err=True,
        )
    click.echo(f"accuracy {interval(m['accuracy'])}, balanced accuracy {m['balanced_accuracy']:.3f}")
    if m.get("abnormal") and m["abnormal"]["auc"]:
        a = m["abnormal"]
        click.echo(
            f"abnormal vs {normal}: AUC {interval(a['auc']['auc'], a['auc']['ci'])}, sensitivity "
            f"{interval(a['sensitivity'])}, specificity {interval(a['specificity'])}"
        )
    for name, v in result["verdicts"].items():
        click.echo(
            f"{name}: {v['verdict']} (observed {interval(v['observed'])}, expected {interval(v['expected'])})"
        )
    click.echo(f"report: {path}")


@site_group.command("calibrate")
@_labels_args
@bundle_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The new bundle's folder.")
@click.option("--site", "site_name", required=True, help="The site's name, recorded in the new bundle.")
@click.option(
    "--method",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", *(m.value for m in SiteMethod)]),
    help="auto: the best cross-validated balanced accuracy among the methods the bundle allows.",
)
@click.option(
    "--operating-point/--no-operating-point",
    default=False,
    show_default=True,
    help="Also shift the normal label so that abnormal reaches --target-sensitivity.",
)
@click.option("--target-sensitivity", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999))
@click.option(
    "--min-per-class",
    default=10,
    show_default=True,
    type=click.IntRange(2),
    help="Fewest images per labelled class.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the folds and the bootstrap.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder (never the parent).")
@click.option(
    "--key",
    "key_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="The site's private key: sign the new bundle (needed under a trust policy).",
)
@threads_option
@clean_errors
def calibrate_cmd(
    labels_csv,
    label_map,
    normal,
    bundle_dir,
    out,
    site_name,
    method,
    operating_point,
    target_sensitivity,
    min_per_class,
    seed,
    force,
    key_file,
    threads,
):
    """Fit the bundle to a site's labelled images and write a new bundle (the parent is never changed).

    Methods: prior (temperature + per-class bias), head (the members' dense heads refitted on their
    pooled features, pulled toward the shipped ones); with --operating-point, a normal-vs-abnormal
    threshold at --target-sensitivity. Each is cross-validated over the site's patients; the command
    refuses, with the numbers, when a class has too few images or the gain is not above its interval.
    """
    from cxr_edge.site.calibrate import calibrate, site_data
    from cxr_edge.site.calibrated import check_parent, check_site_key, site_section, write_site_bundle
    from cxr_edge.site.report import calibration_markdown

    t0 = time.perf_counter()
    bundle = Bundle.load(bundle_dir)
    check_parent(bundle)  # before any image is read
    check_site_key(key_file)
    if Path(out).exists() and not force and any(Path(out).iterdir()):
        raise click.ClickException(f"{out} exists (--force to replace it)")
    _, obs = _observe(bundle, labels_csv, label_map, threads, digests=True)
    for name, error in obs.errors:
        click.echo(f"not used: {name}: {error}", err=True)
    result = calibrate(
        site_data(bundle, obs),
        method=method,
        normal=normal if normal in bundle.labels else None,
        target_sensitivity=target_sensitivity if operating_point else None,
        min_per_class=min_per_class,
        seed=seed,
    )
    section = site_section(
        bundle, result, site=site_name, patients=len(set(obs.groups.astype(str))), digests=tuple(obs.digests)
    )
    new = write_site_bundle(
        bundle, section, out, command=shlex.join(["cxr-edge", *sys.argv[1:]]), overwrite=force, key=key_file
    )
    click.echo(calibration_markdown(result.metrics))
    click.echo(f"calibrated bundle written to {new.root} ({time.perf_counter() - t0:.1f} s)")


@site_group.command("monitor")
@click.argument("predictions", type=click.Path(dir_okay=False))
@bundle_option
@click.option("--last", default=None, type=click.IntRange(1), help="Only the last N predictions.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@clean_errors
def monitor_cmd(predictions, bundle_dir, last, as_json):
    """Drift without labels: the class mix and score distribution of PREDICTIONS (the node's audit log,
    or predict/batch rows) against what the bundle expects; a prevalence estimate by EM. Reported,
    never applied. Exit code 0 either way; the line says whether drift is flagged."""
    from cxr_edge.site.monitor import monitor_file

    report = monitor_file(Bundle.load(bundle_dir), predictions, last)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['n']} predictions against {report['reference']}: {report['verdict']}")
    if "class_mix" in report:
        mix = ", ".join(f"{k} {v:.2f}" for k, v in report["class_mix"].items())
        click.echo(f"predicted mix   {mix}")
    if "expected_class_mix" in report:
        click.echo(
            "expected mix    " + ", ".join(f"{k} {v:.2f}" for k, v in report["expected_class_mix"].items())
        )
    if "prevalence_em" in report:
        click.echo("prevalence (EM) " + ", ".join(f"{k} {v:.2f}" for k, v in report["prevalence_em"].items()))
