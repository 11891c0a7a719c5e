"""A screenshot of what the node files in a PACS: the study in a throwaway Orthanc, SC preview and SR.

    python -m cxr_edge.benchmarks.orthanc_screenshot --out docs/img/orthanc_result.png

Starts a throwaway Orthanc (:class:`cxr_edge.benchmarks.peers.Orthanc`) and the node in this process
(loopback, free ports, temporary inbox and audit log, destination kind ``both``), synthesises one
full-size DICOM (2560 x 2130, 12 bit, :mod:`cxr_edge.imaging.synth`) from the first kit sample the
shipped bundle classifies with a finding (another one if none), sends it with the node's SCU and waits for the
results, and stores the source image in Orthanc too (as the modality would have). It then writes a
small local HTML page from Orthanc's REST API: the study's series as Orthanc lists them, the Secondary
Capture as Orthanc renders it (``/instances/<id>/preview``) and the coded SR read back from Orthanc
(dcmtk's ``dsrdump`` tree, shortened). Headless Chromium takes the screenshot; it is shrunk (colours
quantised by OpenCV's k-means) when it would exceed ``--max-kb``.
The patient in the image is synthetic ("Demo^Patient").
"""

from __future__ import annotations

import html
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import click
import numpy as np

from cxr_edge.benchmarks.peers import Orthanc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DSRDUMP = shutil.which("dsrdump")


def synthesise(folder: Path, triage) -> tuple[Path, dict]:
    """A full-size DX of the first kit sample classified with a finding (else the first), and its record."""
    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.imaging.reader import read_image
    from cxr_edge.imaging.synth import VARIANTS, build_dataset, stored_values

    chosen = None
    for n, sample in enumerate(load_samples()[:12]):
        image, _ = read_image(sample.file)
        ds = build_dataset(stored_values(image, (2560, 2130), VARIANTS[0], seed=n), VARIANTS[0], 900 + n)
        ds.PatientID, ds.PatientName, ds.PatientSex = "DEMO-0001", "Demo^Patient", "O"
        ds.AccessionNumber, ds.StudyID, ds.StudyDescription = "DEMO-ACC-1", "1", "XR CHEST PA (synthetic)"
        ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.SeriesDescription = "20250101", "090000", 1, "PA"
        path = folder / f"sample{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        record = triage(path).record
        if chosen is None:
            chosen = (path, record)
        if record["decision"] == "classified" and record["label"] != "normal":
            return path, record
    return chosen


def serve_config(folder: Path, pacs: Orthanc):
    from cxr_edge.serve.config import DestinationConfig, NodeConfig, ServeConfig, StorageConfig

    return ServeConfig(
        node=NodeConfig(port=0, allow=("MODALITY",), heartbeat_s=0.1, drain_s=1.0),
        storage=StorageConfig(inbox=str(folder / "inbox"), audit=str(folder / "audit.jsonl"), queue_size=4),
        destination=DestinationConfig(ae_title=pacs.aet, port=pacs.dicom, kind="both", timeout_s=60),
    )


