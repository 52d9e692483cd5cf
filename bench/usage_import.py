"""Usage import benchmark: `tongka usage import` of 1,000,000 records: records/s and peak memory,
next to the database's own insert rate measured in the same run.

    .venv/bin/python bench/usage_import.py                       # SQLite, then PostgreSQL (database tongka_bench_import)
    .venv/bin/python bench/usage_import.py --backend sqlite --records 100000
    .venv/bin/python bench/usage_import.py --backend sqlite --records 20000 --profile   # where the time goes

For each backend: a fresh database (a SQLite file in a temporary directory, or the
PostgreSQL database `tongka_bench_import`, dropped and made again), migrated; a few
thousand lines, each with a `both` bucket and most with a zone bucket (granted through
the ledger's own `buckets.grant`), some owned by accounts with overage on and a wallet,
some suspended; one network made inactive. Then a generated file of usage records in
order of their end time over a week: mainland and Hong Kong networks, by IMSI and by
MSISDN, some zero-byte, about 2% to be rejected (unknown subscriber or network, an
inactive network or line, malformed, end before start, a record_id repeated). The
import runs as `tongka usage import` in its own process; its peak memory is that
process's maxrss (`os.wait4`, from a small launcher process). The database's own limit is plain inserts of rows shaped
like `usage_records` from the same driver, 1,000 rows per transaction (and COPY on
PostgreSQL), into a scratch table of the same database. Nothing here is a test: it
prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from tongka.account.models import Account, Line
from tongka.charging import overage
from tongka.charging.models import Network
from tongka.db import make_engine, make_sessionmaker, normalise_url, transaction
from tongka.ledger import buckets
from tongka.migrate import upgrade
from tongka.money import GB, MB
from tongka.wallet import service as wallets

TONGKA = Path(sys.executable).parent / "tongka"
PG_URL = "postgresql://postgres@127.0.0.1:5432/tongka_bench_import"
START = datetime(2030, 3, 1, tzinfo=UTC)  # the file's week; buckets are valid around it
WEEK = 7 * 24 * 3600
MAINLAND = ("460-00", "460-01", "460-02", "460-03", "460-11")
HONG_KONG = ("454-00", "454-03", "454-06", "454-12", "454-10")
INACTIVE = "460-07"  # made inactive for the run


# --- the database -------------------------------------------------------------------------


def fresh_database(backend: str, home: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{home / 'bench.db'}"
    url = make_url(normalise_url(PG_URL))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return PG_URL


def populate(url: str, lines: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """`lines` lines with buckets; returns each line's (imsi, msisdn, status)."""
    engine = make_engine(url)
    subscribers: list[tuple[str, str, str]] = []
    with transaction(make_sessionmaker(engine)) as session:
        session.execute(update(Network).where(Network.plmn == INACTIVE).values(active=False))
        for n in range(lines):
            status = "suspended" if rng.random() < 0.01 else "active"
            line = Line(
                iccid=f"8985202{n:012d}",
                imsi=f"45400{n:010d}",
                hk_number=f"+8525{n:07d}",
                cn_number=f"+86139{n:08d}" if n % 2 else None,
                status=status,
            )
            session.add(line)
            session.flush()
            subscribers.append((line.imsi or "", line.cn_number or line.hk_number or "", status))
            for zone in ("both", rng.choice(("hk", "mainland", "hk", None))):
                if zone:
                    buckets.grant(
                        session,
                        line_id=line.id,
                        zone=zone,
                        amount=rng.randint(1, 10) * GB,
                        valid_from=START - timedelta(days=1),
                        expires_at=START + timedelta(days=30),
                        reason="pack_purchase",
                        reference=f"order:bench-{zone}-{n}",
                    )
            if n % 20 == 0:  # 5%: overage on, with a wallet
                owner = Account(
                    username=f"bench{n}",
                    email=f"bench{n}@example.com",
                    password_hash="x",
                    language="en",
                )
                session.add(owner)
                session.flush()
                line.account_id = owner.id
                wallets.credit(session, owner, 50_000, "HKD", reference=f"bench-{n}")
                overage.configure(
                    session, line, owner, enabled=True, monthly_cap=20_000, currency="HKD"
                )
    engine.dispose()
    return subscribers


