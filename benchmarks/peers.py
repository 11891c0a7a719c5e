"""Real DICOM peers for tests and benchmarks: Debian's dcmtk tools and a throwaway Orthanc.

``make test`` installs them with apt (mk/dicom.mk); :data:`MISSING` says why they cannot be used
here, or is empty. Orthanc runs on free loopback ports with temporary storage, an HTTP API without
authentication (loopback only) and the AE title ``PACS``; it can be stopped and started again on the
same ports and storage (a PACS outage in the middle of a burst).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

STORESCU, ECHOSCU = shutil.which("storescu"), shutil.which("echoscu")
ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")  # Debian's place
MISSING = (
    ""
    if STORESCU and ECHOSCU and ORTHANC
    else "dcmtk (storescu, echoscu) and Orthanc are not installed (make test installs them with apt)"
)


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """A throwaway Orthanc (see the module docstring); started by the constructor.

    Args:
        folder: Storage, index, configuration and log.
        aet: Its AE title.
        **options: More Orthanc configuration keys (e.g. ``DicomTlsEnabled``).
    """

    def __init__(self, folder: Path, aet: str = "PACS", **options):
        self.folder = Path(folder)
        self.http, self.dicom = free_port(), free_port()
        self.aet = aet
        cfg = {
            "Name": "cxr-edge-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": [],
            "StableAge": 1,
            **options,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "orthanc.json"
        self.config.write_text(json.dumps(cfg))
        self.logfile = self.folder / "orthanc.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self, timeout: float = 30.0) -> Orthanc:
        """Starts Orthanc (again) and waits until its REST API answers."""
        with open(self.logfile, "a") as log:
            self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start: " + self.logfile.read_text()[-2000:])

    def get(self, route: str):
        """GET on the REST API: parsed JSON, or the raw body."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{route}", timeout=30) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, route: str, body: dict):
        """POST of a JSON body on the REST API; the parsed JSON answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}{route}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """Stops Orthanc (SIGTERM, then SIGKILL after 15 s); its storage stays."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
