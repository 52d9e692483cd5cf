"""Renewals and balance reads of a real `tongka serve`, beside pgbench TPC-B and /healthz in the same run (issue 12).

    .venv/bin/python bench/renewal.py                                 # PostgreSQL, then SQLite; 64 subscribers
    .venv/bin/python bench/renewal.py --backend postgresql --seconds 20 --workers 2
    .venv/bin/python bench/renewal.py --backend sqlite --subscribers 16 --seconds 8
    .venv/bin/python bench/renewal.py --backend postgresql --only reads    # /healthz and the balance reads only
    .venv/bin/python bench/renewal.py --backend postgresql --only renewals # pgbench and the renewals only

One run per backend, in this order:
1. `pgbench` TPC-B, 8 clients, on a database of its own (bench/nchf.py's `pgbench`): the yardstick
   of this machine at this moment (also for the SQLite run, when PostgreSQL is there).
2. A fresh database (PostgreSQL `tongka_bench_renewal`, `fsync` checked and printed; or a SQLite
   file), `tongka db upgrade`, `tongka demo load` (the catalog and its offers), `tongka lines
   import` of generated lines; for each subscriber an account, its bound line and a bearer token
   written straight into the database (registering through the API would spend a quarter second
   of Argon2 each and meet the per-address limit of registrations); the readers' lines get two
   buckets each. Then `tongka serve` in its own process (`--workers`), VACUUM ANALYZE.
3. Over HTTP only, so that it measures whatever the server does inside:
   * `GET /healthz` and the app's balance read (`GET /api/v1/lines/{id}/balance`, each request
     with a reader's token and line) from `wrk` (a Lua script picks the line and token), the same
     number of connections for both: reads/s and their ratio to /healthz (target ≥ 0.5).
   * renewals: every subscriber on a keep-alive connection of its own, looping: order a pack
     (`POST /api/v1/orders`, the app's body and Idempotency-Key), pay at the sandbox provider's
     checkout page as the payer does (`POST <checkout_url>/pay`, a form with `outcome=succeeded`),
     then `GET /api/v1/orders/{id}` until `fulfilled`. A renewal's time runs from the order's POST
     to the answer that says fulfilled. Full load, then the same subscribers paced to half that rate
     (p99 target ≤ 500 ms there); renewals/s as a ratio to pgbench's tps (target ≥ 0.2).
4. Per renewal and per read: SQL statements and commits the server's processes sent through
   SQLAlchemy (counted by a `sitecustomize` put on the server's PYTHONPATH: an event listener on
   every Engine, per process, written to a file every 200 ms; statements psycopg runs itself, such as
   `pool_pre_ping`'s, are not in it), on PostgreSQL also the transactions the database counted for
   this database (`pg_stat_database`, read after backends have flushed their statistics: a phase ends
   with an 11 s pause), and the CPU of the server (all its processes), PostgreSQL's backends of this
   database with its WAL writer, the load generator, and the rest of the machine.

Nothing here is a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from sqlalchemy import select, text
from stdnum import luhn

from charging import (
    TICKS,
    _machine_busy,
    _ticks,
    _tree,
    analyse,
    arun,
    durability,
    fresh_database,
    machine,
    server,
    tongka,
)
from nchf import _backends, other_work, pgbench
from tongka.account import service as accounts
from tongka.account.models import Account, Line
from tongka.catalog.models import Pack
from tongka.charging.nf_auth import write_dev_key
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.ledger import buckets
from tongka.money import GB

PG_URL = "postgresql://postgres@127.0.0.1:5432/tongka_bench_renewal"
PACK = "hk-5gb-30d"
PASSWORD = "correct horse battery"
STATS_SETTLE = 11.0  # PostgreSQL 15: an idle backend flushes its statistics within 10 s

# Counts every statement and commit a process sends through SQLAlchemy; written where the
# bench reads it. Installed as `sitecustomize` on the server's PYTHONPATH only.
COUNTER = """
import os, threading, time
_dir = os.environ.get("TONGKA_BENCH_COUNT_DIR")
if _dir:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    _n = [0, 0, 0]  # statements, commits, rollbacks
    def _statement(*_a, **_k): _n[0] += 1
    def _commit(*_a): _n[1] += 1
    def _rollback(*_a): _n[2] += 1
    event.listen(Engine, "before_cursor_execute", _statement)
    event.listen(Engine, "commit", _commit)
    event.listen(Engine, "rollback", _rollback)
    def _write():
        path = os.path.join(_dir, str(os.getpid()))
        while True:
            with open(path + ".tmp", "w") as f:
                f.write("%d %d %d" % tuple(_n))
            os.replace(path + ".tmp", path)
            time.sleep(0.2)
    threading.Thread(target=_write, daemon=True).start()
