"""A pytest plugin that makes this install look runtime-only: TensorFlow, Keras and the other learning
libraries cannot be imported (``python -m pytest -p runtime_only``, with tests/ on ``PYTHONPATH``).

``tests/test_layout.py`` runs the suite's collection under it, so a test module that imports Keras at
module level outside tests/train/ and tests/convert/ fails there, as it would on a cart's install.
"""

from __future__ import annotations

import sys

#: The [train] extra's import names (pyproject.toml): absent from a runtime-only install.
BLOCKED = ("tensorflow", "keras", "keras_tuner", "tf_keras", "jax")


class _Absent:
    """A meta path finder that answers "not installed" for :data:`BLOCKED` and their submodules."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (runtime-only install)", name=name)
        return None


if not any(isinstance(f, _Absent) for f in sys.meta_path):
    sys.meta_path.insert(0, _Absent())
