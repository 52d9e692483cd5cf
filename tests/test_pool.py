"""The public app's PostgreSQL pool survives a connection the server closed (a restart ends every
connection the same way), without a round trip on each checkout (issue 12)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tongka.db import make_engine


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_worker_url"))


def _backend_pid(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_the_server_closed_is_replaced_before_use(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    admin = make_engine(pg_url, pre_ping=False)
    try:
        first = _backend_pid(engine)
        assert _backend_pid(engine) == first  # pooled: the same connection again
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first}).scalar()
        deadline = time.monotonic() + 5
        while True:  # the backend is gone once PostgreSQL no longer lists it
            with admin.connect() as conn:
                alive = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": first}
                ).scalar_one()
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        again = _backend_pid(engine)  # no error: the closed connection was replaced
        assert again != first
    finally:
        engine.dispose()
        admin.dispose()


def test_without_the_check_the_first_statement_on_it_fails(pg_url: str) -> None:
    """What the check is for: the same steps with it off fail once, then the pool recovers."""
    from sqlalchemy.exc import OperationalError

    engine = make_engine(pg_url, pool_size=1, max_overflow=0, pre_ping=False)
    admin = make_engine(pg_url, pre_ping=False)
    try:
        first = _backend_pid(engine)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first})
        time.sleep(0.3)
        with pytest.raises(OperationalError) as failed:
            _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
        admin.dispose()
