"""Requests wait for the database in the event loop, holding no worker thread.

FastAPI runs a request's sync dependencies (the token lookup) and its route each on a
worker thread of anyio's limiter (`Settings.threads`), one hop after another; the
request's session, its pooled connection and, on SQLite, a writer's lock live across the
hops. A thread that waits for a pooled connection, or for SQLite's write lock, may wait
for a request that needs a thread to go on: on 2026-12-06 64 balance reads after a
charging run filled every thread with such waits, and nothing moved until the busy
timeout turned each into a 500. So before its session starts a request waits here, in the
event loop, for:

* a session: at most `Settings.db_pool_size` requests hold one at a time, and the pool
  has that many connections (plus `db_pool_overflow` for work outside requests), so no
  thread ever waits for a connection;
* on SQLite, if it may write (not GET/HEAD/OPTIONS), its turn: one writing request at a
  time per process, as SQLite has one writer; readers (DEFERRED, `db.READ_ONLY`) run
  beside it. A writer of another process (the charging process, another `--workers`
  process, the command line) is still met in a thread, by SQLite's busy timeout, but that
  holder needs none of this process's threads.

Chosen over running a request's whole database work and its commit in one thread hop,
which would put every route's dependencies and body into one function: the gate is one
dependency (`deps._admitted`), costs a request an await, and gives the write turn to
writers in the order they came. bench/mixed.py measures it under charging, renewals and
balance reads together (bench/README.md).

A request that has waited `Settings.db_busy_timeout_seconds` is refused: `DatabaseBusy`, a 503
with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from weakref import WeakKeyDictionary

from tongka.errors import DatabaseBusy

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Gate:
    def __init__(self, sessions: int, one_writer: bool, timeout: float) -> None:
        self.sessions, self.one_writer, self.timeout = sessions, one_writer, timeout
        # asyncio's locks belong to one event loop; the tests run an app on several in turn.
        self._loops: WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, asyncio.Lock]
        ] = WeakKeyDictionary()

    def _locks(self) -> tuple[asyncio.Semaphore, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        locks = self._loops.get(loop)
        if locks is None:
            locks = self._loops[loop] = (asyncio.Semaphore(self.sessions), asyncio.Lock())
        return locks

    @asynccontextmanager
    async def enter(self, write: bool) -> AsyncIterator[None]:
        """Wait (at most `timeout` seconds) for a session and, if `write` on SQLite, the write turn."""
        sessions, writer = self._locks()
        write_turn = write and self.one_writer
        try:
            async with asyncio.timeout(self.timeout):
                # The write turn first: a writer waiting for it holds no session another could use.
                if write_turn:
                    await writer.acquire()
                try:
                    await sessions.acquire()
                except BaseException:
                    if write_turn:
                        writer.release()
                    raise
        except TimeoutError:
            raise DatabaseBusy() from None
        try:
            yield
        finally:
            sessions.release()
            if write_turn:
                writer.release()
