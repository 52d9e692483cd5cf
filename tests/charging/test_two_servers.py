"""Two tongka servers charging one line at once never grant more than its buckets hold (PostgreSQL).

The packet core may reach any CHF instance: here many SMFs open sessions on one server
and send each following request to the other, all for the same line, while a watcher
reads what is granted and used. SQLite runs one writer at a time, so the race is
PostgreSQL's to answer.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import case, func, select

from tests.charging import factories as f
from tests.charging.test_simulate import serving
from tongka.account.models import Line
from tongka.charging import simulate as simulation
from tongka.charging.models import ChargingSession, Grant, UsageDay
from tongka.db import transaction
from tongka.ledger import buckets
from tongka.ledger.models import LedgerAccount
from tongka.money import MB

BASE = "/nchf-convergedcharging/v3/chargingdata"
BUCKET = 50 * MB
ASK = 3 * MB
SMFS = 12  # concurrent callers: their grants hold most of the bucket at once
SESSIONS = 3  # per caller, one after the other
UPDATES = 8  # at most, per session
DEADLINE = 40  # seconds: the whole exchange (a few on a quiet machine), so the test ends even if something hangs


@pytest.fixture
def pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises every writer: two servers cannot race on it")


@dataclass
class Exchange:
    statuses: Counter[int] = field(default_factory=Counter)
    per_server: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    granted: int = 0  # as the answers said
    used: int = 0  # reported and acknowledged


def body(seq: int, *, used: int | None = None, ask: bool = True) -> dict:  # type: ignore[type-arg]
    usage: dict = {"ratingGroup": 10}  # type: ignore[type-arg]
    if ask:
        usage["requestedUnit"] = {"totalVolume": ASK}
    if used is not None:
        usage["usedUnitContainer"] = [{"totalVolume": used, "localSequenceNumber": seq}]
    return {
        "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": str(uuid.uuid4())},
        "invocationTimeStamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "invocationSequenceNumber": seq,
        "subscriberIdentifier": "imsi-454000000000777",
        "multipleUnitUsage": [usage],
        "pDUSessionChargingInformation": {
            "pduSessionInformation": {
                "servingCNPlmnId": {"mcc": "454", "mnc": "00"},
                "pduSessionID": 1,
            },
        },
    }


async def smf(i: int, clients: list[httpx.AsyncClient], exchange: Exchange) -> None:
    """One SMF: sessions one after the other, each request to the other server than the last."""
    rng = random.Random(i)
    turn = i

    async def post(path: str, payload: dict) -> httpx.Response:  # type: ignore[type-arg]
        nonlocal turn
        client = clients[turn % 2]
        turn += 1
        answer = await client.post(path, json=payload)
        exchange.statuses[answer.status_code] += 1
        exchange.per_server[str(client.base_url)] += 1
        return answer

    def grant(answer: httpx.Response) -> int:
        (unit,) = answer.json()["multipleUnitInformation"]
        exchange.results[unit["resultCode"]] += 1
        granted = unit.get("grantedUnit", {}).get("totalVolume", 0)
        exchange.granted += granted
        return granted

    for _ in range(SESSIONS):
        answer = await post(BASE, body(0))
        if answer.status_code != 201:
            return
        ref = answer.headers["location"].rsplit("/", 1)[1]
        granted, seq = grant(answer), 1
        for _ in range(UPDATES):
            if not granted:
                break
            # A little of each grant (many requests before the bucket runs dry), all of a last one.
            used = granted if granted < ASK else rng.randint(granted // 100, granted // 10)
            answer = await post(f"{BASE}/{ref}/update", body(seq, used=used))
            seq += 1
            if answer.status_code != 200:
                return
            exchange.used += used
            granted = grant(answer)
        used = rng.randint(0, granted // 10)
        answer = await post(f"{BASE}/{ref}/release", body(seq, used=used, ask=False))
        if answer.status_code == 204:
            exchange.used += used


def test_two_servers_charging_one_line_never_grant_beyond_its_bucket(
    pg_only, settings, sessions, tmp_path
) -> None:
    with transaction(sessions) as s:
        f.ensure_networks(s)
        line = Line(iccid="8985200249000000777", imsi="454000000000777", hk_number="+85251099777")
        s.add(line)
        s.flush()
        now = datetime.now(UTC)  # the servers' clock is real
        bucket = buckets.grant(
            s,
            line_id=line.id,
            zone="both",
            amount=BUCKET,
            valid_from=now - timedelta(days=1),
            expires_at=now + timedelta(days=30),
            reason="pack_purchase",
            reference="order:two-servers",
        )

    # Granted and not yet settled, plus settled and charged: never beyond the bucket, at any instant.
    held = (
        select(
            func.coalesce(func.sum(case((Grant.status == "open", Grant.granted_bytes), else_=0)), 0)
            + func.coalesce(
                func.sum(
                    case(
                        (Grant.status == "settled", Grant.used_bytes - Grant.unreserved_bytes),
                        else_=0,
                    )
                ),
                0,
            )
        )
        .join(ChargingSession)
        .where(ChargingSession.line_id == line.id)
    )
    highest: list[int] = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            with sessions() as s:
                highest[0] = max(highest[0], s.scalar(held) or 0)
                s.rollback()

    exchange = Exchange()

    async def drive(urls: list[str]) -> None:
        async with (
            simulation.connect(urls[0]) as a,
            simulation.connect(urls[1]) as b,
        ):  # HTTP/2, as SMFs speak
            await simulation.authenticate(
                a, urls[0]
            )  # each from the dev NRF of the listener it calls
            await simulation.authenticate(b, urls[1])
            await asyncio.wait_for(
                asyncio.gather(*(smf(i, [a, b], exchange) for i in range(SMFS))), DEADLINE
            )

    with serving(settings, tmp_path, "server-a", "server-b") as servers:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            asyncio.run(drive([s.nchf_url for s in servers]))
        finally:
            done.set()
            watcher.join()

    assert set(exchange.statuses) <= {200, 201, 204}, (
        exchange.statuses
    )  # every request answered, none failed
    total = sum(exchange.statuses.values())
    assert total > 120 and len(exchange.per_server) == 2, exchange.per_server
    assert min(exchange.per_server.values()) > total // 4, (
        exchange.per_server
    )  # both servers took their share
    assert exchange.results["QUOTA_LIMIT_REACHED"] > 0, (
        "the callers should have asked for more than the bucket"
    )
    assert 0 < highest[0] <= BUCKET
    with sessions() as s:
        account = s.get_one(LedgerAccount, bucket.ledger_account_id)
        charged = account.debits_posted
        assert account.debits_pending == 0 and account.available == BUCKET - charged >= 0
        # What the callers were told they used is what was charged, and what the usage shows.
        assert (
            charged
            == exchange.used
            == s.scalar(select(func.sum(UsageDay.bytes)).where(UsageDay.line_id == line.id))
        )
        # Every grant the callers were told of, and no other.
        grants = s.execute(
            select(func.count(), func.sum(Grant.granted_bytes))
            .join(ChargingSession)
            .where(ChargingSession.line_id == line.id)
        ).one()
        assert tuple(grants) == (exchange.results["SUCCESS"], exchange.granted)
        s.rollback()
