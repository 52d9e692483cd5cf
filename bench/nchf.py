"""Nchf updates over HTTP/2, loaded by h2load, beside pgbench TPC-B in the same run (issue 11).

    .venv/bin/python bench/nchf.py                          # defaults: 8,000 sessions, 64 streams, 3 runs at full load
    .venv/bin/python bench/nchf.py --sessions 4000 --repeat 2 --pgbench-seconds 10
    .venv/bin/python bench/nchf.py --server 'tongka nchf serve --bind 127.0.0.1:{port}'

What it does, in one run on one PostgreSQL (whose `fsync` and `synchronous_commit` it prints):
1. `pgbench` TPC-B, 8 clients, on a database of its own (`<db>_pgbench`, initialised anew,
   scale 10), for a fixed time: the yardstick of this machine at this moment.
2. A fresh database `tongka_bench_h2`, lines and a 100 GB bucket each as bench/charging.py
   makes them (its helpers), the server started (`tongka nchf serve`: granian over h2c, by default; `--server`),
   one charging session per line opened through the API (curl over h2c; not measured),
   then VACUUM ANALYZE, as autovacuum keeps statistics on a database in service.
3. Updates from h2load. h2load sends one body on every request, and an update that repeats
   (session, invocationSequenceNumber) is a retransmission (answered from the kept answer,
   nothing charged), so each h2load process has one connection (`-c1 -m K`, K streams in
   flight), a list of session URIs of its own (`-i`, disjoint from the others') and a body of
   its own (its own sequence number), and sends one request per URI: every measured request
   is a genuine update, settling 3 MB and granting 4 MB, committed before its answer.
   Afterwards the kept answers with those sequence numbers are counted in the database: they
   must equal the requests answered.
   Full load (`--streams` in all) `--repeat` times, then one run at half the mean full rate
   (`--rps`), for p99 at half rate.
4. `tongka ledger verify`.

Figures: updates/s, their ratio to pgbench's tps, p50/p99 from h2load's per-request log, and
the CPU of every process per update (server, its charging process, the PostgreSQL backends
of the bench database and the WAL writer, h2load), and the rest of the machine's load while
it ran: the machine is shared, so read the figures with it. Nothing here fails on a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from charging import (
    BASE,
    TICKS,
    _body,
    _cmdline,
    _free_port,
    _machine_busy,
    _ticks,
    _tree,
    analyse,
    durability,
    machine,
    prepare,
)
from tongka.charging.nf_auth import write_dev_key
from tongka.db import make_engine, normalise_url
from tongka.money import MB

PG_URL = "postgresql://postgres@127.0.0.1:5432/tongka_bench_h2"
TONGKA = str(Path(sys.executable).parent / "tongka")
SERVER = f"env TONGKA_NCHF_BIND=127.0.0.1:{{port}} {TONGKA} nchf serve"  # granian, one worker, h2c in dev


# --- the reference: pgbench -------------------------------------------------------------------


def pgbench(url: str, clients: int, seconds: float) -> tuple[float, str]:
    u = make_url(normalise_url(url))
    db = f"{u.database}_pgbench"
    conn = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{db}"'))
    subprocess.run(["pgbench", *conn, "-i", "-q", "-s", "10", db], check=True, capture_output=True)
    busy0, t0 = _machine_busy(), time.monotonic()
    done = subprocess.run(
        ["pgbench", *conn, "-c", str(clients), "-j", "2", "-T", str(int(seconds)), db],
        check=True,
        capture_output=True,
        text=True,
    )
    busy = (_machine_busy() - busy0) / TICKS / (time.monotonic() - t0)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()
    tps = float(re.search(r"^tps = ([\d.]+)", done.stdout, re.M).group(1))  # type: ignore[union-attr]
    lat = re.search(r"^latency average = ([\d.]+ ms)", done.stdout, re.M)
    return (
        tps,
        f"latency average {lat.group(1) if lat else '?'}, machine busy {busy:.2f} cores (pgbench, PostgreSQL and all else)",
    )


# --- the server -------------------------------------------------------------------------------


def token(port: int) -> str:
    """An access token from the listener's dev NRF (POST /oauth2/token, TS 29.510)."""
    done = subprocess.run(
        [
            "curl",
            "-s",
            "--http2-prior-knowledge",
            f"http://127.0.0.1:{port}/oauth2/token",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "nfInstanceId=8c1f2e3d-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "-d",
            "nfType=SMF",
            "-d",
            "targetNfType=CHF",
            "-d",
            "scope=nchf-convergedcharging",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)["access_token"])


