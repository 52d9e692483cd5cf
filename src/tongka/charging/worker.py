"""The charging worker: where the Nchf batches are answered, and how ops get there and back.

One `ChargingWorker` per Nchf app (`nchf_app.py` starts it in its lifespan and stops it there).
The batches themselves are `nchf.GroupCommit`'s (one transaction and one commit per batch, a
failed batch op by op); this module only carries them, over a standard executor of one worker:

  process  `ProcessPoolExecutor(max_workers=1)`, spawn context (fork would copy a server that
           has threads): speaking HTTP and deciding charges use two cores instead of sharing one
           interpreter lock (`tongka serve`, the default).
  thread   `ThreadPoolExecutor(1)` in the server's process (the tests' many short-lived apps).

Both run the same calls: `_start` (the executor's initializer: the worker's engine, without a
ping per checkout, and its `GroupCommit` with the ledger's cache, made once and kept in the
worker thread's own state), `_ready`, `_answer` and `_close`. Only the process boundary differs.

The protocol, on the server's event loop:

1. A route awaits `submit(op)`: the op waits in its event loop's lane with a future of that loop.
2. While fewer than `IN_FLIGHT` of the lane's batches are out, the ops waiting (at most
   `nchf.MAX_BATCH`, in arrival order) go out together on the loop's next turn, so the requests
   read in one turn travel as one batch: `_answer(now, ops)` submitted to the executor, `now` being
   the server's clock when it is sent (`clock.now()`: a test that freezes or moves the clock moves
   the worker's too), and awaited (`asyncio.wrap_future`) by a task of its own, not by a route.
   Ops that arrive while the batches are out wait and go together when one comes back.
3. The worker answers the batch, committed before it returns, and sends back one result per op:
   an `Outcome`, or the error as `ChargingFailed` (a 500; not every error pickles) or
   `ChargingBusy` (contention, `db.busy`: a 503 the SMF may retry).
4. The task sends the lane's next batch, if ops wait, then hands each op its result. A route
   whose client went away (its task cancelled) has nothing handed to it and takes nothing else
   down: its op, if already sent, is charged all the same, and its retransmission gets the answer
   kept; if not yet sent, it is not sent.

Why two batches in flight: the worker takes its next call from the executor's queue. With a
single batch out that queue was empty each time it finished, and it sat idle for a round trip
(its outcomes to the event loop, the next batch back to it) and charging measured 20–25 % slower than the hand-written pipe this
replaced. With two, the next batch already waits in the executor's queue while the worker
commits the current one, as ops waited in the pipe. The worker still answers one batch at a time:
two batches decided at once (two workers) measured slower on two cores (bench/README.md).

A dead worker process (`BrokenProcessPool`: killed, out of memory) fails every call its pool
held. The pool is replaced (once per death, however many batches it held) and each of those
batches is sent once more; if that fails too, its ops fail with `ChargingFailed`. Sending a batch
again is safe whether or not the dead worker had committed it: a batch is one transaction (or,
after a failure, one per op), so each op was committed entirely or not at all, and an op
committed before is answered from what it left, not charged again:
  - an update or release finds the answer kept for its (session, sequence number)
    (`ChargingBatch.load` reads them, `nchf._Answering.answer` returns one before deciding
    anything, even if the session has been released since);
  - a create finds the session its create key opened and gets that session's first answer
    (`nchf._created_before`);
  - an op refused (unknown subscriber, network) wrote nothing, and is decided again.
If the dead worker's transaction commits while the batch sent again is running (on PostgreSQL
its commit may already have been sent, with its writes), the second answer's key (session and
sequence number) or the second session's create key is refused as a duplicate, and the op, run
again alone, finds the first (test_charging_process.py kills a worker before its batch commits,
and after its commit was sent).

`stop()` refuses new ops, finishes what its event loop holds (the ops waiting and the batches
out) for at most `STOP_SECONDS`, closes the worker's engine and shuts the executor down. Past
that time the worker process is killed and what it held fails (`ChargingFailed`); a worker thread
cannot be killed and is left to finish. A worker process also ends by itself when the server's
process dies (a watch on its parent), so it never outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import structlog
from sqlalchemy import Engine

from tongka import clock, logs
from tongka.charging.nchf import DATABASE_ERRORS, MAX_BATCH, GroupCommit, Op, Outcome
from tongka.charging.renew_link import RenewLinks
from tongka.db import BUSY_TIMEOUT, busy, make_engine, make_sessionmaker

log = structlog.get_logger()

IN_FLIGHT = 2  # batches out at once per event loop: one being answered, the next already queued
STOP_SECONDS = 10.0  # how long stop() lets the worker finish what it holds
Mode = Literal["process", "thread"]


class ChargingFailed(RuntimeError):
    """An op the worker could not answer (its error as text: errors do not all cross processes)."""


class ChargingBusy(ChargingFailed):
    """An op not answered for contention (`db.busy`): the SMF may send it again soon."""


@dataclass
class _Lane:
    """One event loop's ops: those waiting to go, and how many of its batches are out."""

    waiting: list[tuple[Op, asyncio.Future[Outcome]]] = field(default_factory=list)
    out: int = 0
    sending: bool = False  # a send is due on the loop's next turn


