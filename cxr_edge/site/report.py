"""Site reports in words and pictures: the validation study (``report.md``, ``report.json``, plots) and
the calibration's before/after table. Image names only, never patient identifiers.

Plots need matplotlib (the ``[train]`` extra); on a cart without it the report says so and the
numbers are all there.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxr_edge.evaluation.report import plot_confusion, plot_reliability, pyplot, roc_points
from cxr_edge.evaluation.stats import reliability_curve
from cxr_edge.formatting import interval
from cxr_edge.site.observe import Observations

PLOTS = ("confusion.png", "roc.png", "reliability.png")


def write_study(out: str | Path, study: dict, obs: Observations) -> Path:
    """Writes ``report.json``, ``report.md`` and the plots into ``out``; returns the Markdown's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(out, study["metrics"], obs)
    (out / "report.json").write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    path = out / "report.md"
    path.write_text(study_markdown(study, plots), encoding="utf-8")
    return path


def study_markdown(study: dict, plots: list[str] | None) -> str:
    """The validation study as Markdown."""
    m = study["metrics"]
    b = study["bundle"]
    lines = [
        f"# Local validation: {b['name']}",
        "",
        f"Bundle SHA-256 `{b['sha256'][:16]}...`"
        + (f", calibrated for {b['site']}" if b["site"] else "")
        + ".",
        f"{study['images']['classified']} images classified, {study['images']['errors']} error rows"
        + (
            f", {study['patients']} patients."
            if study["patients"] is not None
            else " (no patient_id column: each image counted as its own patient)."
        ),
        "",
        *(
            [
                f"**{study['images']['calibration_images']} of these images were used to fit the bundle's "
                "site calibration: numbers on them are in-sample and flatter the model. Validate on other "
                "images.**",
                "",
            ]
            if study["images"].get("calibration_images")
            else []
        ),
        "## Against what the bundle promised",
        "",
    ]
    exp = study["expectation"]
    if exp is None:
        lines.append("The bundle carries no expectation (no model card LOSO results, no site calibration).")
    else:
        lines += [f"Expectation: {exp['source']}.", ""]
        if exp.get("accuracy_range"):
            lo, hi = exp["accuracy_range"]
            lines += [f"Held-out sources' accuracy ranged {lo:.2f}-{hi:.2f}.", ""]
        lines += ["| number | observed | expected | verdict |", "|---|---|---|---|"]
        for name, v in study["verdicts"].items():
            lines.append(
                f"| {name} | {interval(v['observed'])} | {interval(v['expected'])} | {v['verdict']} |"
            )
    lines += ["", "## Per class (95% Clopper-Pearson intervals; AUC with DeLong intervals)", ""]
    lines += ["| label | images | sensitivity | specificity | AUC one-vs-rest |", "|---|---:|---|---|---|"]
    for label, block in m["per_class"].items():
        auc = m["auc_one_vs_rest"][label]
        lines.append(
            f"| {label} | {block['n']} | {interval(block['sensitivity'])} | "
            f"{interval(block['specificity'])} | "
            f"{interval(auc['auc'], auc['ci']) if auc else '-'} |"
        )
    lines += ["", "## Overall", ""]
    lines.append(f"- accuracy {interval(m['accuracy'])}; balanced accuracy {m['balanced_accuracy']:.3f}")
    if "abnormal" in m:
        a = m["abnormal"]
        auc = a["auc"]
        lines.append(
            f"- abnormal vs {a['normal_label']}: AUC {interval(auc['auc'], auc['ci']) if auc else '-'}, "
            f"sensitivity {interval(a['sensitivity'])}, specificity {interval(a['specificity'])}"
        )
        if auc and auc["ci"][0] <= 0.5:
            lines.append(
                "  - the AUC interval includes 0.5: at this site the model may not rank abnormal above "
                "normal "
                "at all; no threshold or calibration can fix that, only training can"
            )
    lines.append(f"- expected calibration error {m['ece']:.3f}, log-loss {m['log_loss']:.3f}")
    if "referral_rate" in m:
        lines.append(
            f"- referred to a radiologist (the bundle's referral band): {interval(m['referral_rate'])}"
        )
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
    labels = m["labels"]
    lines += ["| | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, m["confusion"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Cases for a +-0.05 interval",
        "",
        "| number | cases now | needed | more |",
        "|---|---:|---:|---:|",
    ]
    for name, c in study["more_cases"].items():
        lines.append(f"| {name} | {c['n']} | {c['needed']} | {c['more']} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots] if plots else ["Not drawn: matplotlib is not installed here."]
    if study["errors"]:
        lines += ["", "## Images that were not classified", "", "| image | error |", "|---|---|"]
        lines += [f"| {e['image']} | {e['error']} |" for e in study["errors"]]
    return "\n".join(lines) + "\n"


def calibration_markdown(metrics: dict) -> str:
    """The calibration's cross-validated before/after table (one row per method)."""
    lines = [
        f"Cross-validated over the site's patients ({metrics['folds']} folds, "
        f"{metrics['patients']} patients); "
        f"chosen: **{metrics['chosen']}** ({metrics['chosen_by']}).",
        "",
        "| | accuracy | balanced accuracy | abnormal AUC | abnormal sensitivity | abnormal specificity "
        "| ECE |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for name, m in [("parent", metrics["parent"]), *metrics["methods"].items()]:
        a = m.get("abnormal")
        auc = a["auc"] if a else None
        lines.append(
            f"| {name} | {interval(m['accuracy'])} | {m['balanced_accuracy']:.3f} | "
            f"{interval(auc['auc'], auc['ci']) if auc else '-'} | "
            f"{interval(a['sensitivity']) if a else '-'} | "
            f"{interval(a['specificity']) if a else '-'} | {m['ece']:.3f} |"
        )
    g = metrics["gain"]
    lines += [
        "",
        f"Balanced-accuracy gain of {metrics['chosen']}: {interval(g['estimate'], g['ci'], digits=3)} "
        "(paired bootstrap over patients).",
    ]
    return "\n".join(lines) + "\n"


def _plots(out: Path, m: dict, obs: Observations) -> list[str] | None:
    plt = pyplot()
    if plt is None:
        return None
    labels, y, probs = m["labels"], obs.y, obs.probs
    plot_confusion(plt, out / PLOTS[0], m["confusion"], labels, "Confusion matrix")
    fig, ax = plt.subplots(figsize=(5, 5))
    for c, label in enumerate(labels):
        auc = m["auc_one_vs_rest"][label]
        if auc:
            ax.plot(*roc_points(probs[:, c], y == c), label=f"{label} (AUC {auc['auc']:.2f})")
    if m.get("abnormal") and m["abnormal"]["auc"]:
        k = labels.index(m["abnormal"]["normal_label"])
        ax.plot(
            *roc_points(1 - probs[:, k], y != k),
            "k-",
            lw=2,
            label=f"abnormal vs normal (AUC {m['abnormal']['auc']['auc']:.2f})",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC at this site")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(out / PLOTS[1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    plot_reliability(plt, out / PLOTS[2], reliability_curve(probs, y, n_bins=10), m["ece"])
    return list(PLOTS)