@contextmanager
def server(
    command: str, env: dict[str, str], home: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {
        **env,
        "TONGKA_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TONGKA_NRF_DEV_KEY_FILE": str(home / "nrf-dev-key.pem"),
    }
    if not (home / "nrf-dev-key.pem").exists():
        write_dev_key(home / "nrf-dev-key.pem")  # as `make run` makes it
    with (home / "server.log").open("w") as log:
        process = subprocess.Popen(
            shlex.split(command.format(port=port)),
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:  # up when it answers over h2c
            probe = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--http2-prior-knowledge",
                    f"http://127.0.0.1:{port}/healthz",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout == "200":
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the server did not start:\n" + (home / "server.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=20)


def open_sessions(port: int, imsis: list[str], home: Path, headers: list[str]) -> list[str]:
    """One charging session per line, through the API (curl over h2c, 32 at once): their refs."""
    config = home / "creates.curl"
    with config.open("w") as f:
        for n, imsi in enumerate(imsis):
            body = home / f"create-{n}.json"
            body.write_bytes(_body(0, imsi))
            if n:
                f.write("next\n")
            f.write(
                f'url = "http://127.0.0.1:{port}{BASE}"\ndata-binary = "@{body}"\n'
                'header = "content-type: application/json"\noutput = "/dev/null"\n'
                'write-out = "%{http_code} %header{location}\\n"\n'
            )
            for h in headers:
                f.write(f'header = "{h}"\n')
    done = subprocess.run(
        [
            "curl",
            "-s",
            "--http2-prior-knowledge",
            "--parallel",
            "--parallel-max",
            "32",
            "-K",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    refs = [
        line.split(" ", 1)[1].rsplit("/", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("201 ")
    ]
    for body in home.glob("create-*.json"):
        body.unlink()
    if len(refs) != len(imsis):
        raise SystemExit(
            f"only {len(refs)} of {len(imsis)} creates answered 201: {done.stdout[-500:]} {done.stderr[-500:]}"
        )
    return refs


# --- measuring ----------------------------------------------------------------------------------


def _backends(url: str) -> list[int]:
    """The bench database's backends, and the WAL writer (commits ask it to flush too)."""
    engine = make_engine(url)
    with engine.connect() as c:
        pids = list(
            c.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() AND pid <> pg_backend_pid()) "
                    "OR backend_type = 'walwriter'"
                )
            ).scalars()
        )
    engine.dispose()
    return pids


class Meter:
    def __init__(self, server_pid: int, url: str) -> None:
        self.server_pid, self.url = server_pid, url

    def read(self) -> dict[str, Any]:
        tree = _tree(self.server_pid)
        # The charging process: a leaf of the server's tree started by multiprocessing's spawn.
        charging = [p for p in tree if "spawn_main" in _cmdline(p) and len(_tree(p)) == 1]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "pids": {p: _ticks(p) for p in tree},
            "charging": charging,
            "pg": {p: _ticks(p) for p in _backends(self.url)},
            "h2load": children.ru_utime + children.ru_stime,
            "busy": _machine_busy(),
            "t": time.monotonic(),
        }

    @staticmethod
    def cores(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        seconds = b["t"] - a["t"]
        delta = {p: b["pids"].get(p, 0) - a["pids"].get(p, 0) for p in b["pids"]}
        charging = sum(delta.get(p, 0) for p in b["charging"])
        pg = sum(
            t - a["pg"].get(p, t) for p, t in b["pg"].items()
        )  # a backend born meanwhile is left out
        shares = {
            "server": (sum(delta.values()) - charging) / TICKS / seconds,
            "charging": charging / TICKS / seconds,
            "postgres": pg / TICKS / seconds,
            "h2load": (b["h2load"] - a["h2load"]) / seconds,
            "machine": (b["busy"] - a["busy"]) / TICKS / seconds,
        }
        shares["other"] = shares["machine"] - sum(
            shares[k] for k in ("server", "charging", "postgres", "h2load")
        )
        return shares


def load(
    port: int,
    refs: list[str],
    home: Path,
    *,
    name: str,
    seq: int,
    procs: int,
    streams: int,
    rps: float | None,
    count: int | None,
    headers: list[str],
) -> dict[str, Any]:
    """`procs` h2load processes, each one connection with streams/procs in flight, its own sessions and its own
    sequence number (seq + its index). Returns what h2load and its per-request logs said."""
    per = max(1, streams // procs)
    chosen = refs[:count] if count else refs
    runs = []
    for i in range(procs):
        mine = chosen[i::procs]
        uris = home / f"{name}-{i}.uris"
        uris.write_text("".join(f"http://127.0.0.1:{port}{BASE}/{ref}/update\n" for ref in mine))
        body = home / f"{name}-{i}.json"
        body.write_bytes(_body(seq + i, "454000000000000", used=3 * MB))
        log = home / f"{name}-{i}.log"
        command = [
            "h2load",
            "-c1",
            "-t1",
            f"-m{per}",
            f"-n{len(mine)}",
            "-i",
            str(uris),
            "-d",
            str(body),
            "-H",
            "content-type: application/json",
            f"--log-file={log}",
            "--warm-up-time=0",
        ]
        for h in headers:
            command += ["-H", h]
        if rps:
            command.append(f"--rps={rps / procs:.1f}")
        runs.append(
            (
                subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                ),
                log,
                len(mine),
            )
        )
    outputs = [(p.communicate()[0], log, n) for p, log, n in runs]
    rows: list[tuple[int, int, int]] = []
    for out, log, _n in outputs:
        if "status codes:" not in out:
            raise SystemExit(f"h2load failed:\n{out[-2000:]}")
        for line in log.read_text().splitlines():
            start, status, took = line.split("\t")[:3]
            rows.append((int(start), int(status), int(took)))
    ok = [r for r in rows if 200 <= r[1] < 300]
    first, last = min(r[0] for r in rows), max(r[0] + r[2] for r in rows)
    times = sorted(r[2] for r in ok)
    pct = lambda q: times[min(len(times) - 1, int(len(times) * q))] / 1000  # noqa: E731
    return {
        "sent": sum(n for _o, _l, n in outputs),
        "answered": len(rows),
        "ok": len(ok),
        "statuses": sorted({r[1] for r in rows}),
        "seconds": (last - first) / 1e6,
        "rate": len(ok) / ((last - first) / 1e6),
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": times[-1] / 1000,
        "seqs": list(range(seq, seq + procs)),
        # the slowest hundredth of the answers by when they were sent, in tenths of the run: a burst
        # at the start (a cold cache) reads differently from slow answers all along (the batch's cycle)
        "slow_by_tenth": _slow_by_tenth(ok, first, last),
    }


def floor(port: int, home: Path, procs: int, streams: int, count: int) -> dict[str, Any]:
    """The same listener doing nothing: `GET /healthz` (no token, no body, no charging process, no
    database) from h2load in the same shape as the updates. Its rate and CPU bound what any route
    of this HTTP/2 stack can do on this machine at this moment."""
    per = max(1, streams // procs)
    runs = [
        subprocess.Popen(
            [
                "h2load",
                "-c1",
                "-t1",
                f"-m{per}",
                f"-n{count // procs}",
                "--warm-up-time=0",
                f"http://127.0.0.1:{port}/healthz",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(procs)
    ]
    t0 = time.monotonic()
    outs = [p.communicate()[0] for p in runs]
    seconds = time.monotonic() - t0
    done = 0
    for out in outs:
        found = re.search(r"status codes: (\d+) 2xx", out)
        if found is None:
            raise SystemExit(f"h2load failed:\n{out[-2000:]}")
        done += int(found.group(1))
    return {"ok": done, "rate": done / seconds}


def _slow_by_tenth(ok: list[tuple[int, int, int]], first: int, last: int) -> list[int]:
    if not ok:
        return []
    cut = sorted(r[2] for r in ok)[int(len(ok) * 0.99)]
    tenths = [0] * 10
    for start, _status, took in ok:
        if took >= cut:
            tenths[min(9, (start - first) * 10 // max(1, last - first))] += 1
    return tenths


def kept(url: str, seqs: list[int]) -> int:
    engine = make_engine(url)
    with engine.connect() as c:
        found = c.execute(
            text(
                "SELECT count(*) FROM charging_answers WHERE invocation_sequence_number = ANY(:s) AND status_code = 200"
            ),
            {"s": seqs},
        ).scalar_one()
    engine.dispose()
    return int(found)


def other_work() -> str:
    """What else the machine runs (the busiest processes not ours), and its load average."""
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sessions",
        type=int,
        default=8000,
        help="charging sessions (one per line); each run updates each once",
    )
    parser.add_argument(
        "--streams", type=int, default=64, help="streams in flight, in all, at full load"
    )
    parser.add_argument(
        "--procs", type=int, default=4, help="h2load processes, one connection each"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs at full load")
    parser.add_argument("--pgbench-seconds", type=float, default=15)
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument(
        "--server", default=SERVER, help="the command that serves Nchf over h2c on {port}"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        help="an extra request header (e.g. a bearer token)",
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(
        f"tongka Nchf over HTTP/2 (h2load), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; {other_work()}",
        flush=True,
    )
    print(f"  server: {args.server}")
    figures: dict[str, Any] = {"runs": []}
    tps, detail = pgbench(args.pg_url, args.pgbench_clients, args.pgbench_seconds)
    figures["pgbench_tps"] = tps
    print(
        f"  pgbench TPC-B, {args.pgbench_clients} clients, {args.pgbench_seconds:.0f} s: {tps:,.0f} tps ({detail})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="tongka-bench-h2-") as tmp:
        home = Path(tmp)
        url, env = prepare("postgresql", home, args.sessions, args.pg_url)
        print(f"  {durability(url)}")
        imsis = [f"45400{n:010d}" for n in range(args.sessions)]
        with server(args.server, env, home) as (port, process):
            t0 = time.monotonic()
            args.header.append(
                f"authorization: Bearer {token(port)}"
            )  # from the dev NRF, as an SMF gets one
            refs = open_sessions(port, imsis, home, args.header)
            print(
                f"  {len(refs)} sessions opened in {time.monotonic() - t0:.1f} s (one per line, 100 GB bucket each); VACUUM ANALYZE",
                flush=True,
            )
            analyse(url)
            meter = Meter(process.pid, url)
            common = {"procs": args.procs, "streams": args.streams, "headers": args.header}
            load(
                port,
                refs,
                home,
                name="warmup",
                seq=100,
                rps=None,
                count=min(len(refs), 2000),
                **common,
            )

            def measured(
                name: str, seq: int, rps: float | None, count: int | None = None
            ) -> dict[str, Any]:
                before = meter.read()
                run = load(port, refs, home, name=name, seq=seq, rps=rps, count=count, **common)
                run["cpu"] = Meter.cores(before, meter.read())
                run["kept"] = kept(url, run["seqs"])
                run["name"] = name
                figures["runs"].append(run)
                c = run["cpu"]
                per = {
                    k: c[k] / run["rate"] * 1000
                    for k in ("server", "charging", "postgres", "h2load")
                }
                run["ms_per_update"] = per
                print(
                    f"  {name:10} {run['rate']:7,.0f} updates/s ({run['rate'] / tps:.2f} × pgbench)  p50 {run['p50']:6.2f} ms  "
                    f"p99 {run['p99']:6.2f} ms  max {run['max']:7.2f} ms   {run['ok']}/{run['sent']} 2xx, kept answers {run['kept']}"
                    f"{'' if run['kept'] == run['ok'] == run['sent'] else '  MISMATCH'}  statuses {run['statuses']}\n"
                    f"             slowest 1 % by tenth of the run: {run['slow_by_tenth']}\n"
                    f"             CPU ms/update: server {per['server']:.3f}, charging process {per['charging']:.3f}, "
                    f"PostgreSQL {per['postgres']:.3f}, h2load {per['h2load']:.3f} = {sum(per.values()):.3f}   "
                    f"(cores: ours {c['machine'] - c['other']:.2f}, other load {c['other']:.2f}, machine {c['machine']:.2f} of {os.cpu_count()})",
                    flush=True,
                )
                return run

            full = [measured(f"full-{n + 1}", 1000 * (n + 2), None) for n in range(args.repeat)]
            mean = sum(r["rate"] for r in full) / len(full)
            measured("half", 9000, mean / 2, count=len(refs) // 2)
            before = meter.read()
            noop = floor(port, home, args.procs, args.streams, 4 * len(refs))
            c = Meter.cores(before, meter.read())
            figures["floor"] = {**noop, "cpu": c}
            print(
                f"  floor: GET /healthz on the same listener, {noop['rate']:7,.0f}/s ({noop['rate'] / tps:.2f} × pgbench), "
                f"{noop['ok']} 2xx; CPU ms/request: server {c['server'] / noop['rate'] * 1000:.3f}, "
                f"h2load {c['h2load'] / noop['rate'] * 1000:.3f}   (cores: server {c['server']:.2f}, "
                f"other load {c['other']:.2f}, machine {c['machine']:.2f} of {os.cpu_count()})",
                flush=True,
            )
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
        )
        if "Traceback" in log:
            print("  the server logged errors:\n" + log[-2000:])
    figures["other"] = other_work()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
