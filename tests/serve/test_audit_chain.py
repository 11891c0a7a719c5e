"""The audit log's hash chain (cxr_edge.serve.audit): every record links to the one before it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.serve.audit import GENESIS, AuditLog, chain_head, read_records, verify_chain


def _log(path, n=5):
    log = AuditLog(path)
    for i in range(n):
        log.append({"instance": f"{i:064x}", "decision": "classified", "label": "normal"})
    log.close()
    return path


def _verify(path):
    return CliRunner().invoke(main, ["serve", "verify-audit", str(path)])


def test_an_intact_log_verifies_and_survives_a_restart(tmp_path):
    path = _log(tmp_path / "audit.jsonl", 3)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["prev"] == GENESIS and first["schema"] == 4
    head = chain_head(path)
    # A restart continues the chain from the last record.
    log = AuditLog(path)
    log.append({"instance": "f" * 64, "decision": "refer"})
    log.close()
    assert json.loads(path.read_text().splitlines()[-1])["prev"] == head
    result = verify_chain(path)
    assert result["broken"] is None and result["linked"] == 4 and result["head"] == chain_head(path)
    ok = _verify(path)
    assert ok.exit_code == 0 and f"head {result['head']}" in ok.output


@pytest.mark.parametrize("edit", ["delete", "insert", "swap", "change", "garble"])
def test_any_edit_but_the_last_record_breaks_the_next_link(tmp_path, edit):
    path = _log(tmp_path / "audit.jsonl", 5)
    lines = path.read_text().splitlines()
    if edit == "delete":
        del lines[2]
    elif edit == "insert":
        lines.insert(2, lines[1])
    elif edit == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif edit == "change":
        lines[2] = lines[2].replace('"normal"', '"covid"')
    else:
        lines[2] = lines[2][:40]  # no longer a record: the next one still links to the real one
    path.write_text("\n".join(lines) + "\n")
    result = verify_chain(path)
    assert result["broken"] is not None and result["broken"]["line"] in (2, 3, 4), result
    bad = _verify(path)
    assert bad.exit_code == 1 and "BROKEN at line" in bad.output


def test_a_line_torn_by_a_crash_is_skipped_and_the_chain_goes_on(tmp_path):
    path = _log(tmp_path / "audit.jsonl", 2)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"schema":4,"event":"triage","instance":"ab')  # the crash
    log = AuditLog(path)  # starts the next record on a fresh line, linked to the last complete one
    log.append({"instance": "c" * 64, "decision": "classified"})
    log.close()
    result = verify_chain(path)
    assert result["broken"] is None and result["torn"] == 1 and result["linked"] == 3
    assert len(list(read_records(path))) == 3


def test_an_old_unlinked_log_is_continued_and_then_must_stay_linked(tmp_path):
    path = tmp_path / "audit.jsonl"
    old = [{"schema": 3, "event": "triage", "instance": f"{i:064x}"} for i in range(2)]
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in old))
    _log(path, 2)
    result = verify_chain(path)
    assert result["broken"] is None and result["unlinked"] == 2 and result["linked"] == 2
    lines = path.read_text().splitlines()
    record = json.loads(lines[3])
    del record["prev"]  # stripping a link after the chain began is a break
    lines[3] = json.dumps(record, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    assert verify_chain(path)["broken"]["line"] == 4
