"""``python -m cxr_edge.benchmarks.pruning_table``: the paper's Table VI (unpruned vs pruned), with costs.

Rajaraman et al. report accuracy, AUC, F1, MCC and parameters before and after pruning. This table
adds what a device owner needs: MACs, TFLite file sizes and single-thread model latency (fp32 and
int8), all read from files the pipeline already writes, so the table is reproducible::

    python -m cxr_edge.benchmarks.pruning_table \\
        --prune runs/prune/mobilenet_v2-stage2 --prune runs/prune/inception_v3-stage2 ... \\
        --eval unpruned=docs/ensembles/unpruned --eval pruned=docs/ensembles/pruned \\
        --bench unpruned=benchmarks/results/top3_unpruned.json \\
        --bench pruned=benchmarks/results/top3_pruned.json \\
        --out docs/pruning/README.md --plot docs/pruning/prune_curves.png

* ``--prune``: folders of ``cxr-edge prune`` (``prune_results.csv``, ``best/run.json``);
* ``--eval``: folders of ``cxr-edge evaluate`` on the test split of the unpruned and pruned bundles;
* ``--bench``: ``cxr-edge bench --variants --out`` JSON of the same bundles (model-alone latency).

Member names follow ``cxr_edge.convert.members.member_stems``: ``RUN-QUANT`` unpruned, ``RUN-pruned-QUANT``
pruned, where RUN is the training run's folder name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from cxr_edge.formatting import interval

COLUMNS = (
    "| model | | params | reduction | MMACs | fp32 KiB | int8 KiB | fp32 ms | int8 ms "
    "| test accuracy (95% CI) | test macro AUC (95% CI) | F1 | MCC |"
)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, Path]:
    out = {}
    for v in values:
        key, sep, path = v.partition("=")
        if not sep or key not in ("unpruned", "pruned"):
            raise click.BadParameter(
                f"expected unpruned=PATH or pruned=PATH, received {v!r}", param_hint=option
            )
        out[key] = Path(path)
    if set(out) != {"unpruned", "pruned"}:
        raise click.BadParameter("both unpruned=... and pruned=... are needed", param_hint=option)
    return out


def _ci(value: float | None, ci) -> str:
    return interval(value, ci, digits=3, missing="n/a")


def _latency(bench: dict, name: str) -> float | None:
    run = bench.get("variants", {}).get(name)
    return None if run is None else run["stages"][name]["p50_ms"]


def rows_for(prune_dir: Path, evals: dict[str, dict], benches: dict[str, dict]) -> list[str]:
    """Two Markdown rows (unpruned, pruned) for one pruning folder."""
    best = json.loads((prune_dir / "best" / "run.json").read_text())
    run = Path(best["pruned_from"]).name
    stems = {"unpruned": run, "pruned": f"{run}-pruned"}
    lines = []
    for kind in ("unpruned", "pruned"):
        stem = stems[kind]
        fp32, int8 = f"{stem}-fp32", f"{stem}-int8"
        m = evals[kind]["models"].get(fp32)
        if m is None:
            raise click.ClickException(f"{fp32} is not in the {kind} evaluation")
        models = benches[kind]["models"]
        params = best["params_unpruned"] if kind == "unpruned" else best["params"]
        macs = best["macs_unpruned"] if kind == "unpruned" else best["macs"]
        reduction = "" if kind == "unpruned" else f"{1 - best['params'] / best['params_unpruned']:.1%}"
        label = (
            run
            if kind == "unpruned"
            else f"pruned {best['pruned_fraction']:.0%} (step {best['pruning_step']}, "
            f"{best.get('pruning_selection', {}).get('rule', 'best')})"
        )
        size = {
            q: models[n]["file_mb"] * 1024 if n in models else None
            for q, n in (("fp32", fp32), ("int8", int8))
        }
        ms = {q: _latency(benches[kind], n) for q, n in (("fp32", fp32), ("int8", int8))}
        lines.append(
            f"| {label} | {kind} | {params:,} | {reduction} | {macs / 1e6:.1f} | "
            + " | ".join("n/a" if v is None else f"{v:.0f}" for v in size.values())
            + " | "
            + " | ".join("n/a" if v is None else f"{v:.2f}" for v in ms.values())
            + f" | {_ci(m['accuracy'], m.get('accuracy_ci'))} | {_ci(m['auc_macro'], m.get('auc_macro_ci'))} "
            f"| {m['f1_macro']:.3f} | {m['mcc']:.3f} |"
        )
    return lines


def curves(prune_dirs: list[Path], plot: Path) -> None:
    """Validation macro AUC, accuracy and int8 latency against the pruned fraction, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(prune_dirs), figsize=(4.2 * len(prune_dirs), 3.6), squeeze=False)
    for ax, folder in zip(axes[0], prune_dirs, strict=True):
        with open(folder / "prune_results.csv") as fh:
            rows = list(csv.DictReader(fh))
        x = [float(r["fraction"]) for r in rows]
        ax.plot(x, [float(r["val_auc_macro"]) for r in rows], "o-", label="val macro AUC")
        ax.plot(x, [float(r["val_accuracy"]) for r in rows], "s-", label="val accuracy")
        ax.set(title=folder.name, xlabel="fraction of prunable channels removed", ylim=(0.4, 1.0))
        if rows[0].get("int8_latency_ms"):
            ax2 = ax.twinx()
            ax2.plot(x, [float(r["int8_latency_ms"]) for r in rows], "r^--", label="int8 ms")
            ax2.set_ylabel("int8 TFLite ms (1 thread)", color="r")
            ax2.set_ylim(bottom=0)
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100)
    plt.close(fig)


def render(prune_dirs: list[Path], evals: dict[str, dict], benches: dict[str, dict]) -> str:
    """The Markdown table (header + two rows per model)."""
    lines = [COLUMNS, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for folder in prune_dirs:
        lines += rows_for(folder, evals, benches)
    return "\n".join(lines) + "\n"


@click.command()
@click.option(
    "--prune", "prune_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False)
)
@click.option("--eval", "evals", multiple=True, required=True, help="unpruned=DIR and pruned=DIR.")
@click.option("--bench", "benches", multiple=True, required=True, help="unpruned=JSON and pruned=JSON.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Markdown file (else stdout).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False), help="PNG of the pruning curves.")
def main(prune_dirs, evals, benches, out, plot):
    """Table VI of the paper from pruning folders, evaluations and benchmarks."""
    folders = [Path(p) for p in prune_dirs]
    ev = {k: json.loads((p / "metrics.json").read_text()) for k, p in _pairs(evals, "--eval").items()}
    be = {k: json.loads(p.read_text()) for k, p in _pairs(benches, "--bench").items()}
    text = render(folders, ev, be)
    if plot:
        curves(folders, Path(plot))
    if out:
        Path(out).write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