"""


# --- the subscribers --------------------------------------------------------------------------


def inventory(count: int) -> str:
    """Lines of numbers no demo line has (`tongka lines import`'s CSV)."""
    rows = ["iccid,hk_number,cn_number,imsi"]
    for n in range(count):
        body = f"898520259{n:09d}"
        rows.append(f"{body}{luhn.calc_check_digit(body)},+85259{n:06d},,454009{n:09d}")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class Subscriber:
    line_id: str
    token: str


def prepare(
    backend: str, home: Path, subscribers: int, readers: int, pg_url: str
) -> tuple[str, dict[str, str], list[Subscriber], list[Subscriber], str]:
    url = fresh_database(backend, home, pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        TONGKA_ENV="dev",  # the sandbox provider and a throwaway key
        TONGKA_DATABASE_URL=url,
        TONGKA_SECRET_KEY=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_PAYMENT_SECRET=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_STORE_URL=f"sqlite:///{home / 'sandbox.db'}",
    )
    tongka(env, home, "db", "upgrade")
    tongka(env, home, "demo", "load")
    (home / "lines.csv").write_text(inventory(subscribers + readers))
    tongka(env, home, "lines", "import", str(home / "lines.csv"))
    engine = make_engine(url)
    now = datetime.now(UTC)
    password_hash = accounts.new_password_hash("bench", PASSWORD)  # one Argon2 hash for all
    made: list[Subscriber] = []
    with transaction(make_sessionmaker(engine)) as session:
        pack_id = str(session.scalars(select(Pack.id).where(Pack.code == PACK)).one())
        lines = session.scalars(
            select(Line).where(Line.iccid.like("898520259%")).order_by(Line.iccid)
        ).all()
        for n, line in enumerate(lines):
            account = Account(
                id=uuid.uuid4(),
                username=f"bench{n:05d}",
                email=f"bench{n:05d}@example.com",
                password_hash=password_hash,
                language="en",
            )
            session.add(account)
            session.flush()
            line.account_id, line.bound_at = account.id, now
            token = accounts.issue_token(session, account, 7 * 86400)
            made.append(Subscriber(str(line.id), token))
            if n >= subscribers:  # a reader: two buckets, as a subscriber who renewed twice
                for zone in ("hk", "both"):
                    buckets.grant(
                        session,
                        line_id=line.id,
                        zone=zone,
                        amount=5 * GB,
                        valid_from=now - timedelta(days=1),
                        expires_at=now + timedelta(days=30),
                        reason="pack_purchase",
                        reference=f"order:bench-{line.id}-{zone}",
                    )
    engine.dispose()
    return url, env, made[:subscribers], made[subscribers:], pack_id


# --- measuring --------------------------------------------------------------------------------


def counted(directory: Path) -> tuple[int, int, int]:
    """Statements, commits and rollbacks sent through SQLAlchemy by the server's processes so far."""
    total = [0, 0, 0]
    for f in directory.iterdir():
        if f.suffix != ".tmp":
            for i, v in enumerate(f.read_text().split()):
                total[i] += int(v)
    return total[0], total[1], total[2]


def transactions(url: str) -> int | None:
    if not url.startswith("postgresql"):
        return None
    engine = make_engine(url)
    with engine.connect() as c:
        n = c.execute(
            text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
        ).scalar_one()
    engine.dispose()
    return int(n) - 1  # this one


class Meter:
    """CPU of the server's processes, PostgreSQL's backends of the bench database and its WAL
    writer, the load generator (this process and the children it waited for: wrk), and the machine;
    the server's SQL statements and commits; PostgreSQL's transactions on the bench database."""

    def __init__(self, server_pid: int, url: str, counts: Path) -> None:
        self.server_pid, self.url, self.counts = server_pid, url, counts
        self.postgres = url.startswith("postgresql")

    def read(self) -> dict[str, Any]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg = _backends(self.url) if self.postgres else []
        return {
            "server": {p: _ticks(p) for p in _tree(self.server_pid)},
            "pg": {p: _ticks(p) for p in pg},
            "client": time.process_time() + children.ru_utime + children.ru_stime,
            "busy": _machine_busy(),
            "t": time.monotonic(),
            "sql": counted(self.counts),
            "xacts": transactions(self.url),
        }

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any], seconds: float) -> dict[str, float]:
        """Cores over `seconds` (the phase: the pause after it took no CPU of ours), and counts."""
        server = sum(t - a["server"].get(p, 0) for p, t in b["server"].items())
        pg = sum(t - a["pg"].get(p, t) for p, t in b["pg"].items())  # one born meanwhile: left out
        d = {
            "server": server / TICKS / seconds,
            "postgres": pg / TICKS / seconds,
            "client": (b["client"] - a["client"]) / seconds,
            "machine": (b["busy"] - a["busy"]) / TICKS / (b["t"] - a["t"]),
            "statements": b["sql"][0] - a["sql"][0],
            "commits": b["sql"][1] - a["sql"][1],
            "rollbacks": b["sql"][2] - a["sql"][2],
        }
        # The machine's busy share is over the whole window (phase and pause); ours only in the phase.
        window = b["t"] - a["t"]
        ours = (server + pg) / TICKS / window + (b["client"] - a["client"]) / window
        d["other"] = d["machine"] - ours
        if a["xacts"] is not None:
            d["xacts"] = b["xacts"] - a["xacts"]
        return d


