"""Table VI generator: reads pruning folders, evaluations and benchmarks, and says what is missing."""

from __future__ import annotations

import json

import click
import pytest

from cxr_edge.benchmarks.pruning_table import curves, render

ROWS = "step,fraction,params,macs,val_accuracy,val_auc_macro,val_mcc,int8_latency_ms,folded_constants\n"


def _metrics(acc):
    return {
        "accuracy": acc,
        "accuracy_ci": [acc - 0.1, acc + 0.05],
        "auc_macro": 0.9,
        "auc_macro_ci": None,
        "f1_macro": 0.8,
        "mcc": 0.7,
    }


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "prune" / "mnet-stage2"
    (folder / "best").mkdir(parents=True)
    best = {
        "pruned_from": "runs/zoo/mnet-stage2",
        "params": 750,
        "params_unpruned": 1000,
        "macs": 6e6,
        "macs_unpruned": 8e6,
        "pruned_fraction": 0.25,
        "pruning_step": 5,
        "pruning_selection": {"rule": "no_loss", "tolerance": 0.0},
    }
    (folder / "best" / "run.json").write_text(json.dumps(best))
    (folder / "prune_results.csv").write_text(
        ROWS + "0,0.0,1000,8000000,0.7,0.9,0.5,2.0,0\n1,0.25,750,6000000,0.7,0.91,0.5,1.5,0\n"
    )
    evals = {
        "unpruned": {"models": {"mnet-stage2-fp32": _metrics(0.8)}},
        "pruned": {"models": {"mnet-stage2-pruned-fp32": _metrics(0.75)}},
    }

    def bench(stem, ms):
        names = [f"{stem}-fp32", f"{stem}-int8"]
        return {
            "models": {n: {"file_mb": 1.0} for n in names},
            "variants": {n: {"stages": {n: {"p50_ms": ms}}} for n in names},
        }

    return folder, evals, {"unpruned": bench("mnet-stage2", 4.0), "pruned": bench("mnet-stage2-pruned", 3.0)}


def test_rows_pair_unpruned_and_pruned_members(inputs, tmp_path):
    folder, evals, benches = inputs
    text = render([folder], evals, benches)
    unpruned, pruned = text.splitlines()[2:]
    assert (
        "| 1,000 |" in unpruned
        and "8.0 |" in unpruned
        and "4.00" in unpruned
        and "0.800 (0.700-0.850)" in unpruned
    )
    assert "pruned 25% (step 5, no_loss)" in pruned and "| 750 | 25.0% |" in pruned and "3.00" in pruned
    curves([folder], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_a_missing_member_is_named(inputs):
    folder, evals, benches = inputs
    del evals["pruned"]["models"]["mnet-stage2-pruned-fp32"]
    with pytest.raises(click.ClickException, match="mnet-stage2-pruned-fp32"):
        render([folder], evals, benches)
