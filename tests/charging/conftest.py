"""Fixtures of the charging tests."""

from __future__ import annotations

import pytest

from tests.charging.factories import ensure_networks
from tests.helpers import FrozenClock
from tests.ledger.factories import T0
from tongka.charging.nchf_app import create_nchf_app


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


@pytest.fixture
def charging_worker() -> str:
    """Where the Nchf app's batches run (`charging/worker.py`): a thread here. A module that
    overrides this fixture with params ("thread", "process") runs its tests in both, the
    process being what `tongka serve` runs (each app spawns its own: about a second each)."""
    return "thread"


@pytest.fixture
def nchf_app(settings, charging_worker: str):  # type: ignore[no-untyped-def]
    """The Nchf listener's app, its batches answered where `charging_worker` says."""
    return create_nchf_app(settings.model_copy(update={"charging_worker": charging_worker}))