def per_op(label: str, count: int, d: dict[str, float], seconds: float) -> str:
    if not count:
        return f"    {label}: nothing done"
    ms = {k: d[k] * seconds / count * 1000 for k in ("server", "postgres", "client")}
    xacts = f", PostgreSQL transactions {d['xacts'] / count:.1f}" if "xacts" in d else ""
    return (
        f"    per {label}: SQL statements {d['statements'] / count:.1f}, commits {d['commits'] / count:.1f}, "
        f"rollbacks {d['rollbacks'] / count:.1f}{xacts}; CPU ms: server {ms['server']:.2f}, "
        f"PostgreSQL {ms['postgres']:.2f}, load generator {ms['client']:.2f}\n"
        f"    cores: server {d['server']:.2f}, PostgreSQL {d['postgres']:.2f}, load generator {d['client']:.2f}; "
        f"other load {d['other']:.2f}, machine {d['machine']:.2f} of {os.cpu_count()}"
    )


# --- reads: wrk -------------------------------------------------------------------------------

WRK_SCRIPT = """
local targets = {%s}
local n = 0
request = function()
  n = n + 1
  local t = targets[(n %% #targets) + 1]
  return wrk.format("GET", t[1], {["Authorization"] = "Bearer " .. t[2]})
end
"""


