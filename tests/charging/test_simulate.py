"""`tongka simulate`: phones driven through the charging API move the balances and the usage, and leave nothing open.

The command runs against a real `tongka serve` on this test's database (each backend);
the finer behaviours (border crossings, final units) run the same simulation in-process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.charging import factories as f
from tests.helpers import TONGKA, free_port, log_tail, wait_until_up
from tongka.account import service as accounts
from tongka.account.models import Line
from tongka.charging import service as charging
from tongka.charging import simulate as simulation
from tongka.charging.models import ChargingAnswer, ChargingSession, Grant, UsageDay
from tongka.config import Settings
from tongka.db import transaction
from tongka.ledger import buckets
from tongka.ledger.models import Bucket, LedgerAccount
from tongka.money import GB, KB

# Quick enough that a few seconds see attaches, several updates and releases.
FAST = simulation.Pace(
    update_every=(0.1, 0.3), cross_chance=0.3, retry_after=(0.2, 0.4), min_wait=0.05
)
SIMULATED = {"460-00", "460-01", "454-00", "454-12"}


@dataclass(frozen=True)
class World:
    bound: uuid.UUID  # bound to an account, a `both` bucket; SUPI and GPSI
    roamer: uuid.UUID  # a `mainland` and an `hk` bucket; GPSI only
    dry: uuid.UUID  # no data at all; SUPI and a +86 GPSI
    suspended: uuid.UUID  # data, but not active: never played


def _give(session: Session, line: Line, zone: str, amount: int) -> None:
    # The server's clock is real: buckets valid from yesterday.
    now = datetime.now(UTC)
    buckets.grant(
        session,
        line_id=line.id,
        zone=zone,
        amount=amount,
        valid_from=now - timedelta(days=1),
        expires_at=now + timedelta(days=30),
        reason="pack_purchase",
        reference=f"order:sim-{uuid.uuid4()}",
    )


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    with transaction(sessions) as s:
        f.ensure_networks(s)
        account = accounts.register(
            s, username="sim", password="a long password", email="sim@example.com", language="en"
        )
        bound = Line(
            iccid="8985200249000000001",
            imsi="454000000000901",
            hk_number="+85251099001",
            cn_number="+8613900099001",
            account_id=account.id,
            bound_at=datetime.now(UTC),
        )
        # Sorted before `bound` by ICCID: only being bound puts `bound` first.
        roamer = Line(iccid="8985200240000000901", hk_number="+85251099002")
        dry = Line(iccid="8985200249000000003", imsi="454000000000903", cn_number="+8613900099003")
        suspended = Line(iccid="8985200240000000900", hk_number="+85251099004", status="suspended")
        s.add_all([bound, roamer, dry, suspended])
        s.flush()
        _give(s, bound, "both", 2 * GB)
        _give(s, roamer, "mainland", 1 * GB)
        _give(s, roamer, "hk", 1 * GB)
        _give(s, suspended, "both", 1 * GB)
        # as the demo's operator has it: the self-service group is free
        charging.set_rating_group(
            s, simulation.SELF_SERVICE_RATING_GROUP, "self-service", zero_rated=True
        )
        return World(bound.id, roamer.id, dry.id, suspended.id)


@dataclass(frozen=True)
class Charged:
    """What the database says one line went through."""

    remaining: int  # what its buckets have left
    reserved: int  # still held by open grants
    charged: int  # posted from its buckets
    usage: dict[str, int]  # usage per zone, as the usage API shows it (internet data)
    zero_rated: int  # usage of the self-service group, counted and not charged
    plmns: set[str]
    granted: int  # internet data (as all of these grants' figures)
    used: int  # reported on its grants
    unreserved: int  # reported beyond its grants
    grants: int
    open_sessions: int
    answers: int  # requests answered on its sessions


def charged(sessions: sessionmaker[Session], line_id: uuid.UUID) -> Charged:
    with sessions() as s:
        balance = s.execute(
            select(
                func.coalesce(
                    func.sum(
                        LedgerAccount.credits_posted
                        - LedgerAccount.debits_posted
                        - LedgerAccount.debits_pending
                    ),
                    0,
                ),
                func.coalesce(func.sum(LedgerAccount.debits_pending), 0),
                func.coalesce(func.sum(LedgerAccount.debits_posted), 0),
            )
            .join(Bucket, Bucket.ledger_account_id == LedgerAccount.id)
            .where(Bucket.line_id == line_id)
        ).one()
        usage = s.execute(
            select(UsageDay.zone, UsageDay.plmn, UsageDay.bytes, UsageDay.zero_rated_bytes).where(
                UsageDay.line_id == line_id
            )
        ).all()
        grants = s.execute(
            select(
                func.count(Grant.id),
                func.coalesce(func.sum(Grant.granted_bytes), 0),
                func.coalesce(func.sum(Grant.used_bytes), 0),
                func.coalesce(func.sum(Grant.unreserved_bytes), 0),
            )
            .join(ChargingSession)
            .where(
                ChargingSession.line_id == line_id, Grant.rating_group == simulation.RATING_GROUP
            )
        ).one()
        open_sessions = s.scalar(
            select(func.count())
            .select_from(ChargingSession)
            .where(ChargingSession.line_id == line_id, ChargingSession.status == "open")
        )
        answers = s.scalar(
            select(func.count())
            .select_from(ChargingAnswer)
            .join(ChargingSession)
            .where(ChargingSession.line_id == line_id)
        )
        s.rollback()
    zones: dict[str, int] = {}
    for zone, _plmn, used, _free in usage:
        zones[zone] = zones.get(zone, 0) + used
    return Charged(
        remaining=balance[0],
        reserved=balance[1],
        charged=balance[2],
        usage=zones,
        plmns={row[1] for row in usage},
        zero_rated=sum(row[3] for row in usage),
        grants=grants[0],
        granted=grants[1],
        used=grants[2],
        unreserved=grants[3],
        open_sessions=open_sessions or 0,
        answers=answers or 0,
    )


def open_sessions(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        count = s.scalar(
            select(func.count())
            .select_from(ChargingSession)
            .where(ChargingSession.status == "open")
        )
        s.rollback()
    return count or 0


def test_bound_lines_play_first_and_are_named_as_the_network_names_them(
    sessions, world: World
) -> None:
    with sessions() as s:
        phones = simulation.subscribers(s, 10)
        first = simulation.subscribers(s, 1)
    assert first == [
        simulation.Subscriber(supi="imsi-454000000000901", gpsi="msisdn-85251099001", home="hk")
    ]
    assert phones == [
        first[0],
        simulation.Subscriber(supi=None, gpsi="msisdn-85251099002", home="hk"),
        simulation.Subscriber(
            supi="imsi-454000000000903", gpsi="msisdn-8613900099003", home="mainland"
        ),
    ]  # the suspended line does not play


# --- the command, against a served tongka ---------------------------------------------------


@dataclass(frozen=True)
class Served:
    base_url: str
    env: dict[str, str]
    home: Path
    nchf_url: str  # its Nchf listener (TONGKA_NCHF_BIND)


@contextmanager
def serving(settings: Settings, home: Path, *names: str) -> Iterator[list[Served]]:
    """A `tongka serve` per name on the test's database, each in its own process with its Nchf listener,
    started together; their logs must stay free of errors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        TONGKA_ENV="dev",  # production is the default
        TONGKA_DATABASE_URL=settings.database_url,
        TONGKA_SECRET_KEY=settings.secret_key.get_secret_value(),
        TONGKA_SANDBOX_PAYMENT_SECRET=settings.sandbox_payment_secret.get_secret_value(),
        TONGKA_SANDBOX_STORE_URL=settings.sandbox_store_url,
        TONGKA_NRF_DEV_KEY_FILE=settings.nrf_dev_key_file,  # the dev NRF: the simulator gets its token there
        PYTHONUNBUFFERED="1",
    )
    started: list[tuple[subprocess.Popen[bytes], Served, Path]] = []
    try:
        for name in names:
            base_url, nchf_bind = f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            server_env = {**env, "TONGKA_PUBLIC_BASE_URL": base_url, "TONGKA_NCHF_BIND": nchf_bind}
            log_path = home / f"{name}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [str(TONGKA), "serve", "--port", base_url.rsplit(":", 1)[1]],
                    cwd=home,
                    env=server_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append(
                (process, Served(base_url, server_env, home, f"http://{nchf_bind}"), log_path)
            )
        for process, running, log_path in started:
            wait_until_up(process, running.base_url, log_path)
            wait_until_up(process, running.nchf_url, log_path)
        yield [running for _process, running, _log in started]
    finally:
        for process, _running, _log in started:
            process.terminate()
        for process, _running, _log in started:
            process.wait(timeout=10)
    for _process, _running, log_path in started:
        text = log_path.read_text(errors="replace")
        assert "Traceback" not in text and "unhandled_error" not in text, log_tail(log_path, 80)


