"""The node under load with faults: concurrent modalities, node SIGKILLs, a PACS outage, a full disk.

    python -m cxr_edge.benchmarks.serve_faults [--senders 4] [--per-sender 250] [--no-faults] \
        [--out FILE.json]
                                      [--results-md benchmarks/RESULTS.md]

Needs Debian's Orthanc (``make dicom-deps``). Builds ``senders x per-sender`` full-size (2560 x 2130)
12-bit DX images, each sender in its own compressed transfer syntax (JPEG 2000 lossless, JPEG-LS
lossless, RLE, JPEG extended 12-bit), from a few encoded kit images given new UIDs. A real Orthanc
(AE ``PACS``) receives the results (SR + Secondary Capture); ``cxr-edge serve`` runs in a child process.
Each sender is a modality: one association, every image sent until it is acknowledged with 0x0000;
an image answered with a failure status, or left without an answer by a dead association, is kept
and sent again (after 1 s; a refused association is retried every 0.5 s).

Faults, in this order. While receiving (share of images acknowledged): the node is SIGKILLed at 15%
and restarted; at 50% the node is restarted with ``min_free_mb`` above the disk's free space (what a
nearly full disk looks like to it: every C-STORE is answered 0xA700) for 8 s, then restarted
normally. While triaging (share of images with a triage record; receiving is several times faster
than triaging full-size compressed images on 2 cores, so the backlog is in ``pending/``): the PACS is
stopped at 30% (results queue in the outbox), the node is SIGKILLed again at 40% (with results in the
outbox and images pending) and restarted, and the PACS is started again at 50%.

Checked at the end, from the audit log and Orthanc's REST API: every image acknowledged to a sender
has exactly one triage record; every record that calls for results has them in Orthanc, under the
deterministic UIDs; Orthanc holds nothing else (duplicates) and misses nothing (lost).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import click
import numpy as np

from cxr_edge.benchmarks.peers import MISSING, Orthanc, free_port
from cxr_edge.benchmarks.results_md import section_markers, write_section
from cxr_edge.benchmarks.serve import ServerProcess, uid_of
from cxr_edge.serve.audit import read_records
from cxr_edge.serve.inbox import instance_key

SYNTAXES = ("j2k_lossless", "jpegls_lossless", "rle", "jpeg_extended")
_BASES = 4  # encoded kit images per syntax; the rest are copies with new UIDs


def build_corpus(folder: Path, senders: int, per_sender: int) -> list[list[Path]]:
    """``senders`` lists of ``per_sender`` full-size DICOMs, sender ``i`` in ``SYNTAXES[i % 4]``."""
    import pydicom
    from pydicom.uid import generate_uid

    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.imaging.reader import read_image
    from cxr_edge.imaging.synth import VARIANTS, build_dataset, encode, stored_values

    samples = load_samples()
    lists = []
    for s in range(senders):
        syntax = SYNTAXES[s % len(SYNTAXES)]
        bases = []
        for b in range(_BASES):
            image, _ = read_image(samples[(s * _BASES + b) % len(samples)].file)
            n = 1000 * s + b
            ds = build_dataset(stored_values(image, (2560, 2130), VARIANTS[0], seed=n), VARIANTS[0], n)
            if not encode(ds, syntax):
                raise click.UsageError(f"{syntax} cannot hold these images")
            path = folder / f"base-{s}-{b}.dcm"
            ds.save_as(path, enforce_file_format=True)
            bases.append(path)
        files = []
        for i in range(per_sender):
            ds = pydicom.dcmread(bases[i % _BASES])  # pixel data stays encoded
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.PatientID = f"LOAD-{s}-{i:04d}"
            path = folder / f"s{s}-{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        lists.append(files)
    return lists


class Modality(threading.Thread):
    """One sender on one association (see the module docstring)."""

    def __init__(self, name: str, files: list[Path], port: int):
        super().__init__(name=name, daemon=True)
        self.files, self.port = files, port
        self.acked: list[float] = []
        self.statuses: Counter = Counter()  # failure statuses answered (e.g. 0xA700)
        self.no_answer = 0  # C-STOREs left without a response (the association died)
        self.refused = 0  # associations that could not be opened (node down)
        self.associations = 0

    def run(self) -> None:
        from pydicom.filereader import read_file_meta_info
        from pynetdicom import AE

        from cxr_edge.serve.scu import NetworkError, associate

        ae = AE(ae_title="MODALITY")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        meta = read_file_meta_info(self.files[0])
        ae.add_requested_context(str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)])
        assoc, i = None, 0
        while i < len(self.files):
            if assoc is None or not assoc.is_established:
                try:
                    assoc = associate(ae, "127.0.0.1", self.port, "CXR_EDGE")
                    self.associations += 1
                except NetworkError:
                    self.refused += 1
                    time.sleep(0.5)
                    continue
            try:
                status = assoc.send_c_store(str(self.files[i]))
                code = int(status.Status) if status and "Status" in status else None
            except Exception:  # the association was aborted under us
                code = None
            if code == 0:
                self.acked.append(time.monotonic())
                i += 1
            elif code is None:
                self.no_answer += 1
                assoc.abort()
                assoc = None
                time.sleep(1.0)
            else:
                self.statuses[f"{code:#06x}"] += 1
                time.sleep(1.0)  # keep the image, send it again later
        if assoc is not None and assoc.is_established:
            assoc.release()


def _toml(path: Path, pacs: Orthanc, min_free_mb: int) -> Path:
    path.write_text(
        "[storage]\n"
        f"min_free_mb = {min_free_mb}\n"
        "[destination]\n"
        f'ae_title = "PACS"\nport = {pacs.dicom}\nkind = "both"\ntimeout_s = 10\n'
        "retry_s = 1.0\nretry_max_s = 4.0\nmax_tries = 1000\n"
    )
    return path


def _status(server: ServerProcess) -> dict:
    try:
        return json.loads(server.status.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _orthanc_uids(pacs: Orthanc) -> Counter:
    """SOP Instance UIDs in Orthanc, by modality (one C-FIND-like query over REST)."""
    found = pacs.post("/tools/find", {"Level": "Instance", "Query": {}, "Expand": True})
    return Counter(i["MainDicomTags"]["SOPInstanceUID"] for i in found)


def run(lists: list[list[Path]], workdir: Path, faults: bool) -> dict:
    """One burst; returns the numbers and the checks (see the module docstring)."""
    from pydicom.uid import generate_uid

    pacs = Orthanc(workdir / "orthanc", StorageCompression=False)
    port = free_port()
    free = shutil.disk_usage(workdir).free // 2**20
    normal = ServerProcess(workdir / "node", port, ("--config", str(_toml(workdir / "n.toml", pacs, 256))))
    full = ServerProcess(
        workdir / "node", port, ("--config", str(_toml(workdir / "f.toml", pacs, free + 100_000)))
    )
    events: list[tuple[str, float]] = []
    total = sum(len(f) for f in lists)
    server = normal.start()
    t0 = time.monotonic()
    senders = [Modality(f"modality-{i}", files, port) for i, files in enumerate(lists)]
    for s in senders:
        s.start()

    def acked() -> float:
        return sum(len(s.acked) for s in senders) / total

    def triaged() -> float:
        return len(normal.records()) / total

    def at(progress, share: float) -> None:
        deadline = time.monotonic() + 3600
        while progress() < share and time.monotonic() < deadline:
            time.sleep(0.2)

    def kill_restart(server: ServerProcess) -> ServerProcess:
        server.proc.kill()
        server.proc.wait()
        return normal.start()

    def event(name: str) -> None:
        events.append((name, round(time.monotonic() - t0, 1)))

    try:
        if faults:
            at(acked, 0.15)
            event(f"node SIGKILL at {acked():.0%} acknowledged")
            server = kill_restart(server)
            at(acked, 0.50)
            event(f"disk below min_free_mb at {acked():.0%} acknowledged")
            server.signal(signal.SIGTERM)
            server = full.start()
            time.sleep(8.0)
            server.signal(signal.SIGTERM)
            server = normal.start()
            event("disk free again")
            at(triaged, 0.30)
            event(f"PACS stopped at {triaged():.0%} triaged")
            pacs.stop()
            at(triaged, 0.40)
            event(f"node SIGKILL at {triaged():.0%} triaged (PACS down)")
            server = kill_restart(server)
            at(triaged, 0.50)
            event(f"PACS started at {triaged():.0%} triaged")
            pacs.start()
        for s in senders:
            s.join()
        t_received = max(max(s.acked) for s in senders) - t0
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            st = _status(server)
            if st.get("pending") == 0 and st.get("queue") == 0 and not (st.get("outbox") or {}).get("queued"):
                break
            time.sleep(0.5)
        t_triaged = time.monotonic() - t0
        server.signal(signal.SIGTERM)  # a graceful stop ends the redelivery round and writes its records
        records = server.records()
        late = list(read_records(server.audit, event="delivery"))
        counts = _status(server).get("counts", {})
        in_pacs = _orthanc_uids(pacs)
    finally:
        if server.proc and server.proc.poll() is None:
            server.proc.kill()
        pacs.stop()
    per_instance = Counter(r["instance"] for r in records)
    sent_keys = {instance_key(uid_of(f)) for files in lists for f in files}
    expected = set()
    for r in records:
        if r["delivery"]["status"] in ("sent", "queued"):
            for kind in r["delivery"]["kinds"]:
                expected.add(generate_uid(entropy_srcs=[r["instance"], r["bundle"]["sha256"], kind]))
    return {
        "images": total,
        "faults": [f"{name} (t = {t} s)" for name, t in events],
        "received_per_min": round(total / t_received * 60, 1),
        "triaged_per_min": round(len(records) / t_triaged * 60, 1),
        "received_s": round(t_received, 1),
        "triaged_s": round(t_triaged, 1),
        "acknowledged": sum(len(s.acked) for s in senders),
        "failure_statuses_answered": dict(sum((s.statuses for s in senders), Counter())),
        "sends_without_answer": sum(s.no_answer for s in senders),
        "associations_refused": sum(s.refused for s in senders),
        "associations": sum(s.associations for s in senders),
        "triage_records": len(records),
        "instances_with_one_record": sum(per_instance[k] == 1 for k in sent_keys),
        "instances_without_record": len(sent_keys - set(per_instance)),
        "instances_with_several_records": sum(c > 1 for c in per_instance.values()),
        "decisions": dict(Counter(r["decision"] for r in records)),
        "first_delivery": dict(Counter(r["delivery"]["status"] for r in records)),
        "late_deliveries": dict(Counter(r["status"] for r in late)),
        "late_queued_s": {
            "p50": round(float(np.median([r["queued_s"] for r in late])), 1) if late else None,
            "max": max((r["queued_s"] for r in late), default=None),
        },
        "worker_ms_p50_by_syntax": {
            syntax: round(float(np.median([r["timings_ms"]["total"] for r in rs])), 1)
            for syntax, rs in _by_syntax(records).items()
        },
        "delivery_ms_p50": {
            stage: round(float(np.median(values)), 1) if values else None
            for stage in ("results", "send")
            for values in [[r["timings_ms"][stage] for r in records if stage in r["timings_ms"]]]
        },
        "results_expected": len(expected),
        "results_in_orthanc": sum(in_pacs.values()),
        "results_lost": len(expected - set(in_pacs)),
        "results_unexpected": len(set(in_pacs) - expected),
        "node_counts_last_run": counts,
    }


def _by_syntax(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault((r["image"] or {}).get("transfer_syntax", "unreadable"), []).append(r)
    return out


def section_name(result: dict) -> str:
    """``serve-faults`` for a run with faults, ``serve-load`` for one without."""
    return "serve-faults" if result["run"]["faults"] else "serve-load"


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def render(result: dict) -> str:
    """The RESULTS.md section of one run."""
    run, name = result["run"], section_name(result)
    faulted = name == "serve-faults"
    title = "with faults" if faulted else "without faults"
    fails = ", ".join(f"{k} x{v}" for k, v in run["failure_statuses_answered"].items()) or "none"
    begin, end = section_markers(name)
    lines = [
        begin,
        f"## DICOM node under load {title}: {run['images']} full-size images, real Orthanc as PACS",
        "",
        f"{result['machine']}; {len(result['syntaxes'])} modalities at once, one association each "
        f"({', '.join(result['syntaxes'])}); 2560 x 2130 12-bit DX, mean {result['mean_file_mib']} MiB; "
        "default bundle; results = SR + Secondary Capture per image.",
        "",
        "| received (acknowledged) | triaged and delivered | acknowledged | failure statuses answered "
        "| triage records: exactly one / none / several | results expected / in Orthanc / lost / extra |",
        "|---|---|---:|---|---|---|",
        f"| {run['received_s']} s → **{run['received_per_min']}/min** | {run['triaged_s']} s → "
        f"**{run['triaged_per_min']}/min** | {run['acknowledged']} | {fails} | "
        f"{run['instances_with_one_record']} / {run['instances_without_record']} / "
        f"{run['instances_with_several_records']} | {run['results_expected']} / {run['results_in_orthanc']}"
        f" / {run['results_lost']} / {run['results_unexpected']} |",
        "",
    ]
    if faulted:
        lines += ["Faults: " + "; ".join(run["faults"]) + ".", ""]
        late = run["late_queued_s"]
        lines += [
            f"First delivery: {_counts(run['first_delivery'])}; delivered later from the outbox: "
            f"{_counts(run['late_deliveries'])} (queued p50 {late['p50']} s, max {late['max']} s).",
            "",
        ]
    workers = ", ".join(f"{k} {v}" for k, v in run["worker_ms_p50_by_syntax"].items())
    delivery = run.get("delivery_ms_p50") or {}
    if delivery:
        workers += f"; then building the SR and SC {delivery['results']}, sending them {delivery['send']}"
    flag = "" if faulted else " --no-faults"
    lines += [
        f"Worker time per image, p50 ms (the receivers, the worker and Orthanc share the cores): {workers}.",
        "",
        f"Command: `python -m cxr_edge.benchmarks.serve_faults{flag} --out benchmarks/results/"
        f"{name.replace('-', '_')}.json --results-md benchmarks/RESULTS.md`",
        end,
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--senders", default=4, show_default=True, type=click.IntRange(1, 16))
@click.option("--per-sender", default=250, show_default=True, type=click.IntRange(10))
@click.option("--no-faults", is_flag=True, help="The same burst without faults (for comparison).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
@click.option(
    "--results-md", default=None, type=click.Path(dir_okay=False, path_type=Path),
    help="Also replace this run's section of RESULTS.md.",
)  # fmt: skip
@click.option(
    "--render-only", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Write the RESULTS.md section of an earlier run's JSON (needs --results-md); runs nothing.",
)  # fmt: skip
def main(
    senders: int,
    per_sender: int,
    no_faults: bool,
    out: str | None,
    results_md: Path | None,
    render_only: Path | None,
) -> None:
    """Load the node with concurrent modalities and faults; check exactly-once records and results."""
    if render_only is not None:
        if results_md is None:
            raise click.UsageError("--render-only needs --results-md")
        previous = json.loads(render_only.read_text())
        write_section(results_md, render(previous), name=section_name(previous))
        return
    if MISSING:
        raise click.UsageError(MISSING)
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "syntaxes": list(SYNTAXES[:senders])}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp) / "dicom"
        folder.mkdir()
        t = time.perf_counter()
        lists = build_corpus(folder, senders, per_sender)
        result["corpus_s"] = round(time.perf_counter() - t, 1)
        sizes = [f.stat().st_size for files in lists for f in files]
        result["mean_file_mib"] = round(float(np.mean(sizes)) / 2**20, 2)
        result["run"] = run(lists, Path(tmp) / "run", faults=not no_faults)
    text = json.dumps(result, indent=2)
    click.echo(text)
    if out:
        Path(out).write_text(text + "\n")
    if results_md:
        write_section(results_md, render(result), name=section_name(result))


if __name__ == "__main__":
    main()
