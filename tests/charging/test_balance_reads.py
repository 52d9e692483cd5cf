"""What GET /api/v1/lines/{line_id}/balance costs the database: a fixed number of statements,
however long the line's charging history and however many buckets and debts it has (issue 12)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import event, update

from tests.charging import calls as charging
from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tests.charging.test_usage import owned_line
from tests.ledger.factories import T0
from tongka import clock
from tongka.account import balance as balance_read
from tongka.account.models import AccessToken
from tongka.account.schemas import BalanceOut, BucketOut, ZoneBalanceOut
from tongka.account.service import token_digest
from tongka.db import transaction
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.money import GB_DEFINITION, MB

# The token, its account, the line's owner, the line's buckets with their balances and its debts
# in every zone in one statement; on SQLite the BEGIN too (tongka.db begins its transactions itself).
MOST = 2


def read(client, app, line, headers) -> tuple[int, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The statements one read ran (through SQLAlchemy, or on PostgreSQL `db.AsyncReads`) and its
    answer, checked byte for byte against what `BalanceOut` through FastAPI gives."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    reads = app.state.reads
    if reads is not None:
        original = reads.rows

        async def rows(statement: Any, params: dict[str, Any]) -> Any:
            seen.append(str(statement))
            return await original(statement, params)

        reads.rows = rows
    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        r = client.get(f"/api/v1/lines/{line.id}/balance", headers=headers)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
        if reads is not None:
            del reads.rows
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.content == through_the_model(app, line.id, datetime.fromisoformat(r.json()["as_of"]))
    return len([s for s in seen if not s.startswith("PRAGMA")]), r.json()


def through_the_model(app, line_id: uuid.UUID, now: datetime) -> bytes:  # type: ignore[no-untyped-def]
    """The answer as the route gave it before it wrote its JSON itself: the ORM session's read, a
    `BalanceOut` serialised by FastAPI (its response model) and rendered by JSONResponse."""
    with transaction(app.state.sessionmaker, read_only=True) as session:
        view = buckets.line_balance(session, line_id, now)
    model = BalanceOut(
        line_id=line_id,
        zones={zone: ZoneBalanceOut(**vars(z)) for zone, z in view.zones.items()},
        buckets=[BucketOut(**vars(b)) for b in view.buckets],
        as_of=view.as_of,
        unit_note=GB_DEFINITION,
    )
    return bytes(JSONResponse(jsonable_encoder(model)).body)


def test_a_balance_read_costs_the_same_whatever_the_history_buckets_and_debts(
    client, app, session
) -> None:  # type: ignore[no-untyped-def]
    line, headers = owned_line(client, session)  # a bucket in each zone
    postgresql = app.state.engine.dialect.name == "postgresql"
    assert (app.state.reads is not None) == postgresql  # PostgreSQL: from the event loop
    first, balance = read(client, app, line, headers)
    assert first == (1 if postgresql else MOST)
    assert balance["zones"]["hk"]["remaining_bytes"] == 500 * MB

    # 1,000 charging updates on the line
    for plmn in (HK_PLMN, MAINLAND_PLMN):
        cs = f.open_session(session, line, plmn)
        for n in range(500):
            result = charging.request_quota(session, cs, 10, MB // 4, 600, T0)
            charging.report_usage(session, result.grant, MB // 8)
            if n % 100 == 99:
                session.commit()
    session.commit()
    after_history, balance = read(client, app, line, headers)
    assert balance["zones"]["hk"]["remaining_bytes"] == 500 * MB - 500 * (MB // 8)
    assert after_history == first

    # 60 more buckets, and a debt in each zone
    for n in range(60):
        f.bucket(session, line, ("hk", "mainland", "both")[n % 3], MB)
    for zone in ("hk", "mainland"):
        debt = buckets.debt_account(session, line.id, zone, create=True)
        assert debt is not None
        ledger.transfer(
            session,
            debt,
            ledger.system_account(session, "data_used", "bytes"),
            MB,
            reason="usage",
            reference=f"test:{zone}",
        )
    session.commit()
    crowded, balance = read(client, app, line, headers)
    assert crowded == first
    assert len(balance["buckets"]) == 62
    assert balance["zones"]["mainland"]["owed_bytes"] == MB
    assert balance["zones"]["hk"]["bucket_count"] == 1 + 40


def test_only_a_token_in_force_reads_only_its_own_lines(client, app, session) -> None:  # type: ignore[no-untyped-def]
    """The one statement keeps the checks of the token and the line: an unknown, expired or revoked
    token is a 401; another's line is a 404 like a missing one, in the account's language."""
    line, headers = owned_line(client, session, language="zh-Hant")
    other, other_headers = owned_line(client, session)
    url = f"/api/v1/lines/{line.id}/balance"
    assert client.get(url, headers=headers).status_code == 200
    assert client.get(url).status_code == 401
    r = client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert (r.status_code, r.json()["code"]) == (401, "invalid_token")
    for path in (f"/api/v1/lines/{other.id}/balance", f"/api/v1/lines/{uuid.uuid4()}/balance"):
        r = client.get(path, headers=headers)
        assert (r.status_code, r.json()["code"]) == (404, "line_not_found")
        assert r.json()["detail"] != "No such line."  # said in the account's language
    token = other_headers["Authorization"].removeprefix("Bearer ")
    session.execute(
        update(AccessToken)
        .where(AccessToken.token_hash == token_digest(token))
        .values(expires_at=clock.now() - timedelta(seconds=1))
    )
    session.commit()
    r = client.get(f"/api/v1/lines/{other.id}/balance", headers=other_headers)
    assert (r.status_code, r.json()["code"]) == (401, "invalid_token")
    # not a UUID: no match for the lean route (app.py), FastAPI's answers as it always has
    r = client.get("/api/v1/lines/not-a-line/balance", headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    r = client.get(url, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "invalid_token")


def test_reads_asked_at_once_go_as_one_batch_and_each_gets_its_own_rows(
    client, app, session
) -> None:  # type: ignore[no-untyped-def]
    """Reads awaited in the same turn of the event loop go as one batch (`rows_together`): on
    PostgreSQL one statement (`db.AsyncReads`), on SQLite one hop to a worker thread
    (`db.ThreadReads`). Each read's rows are exactly those it gets alone: its own token's account
    and language, its own line's buckets in their order, none for a token not in force, no line
    for another's."""
    postgresql = app.state.reads is not None
    reads = app.state.reads or app.state.thread_reads
    first, first_headers = owned_line(client, session, language="zh-Hant")
    second, second_headers = owned_line(client, session)
    for n in range(5):  # a different count and order of buckets from the first line's
        f.bucket(session, second, ("hk", "mainland")[n % 2], (n + 1) * MB)
    session.commit()
    token = {
        line.id: h["Authorization"].removeprefix("Bearer ")
        for line, h in ((first, first_headers), (second, second_headers))
    }
    now = clock.now()
    asked = [
        balance_read.parameters(token[first.id], first.id, now),
        balance_read.parameters(token[second.id], second.id, now),
        balance_read.parameters(token[first.id], second.id, now),  # another's line
        balance_read.parameters("not-a-token", first.id, now),
        balance_read.parameters(token[second.id], uuid.uuid4(), now),  # nobody's line
        balance_read.parameters(token[first.id], first.id, now + timedelta(seconds=1)),
    ]
    batches: list[int] = []
    statements: list[Any] = []
    batch_rows, rows = reads.batch_rows, getattr(reads, "rows", None)

    async def counted_batch(together: Any, params: list[dict[str, Any]]) -> Any:
        batches.append(len(params))
        return await batch_rows(together, params)

    async def counted_rows(statement: Any, params: dict[str, Any]) -> Any:
        statements.append(statement)
        return await rows(statement, params)

    async def together() -> list[Any]:
        return list(
            await asyncio.gather(*(reads.rows_together(balance_read.TOGETHER, p) for p in asked))
        )

    async def alone() -> list[Any]:
        return [(await batch_rows(balance_read.TOGETHER, [p]))[0] for p in asked]

    reads.batch_rows = counted_batch
    if postgresql:
        reads.rows = counted_rows
    try:
        answers = client.portal.call(together)
    finally:
        del reads.batch_rows
        if postgresql:
            del reads.rows
    assert batches == [len(asked)]
    if postgresql:
        assert statements == [balance_read.TOGETHER.batch]
    assert answers == client.portal.call(alone)
    assert [len(a) for a in answers] == [2, 7, 1, 0, 1, 2]
    assert answers[0][0][0] == "zh-Hant" and answers[1][0][0] == "en"
    assert answers[2][0][1] is None and answers[4][0][1] is None  # no line for these tokens
    # and through the app, each request its own answer
    urls = [
        (f"/api/v1/lines/{line.id}/balance", h)
        for line, h in ((first, first_headers), (second, second_headers))
    ]

    async def over_http() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return list(await asyncio.gather(*(c.get(u, headers=h) for u, h in urls * 8)))

    for r, (url, headers) in zip(client.portal.call(over_http), urls * 8, strict=True):
        assert r.status_code == 200
        assert r.content == client.get(url, headers=headers).content