class ChargingWorker:
    """The server's side: batches ops to a one-worker executor, at most `IN_FLIGHT` at once."""

    def __init__(
        self,
        mode: Mode,
        database_url: str,
        links: RenewLinks,
        *,
        log_json: bool = False,
        busy_timeout: float = BUSY_TIMEOUT,
        echo: bool = False,
    ) -> None:
        self.mode = mode
        # A worker process configures its own logging as the server's; a thread shares the server's.
        self._start_args = (
            database_url,
            links,
            busy_timeout,
            echo,
            log_json if mode == "process" else None,
        )
        self._lock = threading.Lock()  # the executor is swapped from whichever loop found it dead
        self._executor: Executor | None = None
        self._ready: Future[int] | None = None
        self._pid: int | None = None
        self._closed = False
        self._stopping = False
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The worker process's id once it has started (process mode; None for a thread)."""
        return self._pid

    async def start(self) -> None:
        """Start the worker and wait until it is ready (its imports and engine made): before the first request."""
        self._current()
        assert self._ready is not None
        await asyncio.wrap_future(self._ready)

    async def submit(self, op: Op) -> Outcome:
        """The op's outcome, once the batch it went in has been committed."""
        if self._stopping:
            raise ChargingFailed("the charging worker is stopping")
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        future: asyncio.Future[Outcome] = loop.create_future()
        lane.waiting.append((op, future))
        if lane.out < IN_FLIGHT and not lane.sending:
            lane.sending = True  # on the next turn: the requests read in this one go together
            loop.call_soon(self._send, loop, lane)
        return await future

    async def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Refuse new ops, finish what this event loop holds for at most `timeout` seconds, end the worker."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._lanes.get(loop) is not None and loop.time() < deadline:
            if mine := self._tasks_of(loop):
                await asyncio.wait(
                    mine, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
            else:
                await asyncio.sleep(0)  # ops waiting and no batch out: their send is due this turn
        with self._lock:
            executor, self._executor, self._closed = self._executor, None, True
        lane = self._lanes.pop(loop, None)
        if lane is not None:  # not finished in time
            log.warning(
                "charging_worker_stop_timed_out", waiting=len(lane.waiting), batches_out=lane.out
            )
            for _op, future in lane.waiting:
                if not future.done():
                    future.set_exception(ChargingFailed("the charging worker stopped"))
            lane.waiting.clear()
            if self.mode == "process":
                self._kill()
            await asyncio.sleep(
                0
            )  # a task just made reaches its await: cancelled there, it fails its ops
            mine = self._tasks_of(loop)
            for task in mine:
                task.cancel()  # each fails its ops
            await asyncio.gather(*mine, return_exceptions=True)
        elif executor is not None:
            with contextlib.suppress(BrokenExecutor, TimeoutError):
                await asyncio.wait_for(
                    asyncio.wrap_future(executor.submit(_close)),
                    max(deadline - loop.time(), 1.0),
                )
        if executor is None:
            return
        if self.mode == "process":  # its end awaited, so the process is gone when the server is
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True), 5.0
                )
        else:  # a thread cannot be killed: it ends after what it is doing
            executor.shutdown(wait=False, cancel_futures=True)

    # --- the event loop's side ------------------------------------------------------------

    def _send(self, loop: asyncio.AbstractEventLoop, lane: _Lane) -> None:
        lane.sending = False
        while lane.waiting and lane.out < IN_FLIGHT:
            taken, lane.waiting = lane.waiting[:MAX_BATCH], lane.waiting[MAX_BATCH:]
            batch = [(op, future) for op, future in taken if not future.done()]  # done: gone
            if batch:
                lane.out += 1
                task = loop.create_task(self._run(loop, lane, batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if not lane.waiting and not lane.out and self._lanes.get(loop) is lane:
            del self._lanes[loop]  # idle: a loop that ends leaves nothing behind

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        lane: _Lane,
        batch: list[tuple[Op, asyncio.Future[Outcome]]],
    ) -> None:
        results: list[Outcome | ChargingFailed]
        try:
            results = await self._answer(clock.now(), [op for op, _future in batch])
        except asyncio.CancelledError:  # stop() gave up on it
            results = [ChargingFailed("the charging worker stopped") for _ in batch]
        except Exception as error:  # each op fails (a 500), none is left waiting
            if not isinstance(error, ChargingFailed):
                log.error("charging_transport_failed", exc_info=error)
            results = [ChargingFailed(f"{type(error).__name__}: {error}") for _ in batch]
        finally:
            lane.out -= 1
            self._send(loop, lane)  # the next batch first, so that the worker has it queued
        for (_op, future), result in zip(batch, results, strict=True):
            if future.done():  # the request was cancelled: its client went away
                continue
            if isinstance(result, Outcome):
                future.set_result(result)
            else:
                future.set_exception(result)

    async def _answer(self, now: datetime, ops: list[Op]) -> list[Outcome | ChargingFailed]:
        """The batch's results from the worker; sent once more to a new worker if the worker died."""
        for attempt in (1, 2):
            executor = self._current()
            try:
                return await asyncio.wrap_future(executor.submit(_answer, now, ops))
            except BrokenExecutor as broken:
                log.warning("charging_worker_died", ops=len(ops), attempt=attempt)
                if attempt == 2 or self._closed:
                    raise ChargingFailed("the charging worker died") from broken
                self._replace(executor)
        raise AssertionError("unreachable")

    def _current(self) -> Executor:
        with self._lock:
            if self._closed:
                raise ChargingFailed("the charging worker has stopped")
            if self._executor is None:
                self._executor = self._new_executor()
            return self._executor

    def _replace(self, broken: Executor) -> None:
        with self._lock:
            if self._executor is broken and not self._closed:  # once per death
                self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def _new_executor(self) -> Executor:
        executor: Executor
        if self.mode == "process":
            executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=self._start_args,
            )
        else:
            executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="charging-worker",
                initializer=_start,
                initargs=self._start_args,
            )
        self._pid = None
        self._ready = executor.submit(_ready)
        self._ready.add_done_callback(self._note_pid)
        return executor

    def _note_pid(self, ready: Future[int]) -> None:
        if self.mode == "process" and not ready.cancelled() and ready.exception() is None:
            self._pid = ready.result()

    def _kill(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)

    def _tasks_of(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        return [task for task in self._tasks if task.get_loop() is loop]


# --- the worker's side: the executor's thread, in a process of its own or the server's -------


@dataclass
class _Worker:
    engine: Engine
    group: GroupCommit


_here = threading.local()  # the worker's state: one thread runs every call of an executor of one


def _start(
    database_url: str, links: RenewLinks, busy_timeout: float, echo: bool, log_json: bool | None
) -> None:
    if log_json is not None:  # a process of its own
        logs.configure(log_json)
        _end_with_parent()
    # No ping on each checkout: it was a round trip per batch. A connection that broke fails its
    # batch, which is run again op by op (GroupCommit.run) on a new one. One thread: one connection.
    engine = make_engine(
        database_url,
        echo=echo,
        busy_timeout=busy_timeout,
        pool_size=1,
        max_overflow=1,
        pre_ping=False,
    )
    _here.worker = _Worker(engine, GroupCommit(make_sessionmaker(engine), links))


def _ready() -> int:
    return os.getpid()


def _answer(now: datetime, ops: list[Op]) -> list[Outcome | ChargingFailed]:
    worker: _Worker = _here.worker
    return [
        result if isinstance(result, Outcome) else _failure(result)
        for result in worker.group.run(ops, now)
    ]


def _close() -> None:
    worker: _Worker = _here.worker
    worker.engine.dispose()


def _failure(error: BaseException) -> ChargingFailed:
    if busy(error):
        return ChargingBusy(type(error).__name__)
    if not isinstance(
        error, DATABASE_ERRORS
    ):  # not logged by GroupCommit: its traceback stays here
        log.error("charging_op_crashed", exc_info=error)
    return ChargingFailed(f"{type(error).__name__}: {error}")


def _end_with_parent() -> None:
    """End this process when the server's does: nobody is left to answer (its transaction rolls back)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        log.warning("charging_worker_orphaned")
        os._exit(1)

    threading.Thread(target=watch, name="charging-parent-watch", daemon=True).start()
