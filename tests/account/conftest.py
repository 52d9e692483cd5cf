"""Fixtures of the account tests: cheap password hashing (the clock held still: tests/conftest.py)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from tongka.account import service


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