def _ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if found is None:
        raise SystemExit(f"wrk gave a latency of {value!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _percentile(out: str, q: int) -> float:
    """From wrk's latency distribution; NaN when it has none (nothing answered in time)."""
    found = re.search(rf"^\s+{q}%\s+(\S+)$", out, re.M)
    return _ms(found.group(1)) if found else float("nan")


def wrk(
    port: int,
    path: str | None,
    readers: list[Subscriber],
    connections: int,
    seconds: float,
    home: Path,
) -> dict[str, Any]:
    """`path`: one path for every request (no token); None: each request a reader's balance."""
    command = [
        "wrk",
        f"-c{connections}",
        f"-t{min(2, connections)}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    if path is None:
        targets = ",".join(f'{{"/api/v1/lines/{r.line_id}/balance","{r.token}"}}' for r in readers)
        script = home / "balance.lua"
        script.write_text(WRK_SCRIPT % targets)
        command += ["-s", str(script)]
        path = "/"
    done = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=False
    )
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if done.returncode or total is None:
        raise SystemExit(f"wrk failed:\n{out}{done.stderr}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(total.group(1)),
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _percentile(out, 50),
        "p99": _percentile(out, 99),
        "failed": int(bad.group(1)) if bad else 0,
        "errors": errors.group(1) if errors else "",
    }


# --- renewals: a few lines of HTTP/1.1 on asyncio -----------------------------------------------


class Connection:
    """One keep-alive connection, one request at a time, as one app on one phone."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port), port)

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.writer.write(request)
        first = await self.reader.readline()
        if (
            not first
        ):  # the server closed the idle connection (keep-alive timeout): as a phone would, again
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(request)
            first = await self.reader.readline()
        status = int(first.split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


@dataclass
class Renewals:
    times: list[float] = field(default_factory=list)
    requests: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def fail(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1

    def pct(self, q: float) -> float:
        values = sorted(self.times)
        return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")


async def renew(conn: Connection, sub: Subscriber, pack_id: str, run: Renewals) -> None:
    """One renewal as the app makes it: order, pay at the provider's page, poll until fulfilled."""
    auth = {"Authorization": f"Bearer {sub.token}"}
    body = json.dumps(
        {"line_id": sub.line_id, "pack_id": pack_id, "currency": "HKD", "payment_method": "alipay"}
    ).encode()
    started = time.perf_counter()
    run.requests += 1
    status, answer = await conn.send(
        "POST",
        "/api/v1/orders",
        body,
        {**auth, "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    if status != 201:
        run.fail(f"order {status}")
        await asyncio.sleep(0.1)
        return
    order = json.loads(answer)
    checkout = urlsplit(order["payment"]["checkout_url"]).path
    run.requests += 1
    status, _ = await conn.send(
        "POST",
        f"{checkout}/pay",
        b"outcome=succeeded",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status not in (200, 303):
        run.fail(f"pay {status}")
        return
    while True:
        run.requests += 1
        status, answer = await conn.send("GET", f"/api/v1/orders/{order['id']}", headers=auth)
        state = json.loads(answer).get("status") if status == 200 else f"HTTP {status}"
        if state == "fulfilled":
            run.times.append(time.perf_counter() - started)
            return
        # paid at the provider but not fulfilled within 15 s: the callback was lost (the sandbox
        # does not retry it as a real provider would)
        if state not in ("awaiting_payment", "paid") or time.perf_counter() - started > 15:
            run.fail(f"still {state}")
            return
        await asyncio.sleep(0.02)


async def renewals(
    port: int, subs: list[Subscriber], pack_id: str, seconds: float, rate: float | None
) -> Renewals:
    """Every subscriber renewing back to back; or, with `rate`, renewals started at that rate
    (evenly spaced, each by the next idle subscriber: an open load that does not slow down with
    the server, so that latency at that rate is what a subscriber would see)."""
    conns = [await Connection.open(port) for _ in subs]
    run = Renewals()
    started = time.perf_counter()
    until = started + seconds
    starts: asyncio.Queue[None] = asyncio.Queue()

    async def pace() -> None:
        assert rate
        n = 0
        while (due := started + n / rate) < until:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            starts.put_nowait(None)
            n += 1

    async def subscriber(conn: Connection, sub: Subscriber) -> None:
        while time.perf_counter() < until:
            if rate:
                try:
                    await asyncio.wait_for(starts.get(), until - time.perf_counter())
                except TimeoutError:
                    return
            await renew(conn, sub, pack_id, run)

    await asyncio.gather(
        *([pace()] if rate else []),
        *(subscriber(c, s) for c, s in zip(conns, subs, strict=True)),
    )
    run.seconds = time.perf_counter() - started
    for c in conns:
        c.close()
    return run


# --- the run ------------------------------------------------------------------------------------


class _ReadsDone(Exception):
    """`--only reads`: the read phases are over, the renewals are skipped."""


def bench(backend: str, args: argparse.Namespace, tps: float | None) -> None:
    with tempfile.TemporaryDirectory(prefix="tongka-bench-renewal-") as tmp:
        home = Path(tmp)
        print(
            f"\n== {backend}: {args.subscribers} subscribers renewing, {args.readers} reading; "
            f"tongka serve --workers {args.workers}; {other_work()}",
            flush=True,
        )
        url, env, subs, readers, pack_id = prepare(
            backend, home, args.subscribers, args.readers, args.pg_url
        )
        print(f"  {durability(url)}")
        counts = home / "counts"
        counts.mkdir()
        (home / "shim").mkdir()
        (home / "shim" / "sitecustomize.py").write_text(COUNTER)
        path = [str(home / "shim"), *([str(args.source.resolve())] if args.source else [])]
        env.update(PYTHONPATH=os.pathsep.join(path), TONGKA_BENCH_COUNT_DIR=str(counts))
        # `tongka serve` starts the Nchf listener too, which in dev signs tokens with this key
        env["TONGKA_NRF_DEV_KEY_FILE"] = str(home / "nrf-dev-key.pem")
        write_dev_key(home / "nrf-dev-key.pem")
        try:
            with server(env, home, args.workers) as (ports, process):
                port = ports.public  # renewals and reads go to the public app
                time.sleep(1.0)
                if process.poll() is not None:
                    raise SystemExit(
                        "the server stopped:\n" + (home / "server.log").read_text()[-3000:]
                    )
                analyse(url)
                meter = Meter(process.pid, url, counts)

                def phase(label: str, work: Any) -> tuple[Any, dict[str, float], float]:
                    before, t0 = meter.read(), time.monotonic()
                    result = work()
                    seconds = time.monotonic() - t0
                    time.sleep(STATS_SETTLE if meter.postgres else 0.5)
                    return result, Meter.delta(before, meter.read(), seconds), seconds

                # warm-up: every route once per connection, not measured
                if args.only != "reads":
                    arun(renewals(port, subs, pack_id, min(3.0, args.seconds), None))
                if args.only != "renewals":
                    wrk(port, None, readers, args.connections, 2, home)

                    health, d, s = phase(
                        "healthz",
                        lambda: wrk(
                            port, "/healthz", [], args.connections, args.read_seconds, home
                        ),
                    )
                    print(
                        f"  GET /healthz      {health['rate']:8,.0f}/s  p50 {health['p50']:7.2f} ms  p99 {health['p99']:7.2f} ms"
                        f"  ({health['requests']} answered, {health['failed']} not 2xx {health['errors']})\n"
                        + per_op("request", health["requests"], d, s),
                        flush=True,
                    )
                    read, d, s = phase(
                        "balance",
                        lambda: wrk(port, None, readers, args.connections, args.read_seconds, home),
                    )
                    print(
                        f"  GET …/balance     {read['rate']:8,.0f}/s  p50 {read['p50']:7.2f} ms  p99 {read['p99']:7.2f} ms"
                        f"  ({read['requests']} answered, {read['failed']} not 2xx {read['errors']})"
                        f"  = {read['rate'] / health['rate']:.2f} × /healthz\n"
                        + per_op("read", read["requests"], d, s),
                        flush=True,
                    )
                    if args.connections > 1:
                        one, d, s = phase(
                            "balance-1",
                            lambda: wrk(port, None, readers, 1, args.read_seconds, home),
                        )
                        print(
                            f"  …/balance, 1 conn {one['rate']:8,.0f}/s  p50 {one['p50']:7.2f} ms  p99 {one['p99']:7.2f} ms\n"
                            + per_op("read", one["requests"], d, s),
                            flush=True,
                        )

                def show(label: str, run: Renewals, d: dict[str, float], s: float) -> float:
                    rate = len(run.times) / run.seconds
                    ratio = f" = {rate / tps:.3f} × pgbench" if tps else ""
                    failed = f", FAILED {run.failures}" if run.failures else ""
                    print(
                        f"  renewals, {label:9} {rate:7.1f}/s{ratio}  p50 {run.pct(0.5):7.0f} ms  p99 {run.pct(0.99):7.0f} ms"
                        f"  ({len(run.times)} fulfilled, {run.requests / max(1, len(run.times)):.1f} requests each{failed})\n"
                        + per_op("renewal", len(run.times), d, s),
                        flush=True,
                    )
                    return rate

                if args.only == "reads":
                    raise _ReadsDone()
                full, d, s = phase(
                    "full", lambda: arun(renewals(port, subs, pack_id, args.seconds, None))
                )
                rate = show("full", full, d, s)
                half, d, s = phase(
                    "half", lambda: arun(renewals(port, subs, pack_id, args.seconds, rate / 2))
                )
                show("half rate", half, d, s)
                log = (home / "server.log").read_text(errors="replace")
        except _ReadsDone:  # `--only reads`: the server stopped, the ledger checked all the same
            log = (home / "server.log").read_text(errors="replace")
        except subprocess.TimeoutExpired:  # asked to stop, it took over 15 s (a loaded machine)
            process.kill()
            process.wait()
            log = (home / "server.log").read_text(errors="replace")
        verify = subprocess.run(
            [str(Path(sys.executable).parent / "tongka"), "ledger", "verify"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(
            f"  tongka ledger verify: exit {verify.returncode}: {(verify.stdout + verify.stderr).strip().splitlines()[-1:]}"
            f"; {other_work()}"
        )
        if "Traceback" in log:
            print("  the server logged errors:\n" + log[log.index("Traceback") :][:3000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--subscribers", type=int, default=64, help="renewing at once")
    parser.add_argument("--readers", type=int, default=256, help="lines whose balance wrk reads")
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections")
    parser.add_argument("--seconds", type=float, default=15.0, help="each renewal phase")
    parser.add_argument("--read-seconds", type=float, default=10.0, help="each wrk phase")
    parser.add_argument("--workers", type=int, default=1, help="tongka serve --workers")
    parser.add_argument("--pgbench-seconds", type=float, default=15.0)
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument(
        "--source",
        type=Path,
        help="the server imports tongka from this directory (another checkout's src: before and after in one sitting)",
    )
    parser.add_argument(
        "--only",
        choices=("reads", "renewals"),
        help="reads: only /healthz and the balance reads (no pgbench, no renewals), for a quick run; "
        "renewals: pgbench and the renewals, no reads",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    print(
        f"tongka renewal and balance-read benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}"
    )
    tps = None
    if args.only != "reads":
        tps, detail = pgbench(args.pg_url, args.pgbench_clients, args.pgbench_seconds)
        print(
            f"  pgbench TPC-B, {args.pgbench_clients} clients, {args.pgbench_seconds:.0f} s: {tps:,.0f} tps ({detail}); {other_work()}",
            flush=True,
        )
    for backend in ("postgresql", "sqlite") if args.backend == "both" else (args.backend,):
        bench(backend, args, tps)


if __name__ == "__main__":
    main()
