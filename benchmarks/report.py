"""``python -m cxr_edge.benchmarks.report``: RESULTS.md (and plots) from benchmark JSON files.

    python -m cxr_edge.benchmarks.report benchmarks/results/*.json --out benchmarks/RESULTS.md

Each JSON is what ``cxr-edge bench --out`` writes. The report states the machine, versions, date and
commands, and tabulates end-to-end and per-stage latency, memory, size, parameters and MACs, and the
speed-up over the unpruned fp32 Keras baseline measured in the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cxr_edge.benchmarks.results_md import read_section

#: Sections other benchmarks write into RESULTS.md (kept as they were when the report is rewritten).
KEPT_SECTIONS = ("decode", "batch", "serve-faults", "serve-load", "damage")

NOTE = (
    "This CPU has AVX-512 VNNI (and AMX where the machine has it), which make int8 inference faster here "
    "than on phone CPUs; scale by the MAC counts to estimate another device. Timings are medians over "
    "repeated passes after a warm-up, single-threaded unless stated, measured while the machine may be "
    "shared: compare ratios within one file, not absolute numbers across files. The Keras baseline runs "
    "each unpruned fp32 model through `predict_on_batch` (compiled), one image at a time, after the same "
    "decode and preprocessing; the speed-up is baseline p50 / bundle p50, end to end, measured in one "
    "invocation. Browser rows come from `web_demo/bench.mjs` (LiteRT.js WASM in headless Chromium)."
)


def render(results: list[tuple[str, dict]], commands: dict[str, str], plots: list[str] | None = None) -> str:
    """The Markdown report for ``[(name, bench JSON)]``."""
    first = results[0][1]
    m = first["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; ISA: {', '.join(m['isa']) or 'n/a'}; {m['platform']}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in first['versions'].items())}.",
        "",
        NOTE,
        "",
        "## End to end (decode -> [segment] -> preprocess -> classify -> combine -> heat map)",
        "",
        "| bundle | date | size (MiB) | p50 ms | p95 ms | img/s | peak RSS (MiB) | Keras baseline p50 ms | "
        "baseline RSS (MiB) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        e, base = r["end_to_end"], r.get("baseline")
        cells = [
            name,
            r["created"][:10],
            f"{r['bundle_mb']:.2f}",
            f"{e['p50_ms']:.1f}",
            f"{e['p95_ms']:.1f}",
            f"{e['throughput_img_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        if base:
            cells += [
                f"{base['end_to_end']['p50_ms']:.1f}",
                f"{base['peak_rss_mb']:.0f}",
                f"{r['speedup_vs_baseline']:.1f}x",
            ]
        else:
            cells += ["n/a"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Stages (p50 ms)", ""]
    for name, r in results:
        lines += [f"**{name}**: " + ", ".join(f"{s} {p['p50_ms']:.2f}" for s, p in r["stages"].items()), ""]
    lines += [
        "## Models",
        "",
        "| bundle | model | variant | file (MiB) | params | params unpruned | GMACs "
        "| end to end with it alone, p50 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        for model, info in r["models"].items():
            alone = r.get("variants", {}).get(model, {}).get("end_to_end", {}).get("p50_ms")
            lines.append(
                f"| {name} | {model} | {info['quant']} | {info['file_mb']:.2f} | {info['params']:,} | "
                f"{(info['params_unpruned'] or info['params']):,} | "
                f"{(info['macs'] or 0) / 1e9:.2f} | {'n/a' if alone is None else f'{alone:.1f}'} |"
            )
        if r.get("segmenter"):
            s = r["segmenter"]
            lines.append(
                f"| {name} | {s['name']} (segmenter) | | {s['file_mb']:.2f} | | | {s['macs'] / 1e9:.2f} | |"
            )
    lines += [
        "",
        "## Runtime alone (no TensorFlow)",
        "",
        "| bundle | import ms | RSS after import (MiB) | init ms | RSS with models loaded (MiB) "
        "| peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        one = r["by_threads"][next(iter(r["by_threads"]))]
        lines.append(
            f"| {name} | {one.get('import_ms', 0):.0f} | {one.get('rss_after_import_mb', 0):.0f} | "
            f"{one['init_ms']:.0f} | {_mb(one.get('rss_after_init_mb'))} | {one['peak_rss_mb']:.0f} |"
        )
    if any(len(r["by_threads"]) > 1 for _, r in results):
        lines += ["", "## Threads", "", "| bundle | threads | p50 ms |", "|---|---:|---:|"]
        for name, r in results:
            lines += [
                f"| {name} | {t} | {v['end_to_end']['p50_ms']:.1f} |" for t, v in r["by_threads"].items()
            ]
    if plots:
        lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]]
    if commands:
        lines += ["", "## Commands", "", "```sh", *commands.values(), "```"]
    return "\n".join(lines) + "\n"


def pareto_points(results: list[tuple[str, dict]]) -> list[tuple[str, float, float]]:
    """``(label, latency ms, validation macro AUC)`` of every model timed alone that has a recorded AUC."""
    points = []
    for name, r in results:
        for model, info in r["models"].items():
            alone = r.get("variants", {}).get(model, {}).get("stages", {}).get(model, {}).get("p50_ms")
            if alone is not None and info.get("val_auc_macro") is not None:
                points.append((f"{model} ({name})", alone, info["val_auc_macro"]))
    return points


def pareto_front(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The points no other point beats on both latency (lower) and AUC (higher), fastest first."""
    front, best = [], -1.0
    for p in sorted(points, key=lambda p: (p[1], -p[2])):
        if p[2] > best:
            front.append(p)
            best = p[2]
    return front


