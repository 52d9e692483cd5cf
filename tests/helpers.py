"""Test helpers that are not factories: a clock a test moves by hand.

Factories (things made as a client or an operator would) are in tests/factories.py and
next to each domain's tests; fixtures are in the conftest.py files.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tongka import clock


class FrozenClock:
    """`tongka.clock.now()` held still at `now` until the test moves it: `advance(...)` or set `now`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
        self.now = now
        monkeypatch.setattr(clock, "now", lambda: self.now)

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move the clock on: `advance(60)`, `advance(minutes=5)`; the new time."""
        self.now += timedelta(seconds=seconds, **delta)
        return self.now
