"""The input checks run wherever a bundle classifies: predict, batch and the DICOM node give one verdict."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import InputRejectedError
from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.serve import Triage
from cxr_edge.serve.config import TriageConfig

REASON = "view position LL is not frontal (accepted: PA, AP)"


@pytest.fixture(scope="module")
def lateral(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lateral")
    return write_radiograph(
        folder / "lateral.dcm", stored_from_image(load_samples()[0].file), ViewPosition="LL"
    )


def test_predict_batch_and_node_refuse_a_lateral_view_alike(lateral, tmp_path):
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(main, ["predict", str(lateral), "--out", str(out)])
    assert result.exit_code == 2
    with open(out, newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "error" and row["error"] == f"InputRejectedError: view: {REASON}"

    pq = pytest.importorskip("pyarrow.parquet")
    batch = CliRunner().invoke(main, ["batch", str(lateral), "--out", str(tmp_path / "parts")])
    assert batch.exit_code == 2
    assert pq.read_table(tmp_path / "parts").column("error").to_pylist() == [row["error"]]

    record = Triage(TriageConfig())(lateral).record
    assert (record["decision"], record["check"], record["reason"]) == ("rejected", "view", REASON)


def test_checks_can_be_switched_off(lateral, tmp_path):
    with pytest.raises(InputRejectedError) as info:
        Predictor().predict_file(lateral)
    assert info.value.check == "view" and info.value.reason == REASON
    assert Predictor(checks=None).predict_file(lateral).label
    out = tmp_path / "rows.csv"
    assert (
        CliRunner().invoke(main, ["predict", str(lateral), "--no-checks", "--out", str(out)]).exit_code == 0
    )
