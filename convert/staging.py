"""Writing a bundle folder all at once: build it beside its destination, then rename.

A conversion takes minutes and can fail at a gate; a half-written bundle must never be left where a
runtime would load it, and a previous bundle at ``out`` is only replaced once the new one is complete.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(out: Path, prefix: str = ".bundle-") -> Iterator[Path]:
    """A temporary folder beside ``out`` that replaces ``out`` when the block completes.

    On an exception the temporary folder is removed and ``out`` is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)  # beside it: a rename across file systems fails
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
