"""Mixed-load benchmark: charging, renewals and balance reads at once against a real `tongka serve`, next to /healthz.

    .venv/bin/python bench/mixed.py                              # SQLite, then PostgreSQL (database tongka_bench_mixed)
    .venv/bin/python bench/mixed.py --backend sqlite --seconds 20 --readers 64

The finding it measures (issue 10): on SQLite, balance reads right after a charging run
deadlocked the server. Here, on a database prepared as bench/charging.py prepares it (lines
with a 100 GB bucket each) and a pack on sale (HK 1 GB, 7 days), `--subscribers` accounts
each have a line and a bearer token, made straight in the database (no password hashing at
setup). Then, all at once, on keep-alive connections of bench/charging.py's small client:

* `--smfs` SMFs running charging sessions over Nchf (create, updates, release), on every line;
* `--readers` subscribers asking `GET /api/v1/lines/{id}/balance` back to back;
* `--renewers` subscribers renewing: `POST /api/v1/orders` (with an Idempotency-Key), then the
  sandbox payer paying it (`POST /sandbox/payments/{id}/complete`, which sends the provider's
  callback to the server and waits for its answer: the payment, the bucket, the receipt).

It prints throughput, p50 and p99 per operation, the count of 5xx answers and of requests
not answered within `--timeout` (both must be zero), each rate as a ratio of /healthz's
asked by as many connections before and after, and the CPU of the server, PostgreSQL, this
client and everything else on the machine. Nothing here is a test: it never fails on its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))
from charging import (
    Connection,
    CpuMeter,
    Phase,
    Ports,
    arun,
    cpu_line,
    durability,
    healthz,
    machine,
    prepare,
    server,
    smf,
)
from tongka.account import service as accounts
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.money import GB

PG_URL = "postgresql://postgres@127.0.0.1:5432/tongka_bench_mixed"  # not bench/charging.py's: both may run
OPERATIONS = ("balance", "order", "payment", "create", "update", "release")
PACK = "hk-1gb-7d"


class Answers(Phase):
    """A phase's answers, and among the failures those that were 5xx or no answer at all."""

    def __init__(self) -> None:
        super().__init__()
        self.server_errors: Counter[str] = Counter()
        self.unanswered: Counter[str] = Counter()


async def _call(
    conn: Connection,
    phase: Answers,
    kind: str,
    timeout: float,
    method: bytes,
    path: bytes,
    body: bytes = b"",
    headers: bytes = b"",
    ok: tuple[int, ...] = (200,),
) -> tuple[int, dict[bytes, bytes], bytes] | None:
    started = time.perf_counter()
    try:
        status, answer_headers, answer = await asyncio.wait_for(
            conn.send(method, path, body, headers), timeout
        )
    except TimeoutError:
        phase.record(kind, started, False)
        phase.unanswered[kind] += 1
        return None
    phase.record(kind, started, status in ok)
    if status >= 500:
        phase.server_errors[kind] += 1
    return status, answer_headers, answer


async def reader(
    port: int, phase: Answers, token: str, line_id: str, until: float, timeout: float
) -> None:
    conn = await Connection.open(port)
    headers = b"Authorization: Bearer %s\r\n" % token.encode()
    path = f"/api/v1/lines/{line_id}/balance".encode()
    while time.perf_counter() < until:
        if await _call(conn, phase, "balance", timeout, b"GET", path, headers=headers) is None:
            conn.close()  # an answer may still come on this connection: start another
            conn = await Connection.open(port)
    conn.close()


