"""Fixtures of the charging tests."""

from __future__ import annotations

import pytest

from tests.charging.factories import ensure_networks
from tests.ledger.factories import FakeClock


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """`tongka.clock.now()` stands still at T0 until the test advances it."""
    return FakeClock(monkeypatch)


@pytest.fixture
def session(sessions, fake_clock):  # type: ignore[no-untyped-def]
    """A session on a database holding the seeded network registry, with the clock at T0."""
    with sessions() as s:
        ensure_networks(s)
        s.commit()
        yield s