def test_reads_wait_while_two_batches_are_out_and_then_go_together(client, app, session) -> None:  # type: ignore[no-untyped-def]
    """With `READS_IN_FLIGHT` (2) batches of the statement out, a new read is not sent: the reads
    that came meanwhile go as one batch when a batch comes back, each with its own rows."""
    reads = app.state.reads or app.state.thread_reads
    line, headers = owned_line(client, session)
    token = headers["Authorization"].removeprefix("Bearer ")
    sent: list[int] = []  # reads in each batch sent
    original = reads.batch_rows

    async def scenario() -> list[Any]:
        release = [asyncio.Event(), asyncio.Event()]

        async def batch_rows(together: Any, params: list[dict[str, Any]]) -> Any:
            held = len(sent)
            sent.append(len(params))
            if held < len(release):  # the first two batches are held out
                await release[held].wait()
            return await original(together, params)

        reads.batch_rows = batch_rows
        now = clock.now()
        ask = balance_read.parameters(token, line.id, now)
        first = asyncio.ensure_future(reads.rows_together(balance_read.TOGETHER, ask))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        second = asyncio.ensure_future(reads.rows_together(balance_read.TOGETHER, ask))
        for _ in range(4):
            await asyncio.sleep(0)
        assert sent == [1, 1]  # two out
        later = []
        for n in range(3):  # three more, each in a turn of its own: they wait
            later.append(
                asyncio.ensure_future(
                    reads.rows_together(
                        balance_read.TOGETHER,
                        balance_read.parameters("not-a-token" if n == 1 else token, line.id, now),
                    )
                )
            )
            for _ in range(3):
                await asyncio.sleep(0)
        assert sent == [1, 1]
        release[0].set()
        answers = [await first, *[await r for r in later]]
        release[1].set()
        answers.append(await second)
        return answers

    try:
        answers = client.portal.call(scenario)
    finally:
        del reads.batch_rows
    assert sent == [1, 1, 3]
    assert [len(a) for a in answers] == [2, 2, 0, 2, 2]
    assert answers[1] == answers[0] == answers[3] == answers[4]