def write_plots(results: list[tuple[str, dict]], folder: Path) -> list[str]:
    """``pareto.png`` (model latency vs validation AUC) and ``memory.png`` (RSS per stage); their names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the runtime-only install has no matplotlib: tables only
        return []
    written = []
    points = pareto_points(results)
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, ms, auc in points:
            ax.scatter(ms, auc, s=18)
            ax.annotate(
                label.split(" (")[0], (ms, auc), fontsize=6, xytext=(3, 2), textcoords="offset points"
            )
        front = pareto_front(points)
        ax.plot([p[1] for p in front], [p[2] for p in front], "k--", lw=1, label="Pareto front")
        ax.set(xscale="log", xlabel="model alone, p50 ms (LiteRT, 1 thread)", ylabel="validation macro AUC")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "pareto.png", dpi=110)
        plt.close(fig)
        written.append("pareto.png")
    # (name, result, its first thread count's measurement)
    timed = [(n, r, r["by_threads"][next(iter(r["by_threads"]))]) for n, r in results if "by_threads" in r]
    if timed:
        names = [n for n, _, _ in timed]
        stages = {
            "after import": [one.get("rss_after_import_mb", 0) for _, _, one in timed],
            "models loaded": [one.get("rss_after_init_mb", 0) for _, _, one in timed],
            "peak (inference)": [one["peak_rss_mb"] for _, _, one in timed],
            "Keras baseline peak": [r.get("baseline", {}).get("peak_rss_mb", 0) for _, r, _ in timed],
        }
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.2
        for i, (stage, values) in enumerate(stages.items()):
            ax.bar([j + i * width for j in range(len(names))], values, width, label=stage)
        ax.set_xticks(
            [j + 1.5 * width for j in range(len(names))], names, rotation=20, ha="right", fontsize=7
        )
        ax.set_ylabel("resident memory (MiB)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "memory.png", dpi=110)
        plt.close(fig)
        written.append("memory.png")
    return written


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Markdown file to write (the committed one is benchmarks/RESULTS.md: name it on purpose).",
)
def main(files, out):
    """Write RESULTS.md from `cxr-edge bench` JSON files (a `command` key in each is quoted)."""
    results = [(Path(f).stem, json.loads(Path(f).read_text())) for f in files]
    commands = {name: r["command"] for name, r in results if r.get("command")}
    plots = write_plots(results, Path(out).parent)
    # The sections other benchmarks write (decode, batch, serve_faults) are kept as they were.
    old = Path(out).read_text() if Path(out).is_file() else ""
    kept = ""
    for name in KEPT_SECTIONS:
        section = read_section(old, name)
        if section is not None:
            kept += "\n" + section + "\n"
    Path(out).write_text(render(results, commands, plots) + kept)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
