"""Named bundles (cxr_edge.bundle.presets): `--bundle NAME` and `cxr-edge bundle list`."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle, default_bundle_path
from cxr_edge.bundle.presets import PRESETS, resolve
from cxr_edge.cli import main


def test_every_preset_loads_and_default_is_the_default_bundle():
    assert set(PRESETS) >= {"default", "paper"}
    for preset in PRESETS.values():
        assert Bundle.load(preset.name).root == preset.path
    assert PRESETS["default"].path == default_bundle_path()


def test_a_folder_of_the_same_name_wins_over_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(default_bundle_path(), tmp_path / "paper")
    assert (
        resolve("paper") == tmp_path / "paper" or resolve("paper").resolve() == (tmp_path / "paper").resolve()
    )
    assert resolve("no-such-bundle").name == "no-such-bundle"  # loading it says "not a bundle" by name
    assert resolve(None) is None


def test_bundle_list_shows_what_a_caller_needs():
    result = CliRunner().invoke(main, ["bundle", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["default"]["input_size"] == [128, 128] and rows["default"]["labels"] == [
        "covid",
        "normal",
        "pneumonia",
    ]
    assert rows["paper"]["segmenter"] and "LOSO" in rows["paper"]["card"]
    # The paper's system crops to the lungs; the default classifies the full image and its segmenter
    # only checks where the evidence lies.
    assert rows["paper"]["segmenter_role"] == "crop" and rows["default"]["segmenter_role"] == "evidence"
    predicted = CliRunner().invoke(main, ["bundle", "info", "--bundle", "paper"])
    assert (
        predicted.exit_code == 0
        and "cxr-edge-paper" in predicted.output
        and "crop margin" in predicted.output
    )
    default = CliRunner().invoke(main, ["bundle", "info", "--bundle", "default"])
    assert default.exit_code == 0 and "role evidence" in default.output
