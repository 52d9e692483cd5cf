"""Charging benchmark: how many Nchf_ConvergedCharging operations a real `tongka serve` answers, next to /healthz.

    .venv/bin/python bench/charging.py                      # SQLite, then PostgreSQL (database tongka_bench)
    .venv/bin/python bench/charging.py --backend postgresql --seconds 20 --concurrency 64
    .venv/bin/python bench/charging.py --backend postgresql --profile   # where an update's time goes

For each backend: a fresh database (a SQLite file in a temporary directory, or the
PostgreSQL database `tongka_bench` or `--pg-url`, dropped and made again), `tongka db upgrade`,
`tongka lines import` of a generated inventory, a 100 GB bucket per line granted through
the ledger's own `buckets.grant`, then `tongka serve` in its own process (the public app, and
the Nchf listener as its child on a port of its own, HTTP/1.1 allowed in dev). The load comes
from this process: K keep-alive connections to the Nchf listener, each an SMF with an access
token from the listener's dev NRF running sessions back to back on lines of its own (create,
UPDATES updates reporting usage and asking for more, release), and K connections asking the
public app's GET /healthz, the server's cheapest answer, before and after. The client is a few lines of HTTP/1.1 on asyncio (uvloop when
installed) rather than httpx, so that on two cores it takes as little CPU from the
server as possible; its own CPU time is measured and printed with the server's and the
database's. Nothing here is a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from stdnum import luhn

from tongka.account.models import Line
from tongka.charging.nf_auth import write_dev_key
from tongka.db import make_engine, make_sessionmaker, normalise_url, transaction
from tongka.ledger import buckets
from tongka.money import GB, MB

TONGKA = Path(sys.executable).parent / "tongka"
PG_URL = "postgresql://postgres@127.0.0.1:5432/tongka_bench"
BASE = "/nchf-convergedcharging/v3/chargingdata"
KINDS = ("create", "update", "release")
TICKS = os.sysconf("SC_CLK_TCK")


# --- setting up a server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(backend: str, home: Path, pg_url: str = PG_URL) -> str:
    if backend == "sqlite":
        return f"sqlite:///{home / 'bench.db'}"
    url = make_url(normalise_url(pg_url))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return pg_url


def inventory(count: int) -> str:
    """`count` lines as `tongka lines import` reads them: ICCID (Luhn), +852 number, IMSI."""
    rows = [["iccid", "hk_number", "cn_number", "imsi"]]
    for n in range(count):
        body = f"898520249{n:09d}"
        rows.append([body + luhn.calc_check_digit(body), f"+85251{n:06d}", "", f"45400{n:010d}"])
    return "\n".join(",".join(r) for r in rows) + "\n"


def tongka(env: dict[str, str], home: Path, *args: str) -> None:
    done = subprocess.run(
        [str(TONGKA), *args],
        check=False,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise SystemExit(
            f"tongka {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def prepare(
    backend: str, home: Path, lines: int, pg_url: str = PG_URL
) -> tuple[str, dict[str, str]]:
    url = fresh_database(backend, home, pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        TONGKA_ENV="dev",  # production is the default; the bench uses the sandbox and a throwaway key
        TONGKA_DATABASE_URL=url,
        TONGKA_SECRET_KEY=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_PAYMENT_SECRET=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_STORE_URL=f"sqlite:///{home / 'sandbox.db'}",
    )
    tongka(env, home, "db", "upgrade")
    (home / "lines.csv").write_text(inventory(lines))
    tongka(env, home, "lines", "import", str(home / "lines.csv"))
    engine = make_engine(url)
    now = datetime.now(UTC)
    with transaction(make_sessionmaker(engine)) as session:
        for line_id in session.scalars(select(Line.id)):
            buckets.grant(
                session,
                line_id=line_id,
                zone="both",
                amount=100 * GB,
                valid_from=now - timedelta(days=1),
                expires_at=now + timedelta(days=30),
                reason="pack_purchase",
                reference=f"order:bench-{line_id}",
            )
    engine.dispose()
    return url, env


def analyse(url: str) -> None:
    """PostgreSQL: statistics of every table, as autovacuum keeps them on a database in service
    (pgbench -i does the same). Without them the plans measured would be those made for the
    few rows the charging tables held when the server first ran each statement."""
    if not url.startswith("postgresql"):
        return
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


@dataclass
class Ports:
    public: int  # the public app: /healthz
    nchf: int  # the Nchf listener
    token: bytes  # an SMF's access token for the Nchf listener


@contextmanager
def server(
    env: dict[str, str], home: Path, workers: int
) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    port, nchf_port = _free_port(), _free_port()
    env = {
        **env,
        "TONGKA_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TONGKA_NCHF_BIND": f"127.0.0.1:{nchf_port}",
        "TONGKA_NRF_DEV_KEY_FILE": str(home / "nrf-dev-key.pem"),
    }
    if not (home / "nrf-dev-key.pem").exists():
        write_dev_key(home / "nrf-dev-key.pem")  # as `make run` makes it
    with (home / "server.log").open("w") as log:
        process = subprocess.Popen(
            [str(TONGKA), "serve", "--port", str(port), "--workers", str(workers)],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        for listening in (port, nchf_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            "the server did not start:\n"
                            + (home / "server.log").read_text()[-3000:]
                        ) from None
                    time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.2)  # every worker up
        yield Ports(port, nchf_port, arun(token(nchf_port))), process
    finally:
        process.terminate()
        process.wait(timeout=15)


# --- a small HTTP/1.1 client --------------------------------------------------------------


class Connection:
    """One keep-alive connection; one request at a time, as an SMF's HTTP/1.1 connection would carry them."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self.reader, self.writer, self.host = reader, writer, f"127.0.0.1:{port}".encode()

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def send(
        self, method: bytes, path: bytes, body: bytes = b"", headers: bytes = b""
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """`headers`: more header lines, each ending in CRLF."""
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (method, path, self.host, headers)
        if body:
            if b"content-type:" not in headers.lower():
                head += b"Content-Type: application/json\r\n"
            head += b"Content-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        headers = {}
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        return status, headers, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


async def token(port: int) -> bytes:
    """An SMF's access token from the Nchf listener's dev NRF (POST /oauth2/token, TS 29.510)."""
    conn = await Connection.open(port)
    form = (
        b"grant_type=client_credentials&nfInstanceId=8c1f2e3d-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
        b"&nfType=SMF&targetNfType=CHF&scope=nchf-convergedcharging"
    )
    status, _, body = await conn.send(
        b"POST",
        b"/oauth2/token",
        form,
        b"Content-Type: application/x-www-form-urlencoded\r\n",
    )
    conn.close()
    if status != 200:
        raise RuntimeError(f"no token from the dev NRF: {status} {body[:300]!r}")
    return str(json.loads(body)["access_token"]).encode()


@dataclass
class Phase:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, per party

    def record(self, kind: str, started: float, ok: bool) -> None:
        if ok:
            self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        else:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def rate(self, kind: str | None = None) -> float:
        count = sum(len(v) for k, v in self.latencies.items() if kind in (None, k))
        return count / self.seconds

    def line(self, label: str, kind: str | None = None) -> str:
        values = sorted(v for k, vs in self.latencies.items() if kind in (None, k) for v in vs)
        if not values:
            return f"  {label:18} no answers"
        p50 = values[len(values) // 2] * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        failed = sum(n for k, n in self.failures.items() if kind in (None, k))
        return (
            f"  {label:18} {self.rate(kind):8.0f} ops/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
            f"({len(values)} answered{f', {failed} FAILED' if failed else ''})"
        )


def _body(seq: int, imsi: str, *, ask: bool = True, used: int | None = None) -> bytes:
    usage: dict[str, object] = {"ratingGroup": 10}
    if ask:
        usage["requestedUnit"] = {"totalVolume": 4 * MB}
    if used is not None:
        usage["usedUnitContainer"] = [{"totalVolume": used, "localSequenceNumber": seq}]
    return json.dumps(
        {
            "nfConsumerIdentification": {
                "nodeFunctionality": "SMF",
                "nFName": "0b6a1e5c-5f8b-4e1b-9f6c-3d7c2a1b0e01",
            },
            "invocationTimeStamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "invocationSequenceNumber": seq,
            "subscriberIdentifier": f"imsi-{imsi}",
            "multipleUnitUsage": [usage],
            "pDUSessionChargingInformation": {
                "pduSessionInformation": {
                    "servingCNPlmnId": {"mcc": "454", "mnc": "00"},
                    "pduSessionID": 5,
                },
            },
        }
    ).encode()


async def smf(
    conn: Connection, phase: Phase, lines: list[str], updates: int, until: float, token: bytes
) -> None:
    """Sessions back to back on this connection's lines until `until`, each ended by a release."""
    auth = b"Authorization: Bearer %s\r\n" % token
    n = 0
    while time.perf_counter() < until:
        imsi = lines[n % len(lines)]
        n += 1
        started = time.perf_counter()
        status, headers, _ = await conn.send(b"POST", BASE.encode(), _body(0, imsi), auth)
        phase.record("create", started, status == 201)
        if status != 201:
            continue
        ref = headers[b"location"].rsplit(b"/", 1)[1]
        seq = 1
        for _ in range(updates):
            if time.perf_counter() >= until:
                break
            started = time.perf_counter()
            status, _, body = await conn.send(
                b"POST",
                b"%s/%s/update" % (BASE.encode(), ref),
                _body(seq, imsi, used=3 * MB),
                auth,
            )
            phase.record("update", started, status == 200 and b'"SUCCESS"' in body)
            seq += 1
        started = time.perf_counter()
        status, _, _ = await conn.send(
            b"POST",
            b"%s/%s/release" % (BASE.encode(), ref),
            _body(seq, imsi, ask=False, used=MB),
            auth,
        )
        phase.record("release", started, status == 204)


async def healthz(conn: Connection, phase: Phase, until: float) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        status, _, _ = await conn.send(b"GET", b"/healthz")
        phase.record("healthz", started, status == 200)


# --- measuring CPU ------------------------------------------------------------------------


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError):
        return 0


def _tree(pid: int) -> list[int]:
    """The server and its processes (workers, the charging process), started from any of its threads."""
    children = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += (task / "children").read_text().split()
    except OSError:
        pass
    return [pid] + [p for child in children for p in _tree(int(child))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _machine_busy() -> int:
    """Ticks all cores spent on anything but idle and I/O wait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]


class CpuMeter:
    """CPU time of the server, PostgreSQL (all its processes, other users' too), this client, and the machine."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def read(self) -> dict[str, float]:
        return {
            "server": sum(_ticks(p) for p in _tree(self.server_pid)) / TICKS,
            "charging": sum(
                _ticks(p) for p in _tree(self.server_pid) if "spawn_main" in _cmdline(p)
            )
            / TICKS,
            "postgres": sum(_ticks(p) for p in _postgres_pids()) / TICKS,
            "client": time.process_time(),
            "busy": _machine_busy() / TICKS,
        }

    @staticmethod
    def shares(
        before: dict[str, float], after: dict[str, float], seconds: float
    ) -> dict[str, float]:
        shares = {k: (after[k] - before[k]) / seconds for k in before}
        shares["other"] = shares["busy"] - shares["server"] - shares["postgres"] - shares["client"]
        return shares


async def run_phase(
    ports: Ports,
    what: str,
    concurrency: int,
    seconds: float,
    warmup: float,
    meter: CpuMeter,
    lines: list[str],
    updates: int,
) -> Phase:
    port = ports.public if what == "healthz" else ports.nchf
    conns = [await Connection.open(port) for _ in range(concurrency)]

    async def drive(phase: Phase, until: float) -> None:
        if what == "healthz":
            await asyncio.gather(*(healthz(c, phase, until) for c in conns))
        else:  # each connection its own lines, so no two sessions share one
            await asyncio.gather(
                *(
                    smf(c, phase, lines[i::concurrency], updates, until, ports.token)
                    for i, c in enumerate(conns)
                )
            )

    await drive(Phase(), time.perf_counter() + warmup)
    phase = Phase()
    before, started = meter.read(), time.perf_counter()
    await drive(phase, started + seconds)
    phase.seconds = time.perf_counter() - started  # the last answers arrive after `until`
    phase.cpu = CpuMeter.shares(before, meter.read(), phase.seconds)
    for c in conns:
        c.close()
    return phase


def cpu_line(phase: Phase) -> str:
    c = phase.cpu
    charging = f" (its charging process {c['charging']:.2f})" if c["charging"] else ""
    return (
        f"  cpu (cores): server {c['server']:.2f}{charging}, postgres {c['postgres']:.2f}, this client {c['client']:.2f}, "
        f"other {c['other']:.2f}; machine {c['busy']:.2f} of {os.cpu_count()}"
    )


# --- the run ------------------------------------------------------------------------------


def durability(url: str) -> str:
    if url.startswith("sqlite"):
        return "SQLite WAL, synchronous=NORMAL (tongka.db): a commit survives the process, not a power cut"
    engine = make_engine(url)
    with engine.connect() as conn:
        settings = {
            name: conn.execute(text(f"SHOW {name}")).scalar()
            for name in ("fsync", "synchronous_commit", "commit_delay", "wal_sync_method")
        }
    engine.dispose()
    return (
        "PostgreSQL "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + " (commit before the answer: charging.nchf)"
    )


def bench(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tongka-bench-") as tmp:
        home = Path(tmp)
        print(f"\n== {backend}: preparing {args.lines} lines with a 100 GB bucket each", flush=True)
        url, env = prepare(backend, home, args.lines, args.pg_url)
        print(f"  {durability(url)}")
        imsis = [f"45400{n:010d}" for n in range(args.lines)]
        with server(env, home, args.workers) as (ports, process):
            meter = CpuMeter(process.pid)

            def phase(what: str) -> Phase:
                return arun(
                    run_phase(
                        ports,
                        what,
                        args.concurrency,
                        args.seconds,
                        args.warmup,
                        meter,
                        imsis,
                        args.updates,
                    )
                )

            # A history first, so the charging tables are not empty, then their statistics.
            history = arun(
                run_phase(
                    ports, "charging", args.concurrency, args.history, 0, meter, imsis, args.updates
                )
            )
            print(
                f"  history: {history.rate():.0f} charging ops/s for {args.history:.0f} s"
                + (", then VACUUM ANALYZE" if backend == "postgresql" else ""),
                flush=True,
            )
            analyse(url)
            first = phase("healthz")
            with WaitSampler(url) if backend == "postgresql" else nullcontext() as waits:
                charging = phase("charging")
            second = phase("healthz")
        cheapest = statistics.mean([first.rate(), second.rate()])
        print(
            f"  {args.concurrency} connections, {args.seconds:.0f} s each phase, sessions of 1 create, {args.updates} updates, 1 release; "
            f"server workers {args.workers}"
        )
        print(first.line("GET /healthz (1)"))
        print(cpu_line(first))
        for kind in KINDS:
            print(charging.line(kind, kind))
        print(charging.line("charging, all"))
        print(cpu_line(charging))
        if waits:
            print("  PostgreSQL backends during the charging phase (sampled every 20 ms):")
            print("\n".join(waits.lines()))
        print(second.line("GET /healthz (2)"))
        print(cpu_line(second))
        ratio = charging.rate() / cheapest
        print(
            f"  ratio charging ops/s ÷ /healthz ops/s: {ratio:.2f}   (updates alone: {charging.rate('update') / cheapest:.2f})"
        )
        log = (home / "server.log").read_text(errors="replace")
        if "Traceback" in log:
            print("  the server logged errors:\n" + log[-2000:])


PG_STATES = {
    "idle": "idle: no transaction (in the pool, or the server's Python between two)",
    "idle in transaction": "idle in transaction: waiting for the server's Python mid-transaction",
}


class WaitSampler:
    """What PostgreSQL's backends of the bench database are doing, sampled every 20 ms during a phase:
    running, waiting for a row lock, for the WAL to reach the disk, for the client (the server's Python)."""

    def __init__(self, url: str) -> None:
        self.url, self.counts, self._stop = url, Counter[str](), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        engine = make_engine(self.url)
        query = text(
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'on CPU') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        with engine.connect() as conn:
            while not self._stop.wait(0.02):
                for state, wait in conn.execute(query):
                    self.counts[PG_STATES.get(state, wait)] += 1
                conn.rollback()
        engine.dispose()

    def lines(self) -> list[str]:
        total = sum(self.counts.values()) or 1
        return [f"    {n / total:6.1%}  {what}" for what, n in self.counts.most_common(8)]


def profile(backend: str, args: argparse.Namespace) -> None:
    """Where one request's time goes, in-process and one at a time: SQL statements, their time, the commit, Python."""
    import cProfile
    import pstats

    import httpx

    from tongka.charging.nchf_app import create_nchf_app
    from tongka.charging.nf_auth import issue_dev_token
    from tongka.config import Settings

    sessions_count = 40
    with tempfile.TemporaryDirectory(prefix="tongka-profile-") as tmp:
        home = Path(tmp)
        url, env = prepare(backend, home, sessions_count, args.pg_url)
        settings = Settings(
            env="dev",
            database_url=url,
            secret_key=env["TONGKA_SECRET_KEY"],
            sandbox_payment_secret=env["TONGKA_SANDBOX_PAYMENT_SECRET"],
            sandbox_store_url=env["TONGKA_SANDBOX_STORE_URL"],
            nrf_dev_key_file=str(home / "nrf-dev-key.pem"),
            _env_file=None,  # type: ignore[call-arg]
            charging_worker="thread",  # batches of one here: a request at a time, its statements counted
        )
        write_dev_key(home / "nrf-dev-key.pem")
        app = create_nchf_app(settings)
        # The charging worker's engine is made in its thread (charging/worker.py): every engine's
        # statements are counted, and the commits of this dialect timed.
        dialect = type(make_engine(url).dialect)
        auth = {
            "authorization": f"Bearer {issue_dev_token(settings, '8c1f2e3d-5a6b-4c7d-8e9f-0a1b2c3d4e5f')}"
        }
        # Run the sync routes and dependencies inline rather than in the thread pool, so that
        # cProfile (which sees one thread) sees them; this also leaves out the thread hand-offs.
        import anyio.to_thread

        async def inline(func, *args, limiter=None, **_kwargs):  # type: ignore[no-untyped-def]
            return func(*args)

        anyio.to_thread.run_sync = inline  # type: ignore[assignment]
        statements: list[tuple[str, float]] = []
        commits: list[float] = []

        @event.listens_for(Engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            conn.info["t0"] = time.perf_counter()

        @event.listens_for(Engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append(
                (" ".join(statement.split())[:110], time.perf_counter() - conn.info["t0"])
            )

        do_commit = dialect.do_commit

        def timed_commit(self, dbapi_connection):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            do_commit(self, dbapi_connection)
            commits.append(time.perf_counter() - t0)

        dialect.do_commit = timed_commit  # type: ignore[method-assign]
        per_kind: dict[str, list[tuple[float, int, float, float]]] = {k: [] for k in KINDS}
        sample: dict[str, list[str]] = {}

        async def call(
            client: httpx.AsyncClient, kind: str, path: str, body: bytes
        ) -> httpx.Response:
            statements.clear()
            commits.clear()
            t0 = time.perf_counter()
            answer = await client.post(
                path, content=body, headers={"content-type": "application/json", **auth}
            )
            wall = time.perf_counter() - t0
            per_kind[kind].append(
                (wall, len(statements), sum(t for _s, t in statements), sum(commits))
            )
            sample.setdefault(kind, [s for s, _t in statements])
            return answer

        async def sessions_one_by_one(updates: int, count: int) -> None:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as client:
                for n in range(count):
                    imsi = f"45400{n % sessions_count:010d}"
                    answer = await call(client, "create", BASE, _body(0, imsi))
                    ref = answer.headers["location"].rsplit("/", 1)[1]
                    for seq in range(1, updates + 1):
                        await call(
                            client, "update", f"{BASE}/{ref}/update", _body(seq, imsi, used=3 * MB)
                        )
                    await call(
                        client,
                        "release",
                        f"{BASE}/{ref}/release",
                        _body(updates + 1, imsi, ask=False, used=MB),
                    )

        asyncio.run(sessions_one_by_one(args.updates, 5))  # warm up
        for values in per_kind.values():
            values.clear()
        asyncio.run(sessions_one_by_one(args.updates, sessions_count))
        print(f"\n== {backend}: one request at a time, in-process ({durability(url)})")
        for kind in KINDS:
            rows = per_kind[kind]
            wall, count, db, commit = (statistics.mean(r[i] for r in rows) for i in range(4))
            print(
                f"  {kind:8} {wall * 1000:6.2f} ms: {count:4.1f} SQL statements {db * 1000:5.2f} ms, commit {commit * 1000:5.2f} ms, "
                f"the rest (Python: routing, validation, ORM, JSON) {(wall - db - commit) * 1000:5.2f} ms"
            )
        print("  the statements of one update:")
        for statement in sample["update"]:
            print(f"    {statement}")

        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(sessions_one_by_one(args.updates, 20))
        profiler.disable()
        dialect.do_commit = do_commit  # type: ignore[method-assign]
        stats = pstats.Stats(profiler)
        by_package: Counter[str] = Counter()
        for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            by_package[_package(filename, name)] += tottime
        total = sum(by_package.values())
        print(
            "  own time by package, cProfile over 20 sessions (the in-process httpx client included):"
        )
        for package, seconds in by_package.most_common(16):
            print(f"    {seconds / total:6.1%}  {package}")
        print("  the functions with the most cumulative time:")
        stats.sort_stats("cumulative").print_stats(30)


def _package(filename: str, name: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/tongka/" in filename:
        return "tongka." + filename.split("/tongka/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename == "~":  # C functions: the database driver's calls stand out
        return (
            "C: " + name
            if any(d in name for d in ("sqlite3", "psycopg", "commit", "execute"))
            else "C: other built-ins"
        )
    return "stdlib"


def arun(coro):  # type: ignore[no-untyped-def]
    """asyncio.run, on uvloop when it is installed (uvicorn[standard] brings it): a cheaper client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=15.0, help="each measured phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="before each phase, not counted")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections (concurrent sessions)"
    )
    parser.add_argument("--updates", type=int, default=8, help="updates per session")
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument(
        "--history", type=float, default=10.0, help="seconds of charging before the measured phases"
    )
    parser.add_argument("--workers", type=int, default=1, help="tongka serve --workers")
    parser.add_argument(
        "--pg-url", default=PG_URL, help="the PostgreSQL database to drop and make anew"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="count an update's SQL statements and profile it in-process",
    )
    args = parser.parse_args()
    print(f"tongka charging benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        profile(backend, args) if args.profile else bench(backend, args)


if __name__ == "__main__":
    main()
