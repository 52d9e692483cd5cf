"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

Migrations run once per worker and backend; each test then gets a clean database
(a copy of the migrated SQLite file, or the PostgreSQL database emptied, see `_empty`), real
commits included, and `ledger verify` must be clean when it ends.

PostgreSQL comes from `TONGKA_TEST_DATABASE_URL`; without it those tests skip, unless
`TONGKA_TEST_REQUIRE_ALL=1` (as in CI), which makes a missing backend a failure.
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import FrozenClock
from tongka.account import service as account_service
from tongka.app import create_app
from tongka.charging.nchf_app import create_nchf_app
from tongka.config import Settings
from tongka.db import Base, make_engine, make_sessionmaker, normalise_url
from tongka.ledger import service as ledger
from tongka.migrate import upgrade

PG_URL = os.environ.get("TONGKA_TEST_DATABASE_URL")
REQUIRE_ALL = os.environ.get("TONGKA_TEST_REQUIRE_ALL") == "1"


def _require(what: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required here (TONGKA_TEST_REQUIRE_ALL=1)")
    pytest.skip(f"{what} is not available: set TONGKA_TEST_DATABASE_URL to run the PostgreSQL half")


def pytest_configure(config: pytest.Config) -> None:
    """The collector tuned for a test run: a test process holds half a million long-lived objects
    (every module, hypothesis' and SQLAlchemy's caches), and each full collection walked them all:
    0.3 s each, 23 of them in a sample of two files, 7 of their 30 s. Young objects are still
    collected, in larger batches; full collections come far less often (the whole suite: 1,001 s
    before, 837 s after, on 2 cores)."""
    gc.set_threshold(10_000, 50, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the tests are collected lives to the end: no collection walks it again."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def fresh_database(sqlite_template: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Each call: the URL of a new copy of the migrated SQLite database (for property tests,
    whose every example starts from scratch)."""
    counter = itertools.count()

    def make() -> str:
        path = tmp_path / f"example-{next(counter)}.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture(scope="session")
def pg_worker_url(worker_id: str) -> Iterator[str]:
    if not PG_URL:
        _require("PostgreSQL")
    base = make_url(normalise_url(PG_URL))
    name = f"{base.database}_{worker_id}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@functools.cache
def _pg_engine(url: str) -> Engine:
    """One engine per worker's PostgreSQL database, for emptying and checking it between tests."""
    return make_engine(url)


def _empty(url: str) -> None:
    """Every table emptied and every sequence restarted, as TRUNCATE would, at a tenth of its cost
    (replica mode needs a superuser, as the test server's `postgres` is).

    TRUNCATE makes new files for all 61 tables (half a second a test, fsync on). Instead: DELETE
    (replica mode turns off the triggers, the foreign keys' and the audit log's append-only guard
    alike, so the order does not matter), then VACUUM of the tables that had rows, which cuts
    them back to no pages: rows are then stored, and scanned, in the order they are inserted, as
    in a new table (a test that reads without ORDER BY is not made to flake by reused space)."""
    engine = _pg_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        had_rows = [
            table.name
            for table in Base.metadata.sorted_tables
            if conn.execute(text(f'DELETE FROM "{table.name}"')).rowcount
        ]
        conn.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value,"
                " false) FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )
    if had_rows:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM " + ", ".join(f'"{name}"' for name in had_rows)))


def _assert_ledger_clean(url: str) -> None:
    kept = url.startswith("postgresql")  # the worker's engine; a SQLite file is the test's own
    engine = _pg_engine(url) if kept else make_engine(url)
    with Session(engine) as session:
        problems = ledger.verify(session)
    if not kept:
        engine.dispose()
    assert not problems, "ledger verify: " + "; ".join(map(str, problems))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database for one test, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "tongka.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_worker_url")
        _empty(url)
    yield url
    _assert_ledger_clean(url)


@pytest.fixture(scope="session")
def sandbox_keys() -> dict[str, str]:
    """Every provider's sandbox keys, made once per worker (RSA keys take a moment)."""
    from tongka.sandbox.keys import generate

    return {k.removeprefix("TONGKA_").lower(): v for k, v in generate().items()}


@pytest.fixture(scope="session")
def nrf_dev_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dev NRF's signing key (`tongka keys nrf-dev`), one per test process."""
    from tongka.charging.nf_auth import write_dev_key

    path = tmp_path_factory.mktemp("nrf") / "nrf-dev-key.pem"
    write_dev_key(path)
    return str(path)