async def renewer(
    port: int, phase: Answers, token: str, line_id: str, pack_id: str, until: float, timeout: float
) -> None:
    conn = await Connection.open(port)
    auth = b"Authorization: Bearer %s\r\n" % token.encode()
    order = json.dumps(
        {"line_id": line_id, "pack_id": pack_id, "currency": "HKD", "payment_method": "alipay"}
    ).encode()
    while time.perf_counter() < until:
        headers = auth + b"Idempotency-Key: %s\r\n" % uuid.uuid4().hex.encode()
        made = await _call(
            conn, phase, "order", timeout, b"POST", b"/api/v1/orders", order, headers, ok=(201,)
        )
        if made is None or made[0] != 201:
            if made is None:
                conn.close()
                conn = await Connection.open(port)
            continue
        payment_id = json.loads(made[2])["payment"]["id"]
        await _call(
            conn,
            phase,
            "payment",
            timeout,
            b"POST",
            f"/sandbox/payments/{payment_id}/complete".encode(),
            b'{"outcome":"succeeded"}',
        )
    conn.close()


async def charging_smf(
    ports: Ports, phase: Answers, lines: list[str], updates: int, until: float
) -> None:
    conn = await Connection.open(ports.nchf)  # the Nchf listener, with an SMF's access token
    await smf(conn, phase, lines, updates, until, ports.token)
    conn.close()


async def mixed_phase(
    ports: Ports,
    args: argparse.Namespace,
    seconds: float,
    subscribers: list[tuple[str, str]],
    pack_id: str,
    imsis: list[str],
    meter: CpuMeter | None,
) -> Answers:
    phase = Answers()
    before, started = (meter.read() if meter else None), time.perf_counter()
    until = started + seconds
    port = ports.public
    readers = [subscribers[i % len(subscribers)] for i in range(args.readers)]
    renewers = [subscribers[-1 - i % len(subscribers)] for i in range(args.renewers)]
    await asyncio.gather(
        *(reader(port, phase, token, line_id, until, args.timeout) for token, line_id in readers),
        *(
            renewer(port, phase, token, line_id, pack_id, until, args.timeout)
            for token, line_id in renewers
        ),
        *(
            charging_smf(ports, phase, imsis[i :: args.smfs], args.updates, until)
            for i in range(args.smfs)
        ),
    )
    phase.seconds = time.perf_counter() - started
    if meter and before:
        phase.cpu = CpuMeter.shares(before, meter.read(), phase.seconds)
    return phase


async def healthz_phase(port: int, connections: int, seconds: float, meter: CpuMeter) -> Phase:
    conns = [await Connection.open(port) for _ in range(connections)]
    phase = Phase()
    before, started = meter.read(), time.perf_counter()
    await asyncio.gather(*(healthz(c, phase, started + seconds) for c in conns))
    phase.seconds = time.perf_counter() - started
    phase.cpu = CpuMeter.shares(before, meter.read(), phase.seconds)
    for c in conns:
        c.close()
    return phase


def subscribers(url: str, count: int) -> list[tuple[str, str]]:
    """The pack renewed, and `count` accounts, each with a line of the inventory and a bearer token: (token, line id)."""
    password_hash = PasswordHasher().hash(
        "bench-password-0"
    )  # one hash for all: setup is not what is measured
    engine = make_engine(url)
    made = []
    with transaction(make_sessionmaker(engine)) as session:
        catalog.upsert_pack(
            session,
            code=PACK,
            names={"en": "Hong Kong 1 GB · 7 days"},
            zone="hk",
            volume_bytes=GB,
            validity_days=7,
            prices={"HKD": 1800, "CNY": 1600},
            channels=["app"],
        )
        lines = session.scalars(
            select(Line)
            .where(Line.account_id.is_(None), Line.imsi.like("45400%"))
            .order_by(Line.imsi)
            .limit(count)
        ).all()
        for n, line in enumerate(lines):
            account = Account(
                username=f"bench{n}",
                email=f"bench{n}@example.com",
                password_hash=password_hash,
                language="en",
            )
            session.add(account)
            session.flush()
            line.account_id, line.bound_at = account.id, datetime.now(UTC)
            made.append((accounts.issue_token(session, account, 86_400), str(line.id)))
    engine.dispose()
    return made


