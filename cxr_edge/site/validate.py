"""A local validation study: how the bundle does on a site's labelled images, against what it promised.

:func:`study` turns one pass over the images (:func:`cxr_edge.site.observe.observe`) into the
numbers of :mod:`cxr_edge.site.metrics`, the expectation the bundle carries and a verdict per number:

* an uncalibrated bundle promises its recipe's leave-one-source-out results (the model card's pooled
  held-out accuracy and per-class sensitivity): what a hospital the model never saw should expect;
* a site-calibrated bundle promises its own cross-validated results on the site's images.

A verdict compares intervals: *worse than expected* when the observed interval lies wholly below the
expected one, *better than expected* when wholly above, otherwise *as expected* (no evidence of a
difference, which with few cases is not evidence of agreement: the study also says how many more
cases would give a +-0.05 interval).
"""

from __future__ import annotations

from typing import Any

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.site.metrics import more_cases, site_metrics
from cxr_edge.site.observe import Observations

AS_EXPECTED, WORSE, BETTER, UNKNOWN = (
    "as expected",
    "worse than expected",
    "better than expected",
    "no expectation",
)


def study(
    bundle: Bundle, obs: Observations, *, normal: str | None = "normal", has_patients: bool = True
) -> dict:
    """The validation study of ``bundle`` on ``obs`` (JSON-ready; no patient identifiers).

    Args:
        bundle: The bundle that produced ``obs``.
        obs: The labelled images as it saw them.
        normal: The normal label.
        has_patients: Whether the labels file named patients (otherwise each image counts as one).
    """
    metrics = site_metrics(obs.y, obs.probs, obs.labels, normal=normal, referred=obs.referred)
    expectation = expected(bundle)
    site = bundle.manifest.site
    fitted_on = set(site.image_digests) if site is not None else set()
    return {
        "bundle": {
            "name": bundle.manifest.name,
            "sha256": bundle_sha256(bundle),
            "site": None if bundle.manifest.site is None else bundle.manifest.site.name,
        },
        "images": {
            "classified": len(obs),
            "errors": len(obs.errors),
            # Images the site calibration was fitted on: numbers on them are in-sample, not a validation.
            "calibration_images": sum(d in fitted_on for d in obs.digests),
        },
        "patients": len(set(obs.groups.astype(str))) if has_patients else None,
        "metrics": metrics,
        "expectation": expectation,
        "verdicts": verdicts(metrics, expectation),
        "more_cases": more_cases(metrics),
        "errors": [{"image": name, "error": message} for name, message in obs.errors],
    }


def expected(bundle: Bundle) -> dict[str, Any] | None:
    """What the bundle promises a new site: ``{"source", "accuracy", "sensitivity": {label: rate}}``.

    From the site calibration's cross-validated results when the bundle has one, else from the model
    card's leave-one-source-out pooled results; None when it carries neither.
    """
    m = bundle.manifest
    if m.site is not None:
        chosen = m.site.metrics.get("methods", {}).get(m.site.method)
        if chosen:
            return {
                "source": f"cross-validated on {m.site.name}'s images ({m.site.date}, "
                f"method {m.site.method})",
                "accuracy": chosen["accuracy"],
                "sensitivity": {k: v["sensitivity"] for k, v in chosen["per_class"].items() if v["n"]},
            }
    report = m.card.loso.report if m.card is not None else None
    if report is None:
        return None
    pooled = report["pooled"]
    accuracies = [
        b["accuracy"]["value"] for b in report["by_source"].values() if b["accuracy"]["value"] is not None
    ]
    return {
        "source": f"leave-one-source-out, pooled over held-out sources ({m.card.loso.recipe or 'recipe'})",
        "accuracy": pooled["accuracy"],
        "sensitivity": {k: v["sensitivity"] for k, v in pooled["per_class"].items() if v["sensitivity"]["n"]},
        "accuracy_range": [min(accuracies), max(accuracies)] if accuracies else None,
    }


def verdicts(metrics: dict, expectation: dict | None) -> dict[str, dict]:
    """Observed against expected, per number: ``{name: {"observed", "expected", "verdict"}}``."""
    if expectation is None:
        return {}
    out = {"accuracy": _verdict(metrics["accuracy"], expectation["accuracy"])}
    for label, block in metrics["per_class"].items():
        if block["n"] and label in expectation["sensitivity"]:
            out[f"sensitivity {label}"] = _verdict(block["sensitivity"], expectation["sensitivity"][label])
    return out


def _verdict(observed: dict, promised: dict) -> dict:
    o, e = observed.get("ci"), promised.get("ci")
    if not o or not e:
        verdict = UNKNOWN
    elif o[1] < e[0]:
        verdict = WORSE
    elif o[0] > e[1]:
        verdict = BETTER
    else:
        verdict = AS_EXPECTED
    return {"observed": observed, "expected": promised, "verdict": verdict}
