"""Writing an evaluation: ``metrics.json``, ``report.md`` and plots (ROC, confusion, reliability).

Plots need matplotlib, which the runtime install does not carry (it is in the ``[train]`` extra);
without it the report says so and the numbers are still complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr_edge.errors import InputError
from cxr_edge.formatting import interval


def write_evaluation(
    out_dir: str | Path,
    metrics: dict,
    y: np.ndarray,
    ensemble_probs: np.ndarray,
    *,
    title: str,
    overwrite: bool = False,
) -> Path:
    """Writes ``metrics.json``, ``report.md`` and the plots into ``out_dir``.

    Raises:
        InputError: ``out_dir`` holds a previous evaluation and ``overwrite`` is False.
    """
    out = Path(out_dir)
    if (out / "metrics.json").exists() and not overwrite:
        raise InputError(
            "evaluation folder already used", expected="a new folder (or --force)", received=str(out)
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plots = _plots(out, metrics, y, ensemble_probs)
    (out / "report.md").write_text(markdown(metrics, title, plots))
    return out


def markdown(metrics: dict, title: str, plots: list[str] | None) -> str:
    """The human-readable report."""
    lines = [f"# {title}", "", f"{metrics['n']} images evaluated; {len(metrics['skipped'])} skipped.", ""]
    ens = metrics["ensemble"]
    lines += [
        f"Ensemble: `{ens['method']}` of {', '.join(ens['members'])} (temperature {ens['temperature']:.3g}).",
        "",
        "## Models and combiners (95% intervals)",
        "",
        "| | accuracy | macro AUC | MCC | macro F1 | ECE | Brier |",
        "|---|---|---|---|---|---|---|",
        _row("**ensemble**", ens),
    ]
    lines += [_row(f"model `{n}`", m) for n, m in metrics["models"].items()]
    lines += [_row(f"method `{n}`", m) for n, m in metrics["methods"].items()]
    lines += [
        "",
        "Accuracy: Clopper-Pearson; per-class AUC: DeLong; macro AUC and MCC: patient-level stratified "
        "bootstrap. The paper's Clopper-Pearson interval on the AUC (not a valid AUC interval) is in "
        "`metrics.json` as `auc_macro_ci_paper`.",
        "",
        "## Ensemble per class",
        "",
        "| label | n | AUC | sensitivity | specificity | precision | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, c in ens["per_class"].items():
        lines.append(
            f"| {label} | {c['n']} | {_ci(c['auc'], c['auc_ci'])} | "
            f"{_ci(c['sensitivity'], c['sensitivity_ci'])} | {_ci(c['specificity'], c['specificity_ci'])} | "
            f"{_f(c['precision'])} | {_f(c['f1'])} |"
        )
    lines += ["", "## By source (ensemble)", "", "| source | n | accuracy | macro AUC |", "|---|---|---|---|"]
    lines += [
        f"| {s} | {v['n']} | {_f(v['accuracy'])} | {_f(v['auc_macro'])} |"
        for s, v in metrics["by_source"].items()
    ]
    lines += _evidence(metrics)
    if "ensemble_vs_best_member" in metrics.get("paired", {}):
        p = metrics["paired"]["ensemble_vs_best_member"]
        mc = p["mcnemar"]
        lines += [
            "",
            "## Ensemble vs its best member",
            "",
            f"Best member on validation: `{p['best_member']}`. McNemar: b={mc['b']}, c={mc['c']}, "
            f"p={_f(mc['p_value'])} ({'exact' if mc['exact'] else 'chi-square'}).",
            "",
            "| label | AUC ensemble | AUC member | paired DeLong p |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {lab} | {_f(d['auc_a'])} | {_f(d['auc_b'])} | {_f(d['p_value'])} |"
            for lab, d in p["delong"].items()
        ]
    if "vs_bundle" in metrics.get("paired", {}):
        lines += _comparison(metrics["paired"]["vs_bundle"])
    if "audit" in metrics:
        a = metrics["audit"]
        lines += [
            "",
            "## Shortcut audit: is the source predictable from the outputs?",
            "",
            f"Overall source AUC: {_f(a['overall_source_auc'])}.",
            "",
            "| label | sources | source AUC within the label |",
            "|---|---|---|",
        ]
        lines += [
            f"| {lab} | {v['sources']} | {_f(v['source_auc'])} |" for lab, v in a["within_label"].items()
        ]
        lines += ["", a["reading"]]
    if metrics["skipped"]:
        lines += ["", "## Skipped rows", ""] + [f"- `{s['path']}`: {s['reason']}" for s in metrics["skipped"]]
    lines += [""] + (
        [f"![{p}]({p})" for p in plots]
        if plots
        else ["Plots need matplotlib (`pip install 'cxr-edge[train]'` or `pip install matplotlib`)."]
    )
    return "\n".join(lines) + "\n"


def _evidence(metrics: dict) -> list[str]:
    """Sections: where the models looked (bundles with a segmenter) and the referral band."""
    lines = []
    ev = metrics.get("lung_evidence")
    if ev:
        threshold = ev["min_fraction"]
        lines += [
            "",
            "## Where the model looked (lung fraction of the ensemble's heat map)",
            "",
            "Share of the heat map inside the predicted lung mask; "
            + (
                f'"evidence outside the lungs" below {threshold:.3f} ({ev["chosen_on"]}).'
                if threshold is not None
                else "the bundle sets no flag threshold."
            )
            + f" Lung crops that fell back (no fraction): {ev['fallback_crops']}.",
            "",
            "| source | images | mean | median | flagged |",
            "|---|---|---|---|---|",
        ]
        for name, v in [*ev["by_source"].items(), ("**all**", ev["overall"])]:
            lines.append(f"| {name} | {v['n']} | {_f(v['mean'])} | {_f(v['median'])} | {_f(v['flagged'])} |")
    band = metrics.get("abstain")
    if band:
        ref, rest = band["referred"], band["accuracy_reported"]
        lines += [
            "",
            "## Referral band",
            "",
            f"Refer when the top probability < {band['min_top_prob']:.2f} or the margin < "
            f"{band['min_margin']:.2f}: {ref['k']} of {ref['n']} images referred; accuracy of the rest "
            f"{_ci(rest['value'], rest['ci'])}.",
        ]
    return lines


def _comparison(c: dict) -> list[str]:
    """Section: this bundle against another one (McNemar b = only this one right, c = only the other)."""
    lines = [
        "",
        f"## Against `{c['baseline_bundle']}` on the same {c['n']} images",
        "",
        "McNemar b: images only this bundle's model gets right; c: only the other one's. Paired DeLong p "
        "per class (this AUC / other AUC).",
        "",
        "| this | other | McNemar b / c | p | " + " | ".join(c["ensemble"]["delong"]) + " |",
        "|---|---|---|---|" + "---|" * len(c["ensemble"]["delong"]),
    ]
    pairs = [("ensemble", "ensemble", c["ensemble"])] + [
        (f"`{name}`", f"`{v['baseline_model']}`", v) for name, v in c["models"].items()
    ]
    for this, other, v in pairs:
        mc = v["mcnemar"]
        cells = [f"{_f(d['auc_a'])} / {_f(d['auc_b'])} (p {_f(d['p_value'])})" for d in v["delong"].values()]
        lines.append(
            f"| {this} | {other} | {mc['b']} / {mc['c']} | {_f(mc['p_value'])} | " + " | ".join(cells) + " |"
        )
    if c["left_out"]:
        lines += [
            "",
            f"{c['left_out']} images the other bundle could not use are left out of this comparison.",
        ]
    return lines


def _row(name: str, m: dict) -> str:
    return (
        f"| {name} | {_ci(m['accuracy'], m['accuracy_ci'])} | {_ci(m['auc_macro'], m['auc_macro_ci'])} | "
        f"{_ci(m['mcc'], m['mcc_ci'])} | {_f(m['f1_macro'])} | {_f(m['ece'])} | {_f(m['brier'])} |"
    )


def _ci(value, ci) -> str:
    return interval(value, ci, digits=3, missing="n/a")


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pyplot():
    """matplotlib's pyplot on the file-only backend, or None where matplotlib is not installed (a cart)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display on a cart or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_confusion(plt, path: Path, confusion, labels, title: str) -> None:
    """The confusion matrix (rows true, columns predicted) with its counts, as a PNG."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    cm = np.array(confusion)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(
        xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title
    )
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_reliability(plt, path: Path, rel: dict, ece: float) -> None:
    """A reliability diagram (:func:`cxr_edge.evaluation.stats.reliability_curve`), as a PNG."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pairs = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"], strict=True) if c is not None]
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    if pairs:
        ax.plot(*zip(*pairs, strict=True), "o-")
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"Reliability (ECE {ece:.3f})")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plots(out: Path, metrics: dict, y: np.ndarray, probs: np.ndarray) -> list[str] | None:
    plt = pyplot()
    if plt is None:
        return None
    labels = metrics["labels"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for c, label in enumerate(labels):
        fpr, tpr = roc_points(probs[:, c], y == c)
        ax.plot(fpr, tpr, label=f"{label} (AUC {_f(metrics['ensemble']['per_class'][label]['auc'])})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (ensemble, one-vs-rest)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(out / "roc.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    ens = metrics["ensemble"]
    plot_confusion(plt, out / "confusion.png", ens["confusion"], labels, "Confusion matrix (ensemble)")
    plot_reliability(plt, out / "reliability.png", ens["reliability"], ens["ece"])
    return ["roc.png", "confusion.png", "reliability.png"]


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    pos = positive[order]
    tpr = np.concatenate([[0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~pos) / max((~pos).sum(), 1)])
    return fpr, tpr
