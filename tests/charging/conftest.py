"""Fixtures of the charging tests."""

from __future__ import annotations

import pytest

from tests.charging.factories import ensure_networks
from tests.helpers import FrozenClock
from tests.ledger.factories import T0


@pytest.fixture
def frozen_clock(frozen_clock: FrozenClock) -> FrozenClock:
    """Here the clock starts at T0, so tests read as "T0 + 5 minutes"."""
    frozen_clock.now = T0
    return frozen_clock


@pytest.fixture
def session(sessions, frozen_clock):  # type: ignore[no-untyped-def]
    """A session on a database holding the seeded network registry, with the clock at T0."""
    with sessions() as s:
        ensure_networks(s)
        s.commit()
        yield s