def nf_headers(
    settings: Settings, nf_instance_id: str = "5f8e6b1c-0000-4000-8000-000000000001"
) -> dict[str, str]:
    """What an SMF sends with each Nchf request: the access token the (dev) NRF gave it."""
    from tongka.charging.nf_auth import issue_dev_token

    return {"Authorization": f"Bearer {issue_dev_token(settings, nf_instance_id)}"}


@pytest.fixture
def settings(
    db_url: str, sandbox_keys: dict[str, str], tmp_path: Path, nrf_dev_key: str
) -> Settings:
    return Settings(
        **{
            **sandbox_keys,
            "env": "dev",
            "database_url": db_url,
            "public_base_url": "http://testserver",
            "secret_key": secrets.token_urlsafe(32),
            "sandbox_payment_secret": secrets.token_urlsafe(32),
            "sandbox_store_url": f"sqlite:///{tmp_path / 'sandbox-providers.db'}",
            # Tests send charging notifications themselves (notify.deliver_due), when they mean to.
            "charging_notify_every_seconds": 0,
            # Many short-lived apps: charging batches in a thread of each (tests/charging/test_api.py
            # and test_charging_process.py run them in the worker process too).
            "charging_worker": "thread",
            "nrf_dev_key_file": nrf_dev_key,
        },
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work the test commits itself (or not)."""
    with sessions() as s:
        yield s


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app, settings: Settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    from tongka.payment import providers

    with TestClient(app) as c:
        # Provider API calls go to the simulators in this same app, in-process.
        app.state.providers = providers.build(settings, http=c)
        yield c


@pytest.fixture
def nchf_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The network's listener's app (charging/nchf_app.py) on the same database and settings as `app`.
    Its charging worker (and the worker's engine) lives from its lifespan's start to its end."""
    return create_nchf_app(settings)


@pytest.fixture
def nchf(nchf_app, settings: Settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client of the Nchf listener's app, as `client` is of the public app's, with an SMF's access token."""
    with TestClient(nchf_app, headers=nf_headers(settings)) as c:
        yield c


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the `tongka` command against this test's database: `cli("ledger", "verify")` -> Result."""
    from typer.testing import CliRunner

    from tongka import config
    from tongka.cli import app as cli_app

    monkeypatch.setenv("TONGKA_ENV", "dev")  # production is the default
    monkeypatch.setenv("TONGKA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TONGKA_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv(
        "TONGKA_SANDBOX_PAYMENT_SECRET", settings.sandbox_payment_secret.get_secret_value()
    )
    config.get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli_app, list(args), catch_exceptions=False)

    yield run
    config.get_settings.cache_clear()


@pytest.fixture
def demo(sessions: sessionmaker[Session], settings: Settings) -> None:
    """The demo loaded: its catalog, its inventory of spare lines, its subscriber and their renewal."""
    from tests import factories

    factories.load_demo(sessions, settings)


@pytest.fixture
def real_hashing() -> None:
    """Ask for this to hash passwords at the production cost (about 0.1–0.25 s a hash or a check)."""


@pytest.fixture(autouse=True)
def fast_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its cheapest, where an account is only the means of a test (a subscriber's
    registration and log-in were two hashes a test, half a second of the suite's set-up each).

    Same algorithm and code path; only the cost parameters differ.
    """
    if "real_hashing" not in request.fixturenames:
        monkeypatch.setattr(
            account_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """`tongka.clock.now()` held at the current second until the test moves it (the ledger and
    charging tests start it at T0 instead)."""
    return FrozenClock(monkeypatch, datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def generic_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every method paid through the generic sandbox provider: for tests about what happens
    after a payment (inbox, receipts, refunds), not about one provider's wire format."""
    from tongka.payment import providers

    for method in list(providers.METHOD_PROVIDER):
        monkeypatch.setitem(providers.METHOD_PROVIDER, method, "sandbox")


@pytest.fixture
def operator(
    client: TestClient, sessions: sessionmaker[Session], settings: Settings
) -> dict[str, str]:
    """An operator admin's staff API headers (password and TOTP code, `POST /api/v1/staff/token`)."""
    from tests import factories

    return factories.staff(client, sessions, settings, role="admin").headers
