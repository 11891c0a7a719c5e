"""Known start-up notices of native libraries kept off the terminal (``--verbose`` shows them).

LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." the first time a
model is loaded, and TensorFlow's oneDNN and absl notices arrive when it is imported; neither goes
through Python, and no setting turns them off (``TF_CPP_MIN_LOG_LEVEL`` does not reach them). While
such a library starts, :func:`without_notices` sends file descriptor 2 to a temporary file and then
writes back every line except the listed notices, so nothing else written meanwhile is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: LiteRT, once per process.
LITERT_NOTICES = (b"INFO: Created TensorFlow Lite XNNPACK delegate", b"INFO: Replacing ")
#: TensorFlow's import (absl before its log is initialised, oneDNN, the CPU feature guard).
TENSORFLOW_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog()",
    b"To enable the following instructions:",
    *(b"I0000 ", b"W0000 "),  # absl-formatted INFO/WARNING lines written before TF's log is set up
)


def verbose() -> bool:
    """Whether ``cxr-edge --verbose`` (or a DEBUG level on the ``cxr_edge`` logger) asked to see them."""
    return logging.getLogger("cxr_edge").isEnabledFor(logging.DEBUG)


@contextmanager
def without_notices(notices: tuple[bytes, ...]) -> Iterator[None]:
    """Runs the body with stderr's native lines that start with one of ``notices`` dropped.

    Does nothing under ``--verbose``, or where file descriptor 2 cannot be redirected.
    """
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line for line in captured.read().splitlines(keepends=True) if not line.startswith(notices)
            ]
            if kept:
                os.write(2, b"".join(kept))
