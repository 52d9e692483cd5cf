"""Two workers scanning at once, while the line is charged: each alert once, each message once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.alerts.helpers import GB, bucket, events, owner, sent, use
from tests.helpers import FrozenClock
from tongka.account.models import Line
from tongka.alerts import scan, service
from tongka.money import MB


@pytest.fixture
def pg_sessions(db_url: str, sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrent transactions: SQLite serialises every writer at BEGIN IMMEDIATE")
    return sessions


def _together(*work: object) -> list[object]:
    """Run each callable in its own thread, released at once; their results or exceptions."""
    start = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work[i]()  # type: ignore[operator]
        except Exception as error:  # reported below, not lost in the thread
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return results


def test_two_workers_and_charging_at_once_fire_each_threshold_once(
    pg_sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with pg_sessions() as session:
        account, line = owner(session)
        bucket(session, line, 10 * GB)
        use(session, line, 8100 * MB)  # just short of 80 % (8192 MB): the first charge crosses it
        session.commit()
        line_id = line.id

    def worker() -> int:
        with pg_sessions() as session:
            fired = scan.scan(session)
            session.commit()
            return fired

    def charge(amount: int) -> None:
        with pg_sessions() as session:
            use(session, session.get_one(Line, line_id), amount)
            session.commit()

    fired = 0
    # Each round: two workers scan while a charge crosses the next threshold, then two scan again.
    for amount in (200 * MB, GB, GB):
        results = _together(worker, worker, lambda a=amount: charge(a))  # type: ignore[misc]
        assert not [r for r in results if isinstance(r, Exception)], results
        fired += sum(r for r in results[:2] if isinstance(r, int))
        results = _together(worker, worker)
        assert not [r for r in results if isinstance(r, Exception)], results
        fired += sum(r for r in results if isinstance(r, int))

    with pg_sessions() as session:
        account = session.merge(account)
        assert [kind for kind, _ in events(session, account)] == [
            "data_used_100",
            "data_used_80",
            "data_used_90",
        ]
        assert fired == 3
        assert Counter((m.template, m.channel) for m in sent(session, account)) == {
            ("alert_data_used_80", "sms"): 1,
            ("alert_data_used_90", "sms"): 1,
            ("alert_data_used_100", "sms"): 1,
            ("alert_data_used_100", "email"): 1,
        }
        assert session.scalar(select(Line.id).where(Line.id == line_id)) == line_id


def test_the_same_alert_fired_by_two_workers_at_once_is_sent_once(
    pg_sessions: sessionmaker[Session],
) -> None:
    """The backstop under the scan's cursor: the event's unique (kind, key)."""
    with pg_sessions() as session:
        account, line = owner(session)
        session.commit()

    def fire() -> bool:
        with pg_sessions() as session:
            fired = service.fire(
                session,
                account=session.merge(account),
                kind="data_used_90",
                key="bucket:both-workers:90",
                line=session.merge(line),
                zone="hk",
                total=10 * GB,
                left=GB,
            )
            session.commit()
            return fired is not None

    results = _together(*[fire] * 4)
    assert sorted(results) == [False, False, False, True], results  # type: ignore[type-var]
    with pg_sessions() as session:
        account = session.merge(account)
        assert [kind for kind, _ in events(session, account)] == ["data_used_90"]
        assert [m.template for m in sent(session, account)] == ["alert_data_used_90"]
