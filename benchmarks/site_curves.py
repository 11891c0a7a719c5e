"""``python -m cxr_edge.benchmarks.site_curves``: how much a site gains from k labelled images per class.

Each held-out source of the LOSO folds plays a new hospital (its ``.npz`` from
:mod:`cxr_edge.benchmarks.site_features`). For every k and draw, k images per labelled class are
drawn at random as the site's labelled images; every image of another patient is the site's future
(images of a drawn patient are left out of both). Each method of :mod:`cxr_edge.site.fit` is fitted
on the drawn images and scored on the rest: accuracy (over the bundle's three labels), balanced
accuracy, the within-source abnormal-vs-normal AUC (score ``1 - p(normal)``) and the abnormal
sensitivity and specificity of the predicted label. ``auto`` is what ``cxr-edge site calibrate``
does: cross-validated choice, then its refusal rules; a refused draw keeps the parent (and is
counted). Numpy only::

    python -m cxr_edge.benchmarks.site_curves --features build/site_features --source kermany \\
        --source nih --out docs/site/curves.json --markdown docs/site/curves.md \\
        --plot docs/img/site_curves.png
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from cxr_edge.bundle.manifest import EnsembleConfig
from cxr_edge.errors import CalibrationRefusedError
from cxr_edge.evaluation.metrics import roc_auc
from cxr_edge.site.calibrate import calibrate
from cxr_edge.site.fit import SiteData, fit, output
from cxr_edge.site.metrics import balanced_accuracy

KS = (5, 10, 25, 50, 100)
METHODS = ("zero-shot", "prior", "prior+op", "head", "head+op", "auto")
TARGET = 0.95
NORMAL = "normal"


def load(path: Path, temperature: float) -> SiteData:
    """A held-out source's arrays as :class:`SiteData` (the parent: mean of the members, ``temperature``)."""
    z = np.load(path, allow_pickle=False)
    members = tuple(f"m{i}" for i in range(len(z["members"])))
    return SiteData(
        labels=tuple(str(s) for s in z["labels"]),
        y=z["y"].astype(int),
        groups=z["patients"].astype(object),
        member_probs=np.stack([z[f"probs_{i}"] for i in range(len(members))]).astype(np.float64),
        ensemble=EnsembleConfig(method="mean", members=members, temperature=temperature),
        pooled={m: z[f"pooled_{i}"].astype(np.float64) for i, m in enumerate(members)},
        shipped={m: z[f"kernel_{i}"].astype(np.float64) for i, m in enumerate(members)},
    )


