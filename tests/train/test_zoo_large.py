"""The zoo's three largest architectures (see ``test_zoo.SLOW``): build, one training step, conversion."""

from __future__ import annotations

import pytest
from test_zoo import SLOW, check_architecture

pytestmark = [pytest.mark.train, pytest.mark.slow]


@pytest.mark.parametrize("name", sorted(SLOW))
def test_large_architecture_builds_trains_one_step_and_converts(name, tmp_path):
    check_architecture(name, tmp_path)
