"""Where a batch runs: in this process (``local``) or on Ray Data (``ray``, the ``[scale]`` extra)."""

from __future__ import annotations

from enum import StrEnum


class Backend(StrEnum):
    """Where a batch runs (``cxr-edge batch --backend``)."""

    LOCAL = "local"
    RAY = "ray"