def generate(
    path: Path, records: int, subscribers: list[tuple[str, str, str]], rng: random.Random
) -> None:
    """A CSV of `records` usage records over a week, in order of their end time."""
    step = WEEK / records
    with path.open("w", encoding="utf-8") as out:
        out.write("record_id,imsi,msisdn,plmn,start,end,bytes_up,bytes_down\n")
        for n in range(records):
            imsi, msisdn, _status = rng.choice(subscribers)
            end = START + timedelta(seconds=n * step)
            start = end - timedelta(seconds=rng.randint(0, 3600))
            plmn = rng.choice(MAINLAND if rng.random() < 0.6 else HONG_KONG)
            down = (
                0 if rng.random() < 0.01 else int(rng.lognormvariate(14.5, 1.7))
            )  # median 2 MB, mean 8 MB
            up = down // rng.randint(5, 20)
            record_id = f"bench-{n:09d}"
            who = (imsi, "") if rng.random() < 0.5 else ("", msisdn)
            chance = rng.random()
            if chance < 0.004:
                who = (f"45499{n:010d}", "")  # unknown subscriber
            elif chance < 0.006:
                plmn = "310-260"  # unknown network
            elif chance < 0.007:
                plmn = INACTIVE
            elif chance < 0.008:
                start = end + timedelta(minutes=5)  # end before start
            elif chance < 0.009:
                record_id = f"bench-{max(0, n - rng.randint(1, 5000)):09d}"  # a record_id repeated
            elif chance < 0.010:
                out.write(
                    f"{record_id},{who[0]},{who[1]},{plmn},yesterday,{end.isoformat()},{up},{down}\n"
                )
                continue
            out.write(
                f"{record_id},{who[0]},{who[1]},{plmn},{start.isoformat()},{end.isoformat()},{up},{down}\n"
            )


