"""Where an artefact came from: git commit, package versions, timestamps."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def git_commit(path: str | Path = ".") -> str:
    """The commit of the repository holding ``path`` (``+dirty`` when uncommitted changes exist).

    Returns ``"unknown"`` outside a git checkout, so packaged installs still work.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (``"absent"`` for those not installed), plus Python."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def now_utc() -> str:
    """Current UTC time in ISO 8601, seconds precision."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
