"""Concurrent transactions on one account, on PostgreSQL.

SQLite runs one writer at a time (every transaction begins IMMEDIATE), so the row locks
these tests are about only exist on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.ledger import factories as f
from tests.ledger.factories import T0
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount, Transfer
from tongka.ledger.service import InsufficientBalance, ReservationResolved

THREADS = 8


@pytest.fixture
def pg_sessions(db_url, sessions):  # type: ignore[no-untyped-def]
    if not db_url.startswith("postgresql"):
        pytest.skip(
            "row locks under concurrent transactions: SQLite serialises every writer at BEGIN IMMEDIATE"
        )
    return sessions


def _race(work: Callable[[int], object]) -> list[object]:
    """Run `work(i)` in THREADS threads released together; each gives its result or the exception it raised."""
    start = threading.Barrier(THREADS)

    def run(i: int) -> object:
        start.wait()
        try:
            return work(i)
        except Exception as error:
            return error

    with ThreadPoolExecutor(THREADS) as pool:
        return [future.result() for future in [pool.submit(run, i) for i in range(THREADS)]]


def test_only_as_many_reservations_as_the_balance_allows_succeed(pg_sessions, frozen_clock) -> None:
    allowed = 5
    with transaction(pg_sessions) as s:
        account_id = f.funded_account(s, allowed * 100 + 99).id
        f.sink(s)  # made beforehand: this test is about the customer account

    lowest: list[int] = []
    done = threading.Event()

    def watch() -> None:
        # The committed available balance, sampled while the reservations race.
        while not done.is_set():
            with pg_sessions() as s:
                lowest.append(s.get(LedgerAccount, account_id).available)

    def reserve(_: int) -> int:
        with transaction(pg_sessions) as s:
            return f.reserve(s, s.get(LedgerAccount, account_id), 100).id

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcomes = _race(reserve)
    finally:
        done.set()
        watcher.join()

    assert sum(isinstance(o, int) for o in outcomes) == allowed
    assert sum(isinstance(o, InsufficientBalance) for o in outcomes) == THREADS - allowed, outcomes
    assert lowest and min(lowest) >= 0
    with pg_sessions() as s:
        assert s.get(LedgerAccount, account_id).available == 99
        assert s.scalar(select(func.count()).where(Transfer.kind == "pending")) == allowed
        assert ledger.verify(s) == []


@pytest.mark.parametrize("how", ["post", "void", "both"])
def test_a_reservation_raced_for_is_resolved_once(pg_sessions, frozen_clock, how) -> None:
    with transaction(pg_sessions) as s:
        account = f.funded_account(s, 1000)
        pending_id = f.reserve(s, account, 300, expires_at=T0 + timedelta(minutes=5)).id
        account_id = account.id

    def resolve(i: int) -> str:
        with transaction(pg_sessions) as s:
            if how == "post" or (how == "both" and i % 2):  # both: half the threads post, half void
                return ledger.post(s, pending_id, 120).kind
            return ledger.void(s, pending_id).kind

    outcomes = _race(resolve)

    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ReservationResolved) for o in outcomes if o not in winners), outcomes
    with pg_sessions() as s:
        [resolution] = s.scalars(select(Transfer).where(Transfer.pending_id == pending_id))
        assert resolution.kind == winners[0]
        posted = 120 if winners[0] == "post_pending" else 0
        assert f.balances(s, s.get(LedgerAccount, account_id)) == (posted, 1000, 0, 0)


def test_a_system_account_made_at_the_same_moment_is_made_once(pg_sessions) -> None:
    def make(_: int) -> int:
        with transaction(pg_sessions) as s:
            return ledger.system_account(s, "data_raced", "bytes").id

    outcomes = _race(make)

    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert len(set(outcomes)) == 1
    with pg_sessions() as s:
        assert (
            s.scalar(select(func.count()).where(LedgerAccount.code == "system:data_raced:bytes"))
            == 1
        )