def raw_insert_rate(url: str, rows: int) -> dict[str, float]:
    """The database's own insert rate for rows shaped like `usage_records`, from the same driver."""
    now = datetime.now(UTC)
    data = [
        (
            f"raw-{n:09d}",
            str(uuid.uuid4()),
            "460-00",
            "mainland",
            now,
            now,
            1000,
            20000,
            21000,
            0,
            0,
            0,
            n,
            now,
        )
        for n in range(rows)
    ]
    ddl = (
        "CREATE TABLE bench_insert (record_id varchar(64) PRIMARY KEY, line_id {uuid} NOT NULL, plmn varchar(7), "
        "zone varchar(16), started_at {ts}, ended_at {ts}, bytes_up bigint, bytes_down bigint, from_buckets bigint, "
        "overage_bytes bigint, overage_amount bigint, owed_bytes bigint, line_number integer, imported_at {ts})"
    )
    rates: dict[str, float] = {}
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # as tongka's engine sets it
        con.execute("DROP TABLE IF EXISTS bench_insert")
        con.execute(ddl.format(uuid="char(32)", ts="datetime"))
        sql = "INSERT INTO bench_insert VALUES (" + ",".join("?" * 14) + ")"
        plain = [
            (
                r[0],
                r[1],
                r[2],
                r[3],
                r[4].isoformat(),
                r[5].isoformat(),
                *r[6:13],
                r[13].isoformat(),
            )
            for r in data
        ]
        began = time.perf_counter()
        for offset in range(0, rows, 1000):
            con.execute("BEGIN IMMEDIATE")
            con.executemany(sql, plain[offset : offset + 1000])
            con.execute("COMMIT")
        rates["insert, 1,000 rows a transaction"] = rows / (time.perf_counter() - began)
        con.execute("DROP TABLE bench_insert")
        con.close()
        return rates
    import psycopg

    with psycopg.connect(
        make_url(normalise_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    ) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_insert")
        conn.execute(ddl.format(uuid="uuid", ts="timestamptz"))
        conn.commit()
        sql = "INSERT INTO bench_insert VALUES (" + ",".join(["%s"] * 14) + ")"
        began = time.perf_counter()
        for offset in range(0, rows, 1000):
            with conn.cursor() as cur:
                cur.executemany(sql, data[offset : offset + 1000])
            conn.commit()
        rates["insert, 1,000 rows a transaction"] = rows / (time.perf_counter() - began)
        conn.execute("TRUNCATE bench_insert")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_insert FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
        rates["COPY, one transaction"] = rows / (time.perf_counter() - began)
        conn.execute("DROP TABLE bench_insert")
        conn.commit()
    return rates


# --- running ------------------------------------------------------------------------------


def environment(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        TONGKA_ENV="dev",  # production is the default
        TONGKA_DATABASE_URL=url,
        TONGKA_SECRET_KEY=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_PAYMENT_SECRET=secrets.token_urlsafe(32),
        TONGKA_SANDBOX_STORE_URL=f"sqlite:///{home / 'sandbox.db'}",
    )
    return env


# Starts the import and reports its rusage. A child exec'd straight from this process would
# inherit this process's own peak in its maxrss (Linux folds the old memory's high-water mark
# in at exec), so the import is started from this small process instead.
LAUNCHER = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_import(
    env: dict[str, str], home: Path, path: Path, batch: int
) -> tuple[float, float, int, str]:
    """(seconds, CPU seconds, peak RSS in kB, output) of `tongka usage import` in a process of its own."""
    began = time.perf_counter()
    with (home / "import.out").open("w") as out:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                str(home / "rusage.json"),
                str(TONGKA),
                "usage",
                "import",
                str(path),
                "--batch",
                str(batch),
            ],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - began
    output = (home / "import.out").read_text()
    if done.returncode not in (0, 1):  # 1: some records were rejected, as intended
        raise SystemExit(f"tongka usage import failed ({done.returncode}):\n{output[-3000:]}")
    usage = json.loads((home / "rusage.json").read_text())
    return seconds, usage["cpu"], usage["maxrss_kb"], output


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024**2
    return (
        f"{os.cpu_count()} x {cpu}, {memory} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def bench(backend: str, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="tongka-usage-bench-") as tmp:
        home = Path(tmp)
        url = fresh_database(backend, home)
        upgrade(url)
        began = time.perf_counter()
        subscribers = populate(url, args.lines, rng)
        path = home / "usage.csv"
        generate(path, args.records, subscribers, rng)
        size = path.stat().st_size
        print(
            f"\n{backend}: {args.lines:,} lines, {args.records:,} records ({size / MB:,.0f} MB) "
            f"ready in {time.perf_counter() - began:.0f} s"
        )
        if backend == "postgresql":
            engine = make_engine(url)
            with engine.connect() as conn:
                print(f"  PostgreSQL {conn.execute(text('show server_version')).scalar()}")
            engine.dispose()

        if args.profile:
            profile(url, path, args.batch)
            return
        seconds, cpu, maxrss, output = run_import(environment(url, home), home, path, args.batch)
        rate = args.records / seconds
        print("  tongka usage import said:")
        print("".join(f"    {line}\n" for line in output.strip().splitlines()), end="")
        print(
            f"  {rate:,.0f} records/s ({seconds:.1f} s for {args.records:,}, process start included; "
            f"the import's own CPU {cpu:.1f} s), peak memory {maxrss / 1024:,.0f} MB (maxrss)"
        )
        limits = raw_insert_rate(url, min(args.records, args.raw_rows))
        for name, raw in limits.items():
            print(
                f"  the database's own {name}: {raw:,.0f} rows/s; the import is {rate / raw:.1%} of it"
            )
        if args.verify:
            done = subprocess.run(
                [str(TONGKA), "ledger", "verify"],
                env=environment(url, home),
                capture_output=True,
                text=True,
                check=False,
            )
            print(f"  {done.stdout.strip() or done.stderr.strip()[-500:]}")


def profile(url: str, path: Path, batch: int) -> None:
    """The import in this process under cProfile: where its time goes."""
    from tongka.charging import usage_import

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    profiler = cProfile.Profile()
    with path.open("rb") as source:
        profiler.enable()
        summary = usage_import.import_usage(
            sessions, source, "csv", io.StringIO(), batch_size=batch
        )
        profiler.disable()
    print("".join(f"  {line}\n" for line in summary.report()), end="")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--raw-rows", type=int, default=200_000, help="rows for the database's own insert rate"
    )
    parser.add_argument("--seed", type=int, default=20300301)
    parser.add_argument(
        "--verify", action="store_true", help="run `tongka ledger verify` afterwards"
    )
    parser.add_argument(
        "--profile", action="store_true", help="import in this process under cProfile instead"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)


if __name__ == "__main__":
    main()