def pack_of(port: int) -> str:
    async def ask() -> str:
        conn = await Connection.open(port)
        status, _, body = await conn.send(b"GET", b"/api/v1/packs?channel=app")
        conn.close()
        assert status == 200, body
        return next(p["id"] for p in json.loads(body) if p["code"] == PACK)

    return arun(ask())  # type: ignore[no-any-return]


def report(label: str, phase: Answers, reference: float) -> None:
    print(f"  {label}: {phase.seconds:.0f} s")
    for kind in OPERATIONS:
        line = phase.line(kind, kind)
        errors = f"   5xx {phase.server_errors[kind]}, unanswered {phase.unanswered[kind]}"
        print(f"{line}{errors}   ratio {phase.rate(kind) / reference:.3f}")
    print(phase.line("all"))
    total_5xx, total_none = sum(phase.server_errors.values()), sum(phase.unanswered.values())
    print(
        f"  5xx answers: {total_5xx}; requests not answered within the timeout: {total_none}"
        + ("   <- MUST BE ZERO" if total_5xx or total_none else "")
    )
    if phase.cpu:
        print(cpu_line(phase))


def bench(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tongka-mixed-") as tmp:
        home = Path(tmp)
        print(
            f"\n== {backend}: preparing {args.lines} lines with a 100 GB bucket each, "
            f"a pack, {args.subscribers} subscribers with a line and a token",
            flush=True,
        )
        url, env = prepare(backend, home, args.lines, PG_URL)
        env["TONGKA_ENV"] = "dev"  # the payment sandbox pays the renewals
        subs = subscribers(url, args.subscribers)
        print(f"  {durability(url)}")
        imsis = [f"45400{n:010d}" for n in range(args.lines)]
        connections = args.readers + args.renewers + args.smfs
        with server(env, home, args.workers) as (ports, process):
            port = ports.public
            meter = CpuMeter(process.pid)
            pack_id = pack_of(port)
            arun(
                mixed_phase(ports, args, args.warmup, subs, pack_id, imsis, None)
            )  # warm up, and a charging history
            first = arun(healthz_phase(port, connections, args.seconds, meter))
            phase = arun(mixed_phase(ports, args, args.seconds, subs, pack_id, imsis, meter))
            second = arun(healthz_phase(port, connections, args.seconds, meter))
        reference = statistics.mean([first.rate(), second.rate()])
        print(
            f"  {connections} connections: {args.readers} balance readers, {args.renewers} renewers, {args.smfs} SMFs "
            f"(sessions of 1 create, {args.updates} updates, 1 release); server workers {args.workers}; "
            f"request timeout {args.timeout:.0f} s"
        )
        print(first.line("GET /healthz (1)"))
        print(cpu_line(first))
        report("mixed load", phase, reference)
        print(second.line("GET /healthz (2)"))
        print(cpu_line(second))
        log = (home / "server.log").read_text(errors="replace")
        busy = log.count("database_busy")
        crashes = log.count("unhandled_error") + log.count("Traceback")
        print(f"  server log: {busy} database_busy, {crashes} unhandled errors or tracebacks")
        if crashes:
            print(log[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=15.0, help="each measured phase")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="mixed load before measuring, not counted"
    )
    parser.add_argument(
        "--readers", type=int, default=64, help="connections reading a balance back to back"
    )
    parser.add_argument(
        "--renewers", type=int, default=4, help="connections ordering and paying back to back"
    )
    parser.add_argument(
        "--smfs", type=int, default=16, help="connections charging (concurrent sessions)"
    )
    parser.add_argument(
        "--subscribers", type=int, default=64, help="accounts with a line and a token"
    )
    parser.add_argument("--updates", type=int, default=8, help="updates per charging session")
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="a request not answered by then counts as unanswered",
    )
    parser.add_argument("--workers", type=int, default=1, help="tongka serve --workers")
    args = parser.parse_args()
    print(f"tongka mixed-load benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)


if __name__ == "__main__":
    main()
