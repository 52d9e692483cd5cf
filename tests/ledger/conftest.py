"""Fixtures of the ledger tests."""

from __future__ import annotations

import pytest

from tests.ledger.factories import FakeClock


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """`tongka.clock.now()` stands still at T0 until the test advances it."""
    return FakeClock(monkeypatch)
