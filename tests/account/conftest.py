"""Fixtures of the account tests: a clock held still and moved by hand, cheap password hashing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from tongka import clock
from tongka.account import service


@dataclass
class FrozenClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


@pytest.fixture
def real_hashing() -> None:
    """Ask for this to hash passwords at the production cost (about 0.1 s a hash or a check)."""


@pytest.fixture(autouse=True)
def fast_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its cheapest, where an account is only the means of a test.

    Same algorithm and code path; only the cost parameters differ.
    """
    if "real_hashing" not in request.fixturenames:
        monkeypatch.setattr(
            service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