def draw(data: SiteData, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(labelled rows, future rows)``: k images per labelled class; the future excludes their patients."""
    picked = np.concatenate(
        [rng.choice(np.flatnonzero(data.y == c), size=k, replace=False) for c in np.unique(data.y)]
    )
    patients = set(np.asarray(data.groups)[picked].tolist())
    future = np.array([i for i in range(len(data)) if data.groups[i] not in patients])
    return picked, future


def scores(data: SiteData, probs: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, abnormal-vs-normal AUC, sensitivity and specificity."""
    normal = data.labels.index(NORMAL)
    pred = probs.argmax(axis=1)
    abnormal, called = data.y != normal, pred != normal
    return {
        "accuracy": float(np.mean(pred == data.y)),
        "balanced_accuracy": balanced_accuracy(data.y, probs),
        "auc": roc_auc(1.0 - probs[:, normal], abnormal),
        "sensitivity": float(np.mean(called[abnormal])),
        "specificity": float(np.mean(~called[~abnormal])),
    }


def one_draw(data: SiteData, k: int, seed: int, methods: tuple[str, ...]) -> dict:
    """Every method's scores on one draw (and whether ``auto`` refused, and why)."""
    rng = np.random.default_rng(seed)
    picked, future = draw(data, k, rng)
    train, test = data.take(picked), data.take(future)
    out: dict = {"k": k, "seed": seed, "future": len(future)}
    for method in methods:
        t0 = time.perf_counter()
        if method == "zero-shot":
            cal = None
        elif method == "auto":
            try:
                cal = calibrate(train, seed=seed).calibration
                out["auto_refused"] = None
            except CalibrationRefusedError as exc:
                cal, out["auto_refused"] = None, exc.message
        else:
            base, _, op = method.partition("+")
            cal = fit(train, base, normal=NORMAL, target_sensitivity=TARGET if op else None, seed=seed)
        out[method] = scores(test, output(test, cal))
        out[method]["seconds"] = time.perf_counter() - t0
        if cal is not None and method != "auto":
            out[method]["chosen"] = cal.method
    return out


def summary(draws: list[dict], methods: tuple[str, ...]) -> dict:
    """Per k and method: mean and 2.5-97.5 percentiles over draws of each score."""
    out: dict = {}
    for k in sorted({d["k"] for d in draws}):
        rows = [d for d in draws if d["k"] == k]
        out[k] = {}
        for m in methods:
            block = {}
            for key in ("accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity"):
                values = np.array([r[m][key] for r in rows if r[m][key] is not None], dtype=float)
                block[key] = [float(values.mean()), *np.quantile(values, [0.025, 0.975]).tolist()]
            out[k][m] = block
        if "auto" in methods:
            out[k]["auto_refused"] = float(np.mean([r.get("auto_refused") is not None for r in rows]))
    return out


def markdown(results: dict, methods: tuple[str, ...]) -> str:
    """Tables per source: rows k x method, columns the scores (mean and 2.5-97.5 percentiles)."""
    lines = []
    for source, block in results.items():
        lines += [f"### {source} held out", ""]
        lines += [
            "| k per class | method | accuracy | balanced accuracy | abnormal AUC | sensitivity "
            "| specificity |",
            "|---:|---|---|---|---|---|---|",
        ]
        for k, by_method in block["summary"].items():
            for m in methods:
                cells = " | ".join(
                    f"{v[0]:.2f} ({v[1]:.2f}-{v[2]:.2f})"
                    for v in (
                        by_method[m][key]
                        for key in ("accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity")
                    )
                )
                note = (
                    f" (refused in {by_method['auto_refused']:.0%} of draws: parent kept)"
                    if m == "auto"
                    else ""
                )
                lines.append(f"| {k} | {m}{note} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, methods: tuple[str, ...], path: Path) -> None:
    """Accuracy and AUC against k, one panel per source and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 4 * len(results)), squeeze=False)
    for row, (source, block) in enumerate(results.items()):
        ks = [int(k) for k in block["summary"]]
        for col, key in enumerate(("accuracy", "auc")):
            ax = axes[row][col]
            for m in methods:
                values = [block["summary"][k][m][key] for k in block["summary"]]
                mean = [v[0] for v in values]
                ax.plot(ks, mean, "o-", label=m)
                ax.fill_between(ks, [v[1] for v in values], [v[2] for v in values], alpha=0.1)
            ax.set(
                xscale="log",
                xlabel="labelled images per class",
                ylabel=key,
                title=f"{source} held out: {key}",
            )
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.axhline(0.5 if key == "auc" else 0, color="k", lw=0.5, ls=":")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command()
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--source", "sources", multiple=True, required=True)
@click.option("--k", "ks", multiple=True, type=int, default=KS, show_default=True)
@click.option("--draws", default=20, show_default=True, type=int)
@click.option("--method", "methods", multiple=True, default=METHODS, show_default=True)
@click.option(
    "--temperature",
    default=None,
    type=float,
    help="Parent's temperature (default: the paper preset's; the committed curves use its folds).",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="JSON of every draw and the summary."
)
@click.option("--markdown", "md_out", default=None, type=click.Path(dir_okay=False))
@click.option("--plot", "plot_out", default=None, type=click.Path(dir_okay=False))
def main(features, sources, ks, draws, methods, temperature, out, md_out, plot_out) -> None:
    """Site-adaptation curves from the LOSO folds' held-out sources."""
    if temperature is None:
        temperature = json.loads(Path("docs/generalisation/paper_calibration.json").read_text())[
            "temperature"
        ]
    results = {}
    for source in sources:
        data = load(Path(features) / f"{source}.npz", temperature)
        rows = []
        for k in ks:
            for d in range(draws):
                rows.append(one_draw(data, k, 1000 * k + d, tuple(methods)))
                click.echo(
                    f"{source} k={k} draw {d}: "
                    + ", ".join(f"{m} {rows[-1][m]['accuracy']:.2f}" for m in methods)
                )
        results[source] = {"images": len(data), "draws": rows, "summary": summary(rows, tuple(methods))}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=1) + "\n")
    if md_out:
        Path(md_out).write_text(markdown(results, tuple(methods)) + "\n")
    if plot_out:
        plot(results, tuple(methods), Path(plot_out))


if __name__ == "__main__":
    main()