@pytest.fixture
def server(settings: Settings, world: World, tmp_path: Path) -> Iterator[Served]:
    with serving(settings, tmp_path, "server") as (running,):
        yield running


def simulate_command(server: Served, *args: str) -> list[str]:
    return [
        str(TONGKA),
        "simulate",
        "--lines",
        "3",
        "--nchf-url",
        server.nchf_url,
        "--seed",
        "7",
        *args,
    ]


def test_a_few_seconds_of_simulation_use_data_and_release_every_session(
    server: Served, world: World, sessions
) -> None:
    before = {line: charged(sessions, line).remaining for line in (world.bound, world.roamer)}

    result = subprocess.run(
        simulate_command(server, "--seconds", "4"),
        check=False,
        cwd=server.home,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    live = [line for line in result.stdout.splitlines() if "req/s" in line]
    assert len(live) >= 2, result.stdout  # a figure about every second
    assert re.search(r"^simulated 3 line\(s\) for \d+ s against ", result.stdout, re.MULTILINE), (
        result.stdout
    )
    summary = result.stdout[result.stdout.index("simulated 3 line(s)") :]
    # the dry line is refused, and the summary says why
    assert re.search(
        r"refusals [1-9]\d* \(QUOTA_LIMIT_REACHED [1-9]\d*\), errors 0$", summary.strip()
    ), summary
    for line_id in (world.bound, world.roamer):
        after = charged(sessions, line_id)
        assert after.open_sessions == 0 and after.reserved == 0
        assert after.charged > 0 and after.remaining == before[line_id] - after.charged
        # the usage API counts every reported byte: on the grants, and after a crossing in the new zone
        assert sum(after.usage.values()) >= after.used > 0
        # What the grants covered comes out of the buckets; usage beyond them may too (overage rules).
        assert after.used - after.unreserved <= after.charged <= sum(after.usage.values())
        assert after.plmns <= SIMULATED
    dry = charged(sessions, world.dry)
    assert (
        dry.grants == 0 and dry.open_sessions == 0 and dry.answers > 0
    )  # asked, refused, released
    assert charged(sessions, world.suspended).answers == 0


def test_ctrl_c_releases_every_open_session(server: Served, world: World, sessions) -> None:
    process = subprocess.Popen(
        simulate_command(server, "--minutes", "5"),
        cwd=server.home,
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while (
            open_sessions(sessions) < 2 and time.monotonic() < deadline and process.poll() is None
        ):
            time.sleep(0.2)
        assert open_sessions(sessions) >= 2, "both lines with data should be in a session"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "interrupted after" in output, output
    assert open_sessions(sessions) == 0
    for line_id in (world.bound, world.roamer):
        assert charged(sessions, line_id).reserved == 0


# --- the same simulation in-process, for what a few seconds of the command cannot show ------


def run_in_process(
    app, phones: list[simulation.Subscriber], seconds: float, seed: int
) -> simulation.Figures:  # type: ignore[no-untyped-def]
    async def go() -> simulation.Figures:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=10
        ) as client:
            await simulation.authenticate(
                client, "http://testserver"
            )  # from the dev NRF, as the command does
            return await simulation.simulate(phones, seconds, client=client, pace=FAST, seed=seed)

    return asyncio.run(go())


def test_phones_cross_the_border_and_are_charged_in_each_zone(
    nchf_app, sessions, world: World
) -> None:
    with sessions() as s:
        phones = simulation.subscribers(s, 2)  # the bound line and the roamer: data in both zones

    figures = run_in_process(nchf_app, phones, 3, seed=3)

    assert figures.crossings >= 2 and figures.errors == 0 and figures.abandoned == 0
    assert figures.opened == figures.released > 0
    lines = [charged(sessions, line_id) for line_id in (world.bound, world.roamer)]
    for line in lines:
        assert line.usage.keys() == {"mainland", "hk"}, line.usage
        assert line.open_sessions == 0 and line.reserved == 0
    # The phones and tongka agree to the byte on what was granted and used, and on what went beyond.
    assert figures.granted_bytes == sum(line.granted for line in lines)
    # Used after a crossing on the old quota: in the new zone's usage, on no grant.
    assert figures.used_bytes == sum(sum(line.usage.values()) for line in lines)
    assert figures.used_bytes == sum(line.used for line in lines) + figures.crossed_bytes
    assert figures.crossed_bytes > 0
    assert figures.beyond_bytes == sum(line.unreserved for line in lines)
    assert figures.zero_rated_bytes == sum(line.zero_rated for line in lines)
    assert figures.beyond_bytes <= figures.used_bytes * 0.05


def test_a_final_unit_is_used_up_without_asking_for_more(nchf_app, sessions) -> None:
    with transaction(sessions) as s:
        f.ensure_networks(s)
        line = Line(iccid="8985200249000000101", imsi="454000000000101", hk_number="+85251099101")
        s.add(line)
        s.flush()
        _give(s, line, "both", 2 * KB)  # less than any request: the first grant is the last
    phone = simulation.Subscriber(supi="imsi-454000000000101", gpsi=None, home="hk")

    # Long enough that the phone spends its unit before the run stops, even when the machine is
    # busy and the create answers late (a run that stopped right after it reported nothing).
    figures = run_in_process(nchf_app, [phone], 4, seed=1)

    after = charged(sessions, line.id)
    assert figures.requests["update"] == 0  # the session ran on its final unit, then ended
    assert after.grants >= 1 and after.granted == figures.granted_bytes <= 2 * KB
    assert after.open_sessions == 0 and after.reserved == 0
    assert after.charged > 0 and after.unreserved == figures.beyond_bytes
