"""Fixtures of the ledger tests."""

from __future__ import annotations

import pytest

from tests.helpers import FrozenClock
from tests.ledger.factories import T0


@pytest.fixture
def frozen_clock(frozen_clock: FrozenClock) -> FrozenClock:
    """Here the clock starts at T0, so tests read as "T0 + 5 minutes"."""
    frozen_clock.now = T0
    return frozen_clock
