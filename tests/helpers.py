"""Test helpers that are not factories: a clock a test moves by hand, settings as production
needs them, and servers run as processes (the `tongka` script, a free port, waiting, its log).

Factories (things made as a client or an operator would) are in tests/factories.py and
next to each domain's tests; fixtures are in the conftest.py files.
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tongka import clock
from tongka.config import Settings

TONGKA = Path(sys.executable).parent / "tongka"  # the script the project installs
START_TIMEOUT = 30  # seconds, for a server to answer /healthz
STOP_TIMEOUT = 10  # seconds, for a server to exit once asked


class FrozenClock:
    """`tongka.clock.now()` held still at `now` until the test moves it: `advance(...)` or set `now`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
        self.now = now
        monkeypatch.setattr(clock, "now", lambda: self.now)

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move the clock on: `advance(60)`, `advance(minutes=5)`; the new time."""
        self.now += timedelta(seconds=seconds, **delta)
        return self.now


def production_settings(db_url: str = "sqlite://", **values: Any) -> Settings:
    """Settings that production accepts (production is the default): its own secret, an https
    address, an NRF's keys; `values` change any of them. No .env file is read."""
    return Settings(  # type: ignore[arg-type]
        **{
            "database_url": db_url,
            "secret_key": secrets.token_urlsafe(32),
            "public_base_url": "https://tongka.example",
            "nrf_jwks": "https://nrf.example/oauth2/jwks",
            "nrf_issuer": str(uuid.uuid4()),
            **values,
        },
        _env_file=None,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range: a
    port the kernel hands out for `bind(..., 0)` could go, before the server we start binds it, to
    a listener of that server's own (the dev SMTP server and SMSC take port 0 at start-up)."""
    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken: another
                continue
            return port


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for `bind(..., 0)` (Linux's default where /proc does
    not say)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a server's log, to show when it failed."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_up(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Until a `tongka serve` process answers base_url/healthz (a failure if it exits or is slow)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"`tongka serve` exited with {process.returncode} before answering:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).json() == {"status": "ok"}:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    pytest.fail(
        f"`tongka serve` did not answer {base_url}/healthz within {START_TIMEOUT}s:\n{log_tail(log_path)}"
    )


def wait_until_down(base_url: str, timeout: float = STOP_TIMEOUT) -> None:
    """Until nothing answers at base_url (a listener whose parent was killed stops by itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/healthz", timeout=1)
        except httpx.TransportError:
            return
        time.sleep(0.1)
    pytest.fail(f"{base_url} still answers {timeout}s after its server was killed")