def page(pacs: Orthanc, study_id: str) -> str:
    """HTML: the study's series (Orthanc's listing), the SC preview, the SR tree as Orthanc returns it."""
    from pydicom import dcmread

    study = pacs.get(f"/studies/{study_id}")
    tags = study["MainDicomTags"]
    patient = study.get("PatientMainDicomTags", {})
    rows, preview, tree = [], "", ""

    def esc(value) -> str:
        return html.escape(str(value or ""))

    series = sorted(
        (pacs.get(f"/series/{s}") for s in study["Series"]),
        key=lambda s: int(s["MainDicomTags"].get("SeriesNumber", "0") or 0),
    )
    for s in series:
        m = s["MainDicomTags"]
        cells = (m.get("SeriesNumber", ""), m.get("Modality", ""), m.get("SeriesDescription", ""))
        cells += (len(s["Instances"]),)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
        instance = s["Instances"][0]
        if m.get("Modality") == "OT":
            preview = f"http://127.0.0.1:{pacs.http}/instances/{instance}/preview"
        if m.get("Modality") == "SR":
            tree = sr_tree(dcmread(io.BytesIO(pacs.get(f"/instances/{instance}/file"))))
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font: 14px/1.35 sans-serif; margin: 12px; background: #f4f5f7; color: #222; }}
h1 {{ font-size: 17px; margin: 0 0 8px; }} h2 {{ font-size: 14px; margin: 10px 0 4px; }}
.wrap {{ display: flex; gap: 14px; }} .img {{ flex: none; }}
.img img {{ height: 930px; border: 1px solid #999; background: #000; }}
table {{ border-collapse: collapse; background: #fff; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }} th {{ background: #e3e6ea; }}
pre {{ font: 11px/1.3 monospace; background: #fff; border: 1px solid #ccc; padding: 6px; margin: 0;
      white-space: pre-wrap; }}
</style></head><body>
<div class="wrap"><div class="img"><img src="{preview}"></div><div>
<h1>Orthanc study: {esc(tags.get("StudyDescription"))}</h1>
<div>Patient {esc(patient.get("PatientName"))} ({esc(patient.get("PatientID"))}),
accession {esc(tags.get("AccessionNumber"))}, study date {esc(tags.get("StudyDate"))}</div>
<h2>Series of the study</h2>
<table><tr><th>#</th><th>Modality</th><th>Description</th><th>Instances</th></tr>{"".join(rows)}</table>
<h2>Series 9901: Comprehensive SR (TID 1500), as stored by Orthanc (dcmtk dsrdump)</h2>
<pre>{html.escape(tree)}</pre></div></div></body></html>"""


def sr_tree(ds) -> str:
    """dsrdump's content tree of the SR (codes of concept names left out, for width), else a summary."""
    from cxr_edge.serve.report import read_report

    if DSRDUMP is None:
        return "\n".join(f"{k}: {v}" for k, v in read_report(ds).items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sr.dcm"
        ds.save_as(path, enforce_file_format=True)
        out = subprocess.run([DSRDUMP, "-Ph", str(path)], capture_output=True, text=True, timeout=60)
    keep = []
    for line in out.stdout.splitlines():
        if "UIDREF" in line or "Image Library Group" in line:
            continue
        keep.append(line.replace('(,,"', '("').replace("  ", " ", 1))
    return "\n".join(line for line in keep if line.strip())


def upload(pacs: Orthanc, path: Path) -> None:
    """Stores a DICOM file in Orthanc over REST (``POST /instances``)."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{pacs.http}/instances", data=path.read_bytes(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        answer.read()


def screenshot(url: str, out: Path, size: tuple[int, int], folder: Path) -> None:
    if CHROMIUM is None:
        raise click.ClickException("chromium is not installed (make test installs it with apt)")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={folder / 'chromium'}", f"--screenshot={out}",
        f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=8000", url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not out.is_file():
        raise click.ClickException(f"chromium failed: {done.stderr[-2000:]}")


def shrink(path: Path, max_kb: int) -> None:
    """Re-encodes the PNG with a k-means palette (fewer colours each round) until it fits ``max_kb``."""
    import cv2

    if path.stat().st_size <= max_kb * 1024:
        return
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    pixels = image.reshape(-1, 3).astype(np.float32)
    for k in (128, 64, 32):
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
        _, labels, centres = cv2.kmeans(pixels, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
        quantised = centres.astype(np.uint8)[labels.ravel()].reshape(image.shape)
        cv2.imwrite(str(path), quantised, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if path.stat().st_size <= max_kb * 1024:
            return


@click.command()
@click.option(
    "--out", default="docs/img/orthanc_result.png", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--explorer-out",
    default="docs/img/orthanc_explorer.png",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Also a screenshot of Orthanc Explorer's own page of the study.",
)
@click.option("--width", default=1400, show_default=True)
@click.option("--height", default=1000, show_default=True)
@click.option("--max-kb", default=400, show_default=True, help="Quantise the PNG's colours above this size.")
def main(out: Path, explorer_out: Path, width: int, height: int, max_kb: int) -> None:
    """Screenshot of the node's results (SR + Secondary Capture) filed in a throwaway Orthanc."""
    from cxr_edge.serve import Node, Triage
    from cxr_edge.serve.audit import read_records
    from cxr_edge.serve.config import TriageConfig
    from cxr_edge.serve.scu import send_files

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pacs = Orthanc(folder / "orthanc")
        try:
            triage = Triage(TriageConfig())
            path, _ = synthesise(folder, triage)
            cfg = serve_config(folder, pacs)
            node = Node(cfg, triage).start(worker=True)
            try:
                statuses = send_files([path], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=60)
                if statuses != [0] or not node.wait_idle(120):
                    raise click.ClickException(f"the node did not take the image: {statuses}")
            finally:
                node.stop()
            (record,) = read_records(folder / "audit.jsonl")
            if record["delivery"]["status"] != "sent":
                raise click.ClickException(f"results not delivered: {record['delivery']}")
            upload(pacs, path)  # the modality's own copy: the study then lists the source series too
            (study,) = pacs.get("/studies")
            html_file = folder / "page.html"
            html_file.write_text(page(pacs, study), encoding="utf-8")
            screenshot(html_file.as_uri(), out, (width, height), folder)
            explorer = f"http://127.0.0.1:{pacs.http}/app/explorer.html#study?uuid={study}"
            screenshot(explorer, explorer_out, (width, 700), folder)
        finally:
            pacs.stop()
    shrink(out, max_kb)
    shrink(explorer_out, max_kb)
    click.echo(f"{out}: {out.stat().st_size // 1024} KB ({record['decision']} {record['label'] or ''})")


if __name__ == "__main__":
    main()
