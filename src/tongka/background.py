"""The background runner: the scheduled jobs and the outboxes' senders, each a loop in a thread.

Production runs it as `tongka worker` processes, as many as wanted on as many machines: each
due job runs in one runner only (`jobs/scheduler.py`'s claims) and each notification is
claimed before it is sent, so more workers add availability, never repeats. `tongka serve`
runs it itself, in threads of its own process, when `TONGKA_BACKGROUND` is `embedded` (the
default on SQLite, so `make run` needs nothing more; `off` on PostgreSQL, where workers run):
once per `tongka serve`, in the process that starts the listeners, so `--workers 2` still
has one runner (a second would be safe, only wasted).

A loop is a function `(stop, settings, sessions)` that works until `stop` is set; adding one
is a line in `loops`. A loop that raises is logged and started again after a pause. Ctrl-C
or SIGTERM sets `stop`; each loop finishes what it is doing (a job's run, a message) and
returns; a loop still busy after `STOP_SECONDS` is abandoned with the process, which is safe:
its claim's lease runs out and another runner does the work again.
"""

from __future__ import annotations

import functools
import io
import signal
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from tongka import logs
from tongka.charging import notify as charging_notify
from tongka.config import Settings
from tongka.db import make_engine, make_sessionmaker
from tongka.jobs import scheduler
from tongka.notify import worker as notify_worker

log = structlog.get_logger()

Loop = Callable[[threading.Event, Settings, sessionmaker[Session]], None]

STOP_SECONDS = 30.0  # for the loops to finish what they hold once asked to stop
RESTART_SECONDS = 5.0  # the pause before a loop that raised is started again


def statement_source(settings: Settings) -> Callable[[date], str] | None:
    """The day's settlement statement for the reconciliation job: the payment sandbox's, where it is on
    (dev). A live provider's statement comes by its own adapter (not yet: none here)."""
    if not settings.sandbox_enabled:
        return None
    from tongka.sandbox import statement

    def day_statement(day: date) -> str:
        out = io.StringIO()
        statement.write(out, settings.sandbox_store_url, None, day)
        return out.getvalue()

    return day_statement


def loops(settings: Settings) -> list[tuple[str, Loop]]:
    """The loops a runner runs, by name."""
    return [
        ("scheduler", functools.partial(scheduler.run, statement=statement_source(settings))),
        ("charging-notify", charging_notify.run),
        ("delivery", notify_worker.run),
    ]


class Background:
    """The loops (`run`, or those of `loops`) in daemon threads, from `start` until `stop`."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session] | None = None,
        run: list[tuple[str, Loop]] | None = None,
    ) -> None:
        self.settings = settings
        self._own_engine = sessions is None
        self.sessions = sessions or make_sessionmaker(
            make_engine(settings.database_url, pool_size=4, max_overflow=4)
        )
        self.loops = loops(settings) if run is None else run
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, loop in self.loops:
            thread = threading.Thread(
                target=self._keep, args=(name, loop), name=f"background-{name}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        log.info("background_started", loops=[name for name, _ in self.loops])

    def _keep(self, name: str, loop: Loop) -> None:
        """Run `loop` until it returns (asked to stop, or nothing to do here); start it again if it raises."""
        while not self.stopping.is_set():
            try:
                loop(self.stopping, self.settings, self.sessions)
                return
            except Exception as error:
                log.error("background_loop_failed", loop=name, exc_info=error)
                self.stopping.wait(RESTART_SECONDS)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Ask every loop to stop and wait for them up to `timeout` seconds; False if one is still busy."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in self.threads if t.is_alive()]
        if busy:
            log.warning("background_stop_timeout", loops=busy)
        elif self._own_engine:
            engine = self.sessions.kw.get("bind")
            if engine is not None:
                engine.dispose()
        log.info("background_stopped")
        return not busy


def with_dev_servers(settings: Settings) -> Settings:
    """Dev mode: email and SMS go to an SMTP server and an SMSC inside this process (`make run`),
    through the same clients as in production, unless TONGKA_SMTP_URL / TONGKA_SMPP_URL name
    servers of their own. Production: unchanged."""
    if not settings.dev:
        return settings
    from tongka.sandbox import mail, smsc  # dev only

    return smsc.with_local_smsc(mail.with_local_mail(settings))


def run_worker(settings: Settings) -> int:
    """`tongka worker`: the background runner in this process until SIGINT or SIGTERM; the exit code."""
    logs.configure(settings.log_json)
    asked = threading.Event()

    def note(_signum: int, _frame: Any) -> None:
        asked.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)
    background = Background(with_dev_servers(settings))
    background.start()
    while not asked.wait(1.0):
        if not any(t.is_alive() for t in background.threads):
            break  # every loop ended by itself: nothing left to run
    return 0 if background.stop() else 1
