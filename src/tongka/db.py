"""Database engine, sessions and the column types every domain shares.

The framework owns the transaction: one per request, job or CLI command, committed on
success and rolled back on error (`transaction()` and the `Session` dependency).
Service functions flush but never commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime
from select import POLLIN, poll
from typing import Annotated, Any, cast

import anyio.to_thread
import psycopg
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool
from psycopg_pool import PoolTimeout as AsyncPoolTimeout
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    CursorResult,
    DateTime,
    MetaData,
    Result,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    DisconnectionError,
    MultipleResultsFound,
    NoResultFound,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    QueryableAttribute,
    Session,
    mapped_column,
    sessionmaker,
)
from sqlalchemy.sql.elements import BindParameter, ColumnElement, KeyedColumnElement
from sqlalchemy.sql.selectable import Select
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.sql.visitors import InternalTraversal, iterate, replacement_traverse

from tongka import clock
from tongka.errors import DatabaseBusy, TongkaError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zones: it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Amounts (minor units, bytes, seconds) are 64-bit: 10 TB of data or 10^16 cents fit.
Amount = Annotated[int, mapped_column(BigInteger)]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime())]


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), str: String()}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class CreatedMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: clock.now())


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# An execution option: the transaction only reads. On SQLite it begins DEFERRED (a WAL reader,
# beside the one writer) instead of IMMEDIATE, and refuses any write (`PRAGMA query_only`),
# so a route that reads and then writes fails every time in the tests, not now and then
# (SQLITE_BUSY_SNAPSHOT) under load. Elsewhere it changes nothing.
READ_ONLY = "tongka_read_only"

# What `make_engine` gives a process that is not serving requests (the command line, the
# charging process): a long wait for the lock behind a request or a batch. The server's
# engine takes its figures from the settings (`db_*`).
BUSY_TIMEOUT = 30.0


def make_engine(
    url: str,
    echo: bool = False,
    *,
    busy_timeout: float = BUSY_TIMEOUT,
    pool_size: int = 10,
    max_overflow: int = 20,
    pre_ping: bool = True,
) -> Engine:
    """`busy_timeout` (seconds) bounds both waits: for SQLite's write lock and for a pooled connection.

    `pre_ping`: a pooled PostgreSQL connection that the server has closed is replaced before it is
    handed out (`_still_open`); without it, the first statement on it fails."""
    url = normalise_url(url)
    # hide_parameters: a statement's error names no value it carried (a message with a one-time code,
    # a username), so an error's log line cannot leak one.
    pool = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": busy_timeout,
        "hide_parameters": True,
    }
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            **pool,
        )
        _configure_sqlite(engine, busy_timeout)
        return engine
    engine = create_engine(url, echo=echo, pool_recycle=POOL_RECYCLE_SECONDS, **pool)
    if pre_ping:
        event.listen(engine, "checkout", _still_open)
    return engine


# A pooled PostgreSQL connection is replaced after this long: a firewall or a pooler on the way
# may drop an idle connection without a word, which no look at its socket can tell.
POOL_RECYCLE_SECONDS = 1800


def _still_open(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """At checkout: refuse a connection the server has closed, so that the pool connects anew.

    An idle connection has nothing to read. If its socket is readable, the server has closed it or
    sent its last words (a restart: "terminating connection due to administrator command").
    `DisconnectionError` makes the pool drop it and try another (up to three times). A `poll` of
    one socket, where `pool_pre_ping` cost a round trip (`SELECT 1`) on every checkout.
    What this cannot see (the server going away during a request) fails that request; SQLAlchemy
    then invalidates every connection of the pool made before, so the next requests reconnect.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("the connection is closed")
    if _readable(dbapi_connection.fileno()):
        raise DisconnectionError("the server closed the connection")


def _readable(fileno: int) -> bool:
    ready = poll()
    ready.register(fileno, POLLIN)
    return bool(ready.poll(0))


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    # A writing transaction starts with BEGIN IMMEDIATE: SQLite then serialises writers at
    # BEGIN instead of failing one of two transactions that both read then write
    # (the SQLAlchemy pysqlite "serializable isolation" recipe). A reading one (READ_ONLY)
    # starts DEFERRED: WAL lets it read a snapshot while the one writer writes.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        read_only = bool(conn.get_execution_options().get(READ_ONLY))
        info = (
            conn.connection.info
        )  # kept with the SQLite connection: set the pragma only when it changes
        if info.get(READ_ONLY, False) != read_only:
            conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
            info[READ_ONLY] = read_only
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def busy(error: BaseException) -> bool:
    """Whether `error` is contention rather than a fault: SQLite's lock not had within its busy
    timeout (`database is locked`, a stale snapshot), or no pooled connection within the pool's."""
    if isinstance(error, PoolTimeout):
        return True
    orig = getattr(error, "orig", None)
    return (
        isinstance(error, OperationalError)
        and isinstance(orig, sqlite3.OperationalError)
        and getattr(orig, "sqlite_errorcode", 0) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    )


def _psycopg(connection: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a PostgreSQL session's connection."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """PostgreSQL: the session's statements sent without waiting for each answer (psycopg's pipeline
    mode) until a result is read; a run of writes and their commit then cost one round trip.
    Elsewhere, nothing changes."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    with _psycopg(connection).pipeline():
        yield


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit if the block ends normally, roll back if it raises.
    `read_only`: it only reads (READ_ONLY)."""
    with factory(execution_options={READ_ONLY: True}) if read_only else factory() as session:
        try:
            yield session
            session.commit()
        except TongkaError as refusal:
            # Some refusals keep what was done before them (a failed one-time-code try counts).
            session.commit() if refusal.commit_anyway else session.rollback()
            raise
        except BaseException:
            session.rollback()
            raise


def matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (a guarded state change checks it is 1).
    Session.execute answers those with a CursorResult, though its signature says Result."""
    assert isinstance(result, CursorResult)
    return result.rowcount


# --- statements whose text does not depend on how many rows they name ----------------------
#
# PostgreSQL prepares a statement (psycopg: from its fifth use) and keeps its plan, but only
# for the same text: `IN (:a, :b, ...)` is a new text for every length, planned again each
# time (over 2 ms for the line query of a charging batch). An array parameter keeps one text.


class AnyOf(ColumnElement[bool]):
    """`column IN (values of the parameter `name`)`: on PostgreSQL `column = ANY(:name)` with one
    array parameter, elsewhere an expanding IN."""

    inherit_cache = True
    # no Boolean: SQLite would compare it to 1 (the stubs expect every ColumnElement[bool] to be one)
    type = NULLTYPE  # type: ignore[assignment]
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any], name: str) -> None:
        self.column = column
        self.name = name


@compiles(AnyOf)
def _any_of(element: AnyOf, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(AnyOf, "postgresql")
def _any_of_postgresql(element: AnyOf, compiler: Any, **kw: Any) -> str:
    array = bindparam(element.name, type_=ARRAY(element.column.type))
    return compiler.process(element.column == any_(array), **kw)


class Rows(list[tuple[Any, ...]]):
    """The rows a `direct` statement returned, read the way the batches read SQLAlchemy's results."""

    def all(self) -> Rows:
        return self

    def scalars(self) -> Values:
        return Values(row[0] for row in self)

    def scalar_one(self) -> Any:
        if len(self) != 1:
            raise (NoResultFound if not self else MultipleResultsFound)(
                f"{len(self)} rows where one was expected"
            )
        return self[0][0]


class Values(list[Any]):
    """The first column of `Rows`."""

    def all(self) -> Values:
        return self


_COMPILED: dict[int, tuple[Any, str, dict[str, Any]]] = {}


def _for_psycopg(statement: Any, dialect: Any) -> tuple[str, dict[str, Any]]:
    """A Core statement as psycopg runs it, compiled once: its SQL and the values written in the
    statement itself (`status="settled"`), to which the caller adds the rest."""
    found = _COMPILED.get(id(statement))
    if found is None or found[0] is not statement:
        compiled = statement.compile(dialect=dialect)
        defaults = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        sql = str(compiled)
        for name, bind in compiled.binds.items():
            # Arrays in PostgreSQL's binary format: psycopg writes one as text an element at a time
            # in Python (1.2 µs an integer, 2.5 a timestamp), in binary 5 to 16 times faster; as
            # text they were a quarter of the charging process's time (bench/README.md).
            if isinstance(bind.type, ARRAY):
                sql = sql.replace(f"%({name})s", f"%({name})b")
        found = _COMPILED[id(statement)] = (statement, sql, defaults)
    return found[1], found[2]


def direct(session: Session) -> Any:
    """How a charging batch runs its prebuilt Core statements on the session's connection.

    PostgreSQL: straight through the psycopg connection the session holds (same transaction),
    each statement compiled once, its values passed as psycopg adapts them (UUIDs, aware
    datetimes, lists as arrays): SQLAlchemy's work per execution — cache lookup, bind and
    result processing — cost about 85 µs a statement; without it the charging process took a
    third less CPU per operation (bench/README.md).
    Elsewhere: the session's SQLAlchemy connection as it is.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return connection.execute
    cursor = _psycopg(connection).cursor()
    dialect = connection.dialect

    def execute(statement: Any, params: dict[str, Any] | None = None) -> Rows:
        _compiled_execute(cursor, dialect, statement, params)
        return Rows(cursor.fetchall()) if statement.is_select else Rows()

    return execute


def _compiled_execute(
    cursor: psycopg.Cursor[Any], dialect: Any, statement: Any, params: dict[str, Any] | None
) -> None:
    """Run `statement` on `cursor`, compiled once (`direct`)."""
    sql, defaults = _for_psycopg(statement, dialect)
    cursor.execute(sql, {**defaults, **(params or {})}, prepare=True)


def direct_all(session: Session, statements: list[tuple[Any, dict[str, Any]]]) -> list[Rows]:
    """Several `direct` selects, each one's rows. PostgreSQL: sent together in one pipeline (with the
    transaction's BEGIN, if it is the first), one round trip rather than one a statement; they run in
    order, so a lock the first takes holds for the rest. Elsewhere: one after another."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return [Rows(connection.execute(s, p).all()) for s, p in statements]
    driver = _psycopg(connection)
    with driver.pipeline():
        cursors = []
        for statement, params in statements:
            cursor = driver.cursor()
            _compiled_execute(cursor, connection.dialect, statement, params)
            cursors.append(cursor)
        return [Rows(cursor.fetchall()) for cursor in cursors]


READS_IN_FLIGHT = 2  # batches of one statement out at once; more reads wait for one to come back
MOST_TOGETHER = 256  # reads in one batch


class Together:
    """A read-only statement whose reads may go together (`rows_together` of `AsyncReads` on
    PostgreSQL, of `ThreadReads` elsewhere, which runs `statement` once a read in one thread hop).

    `batch` is the statement once for each of many reads: its parameters `names` become arrays, one
    element a read, unnested with the read's index `n`, and the statement runs for each element as
    a LATERAL subquery. Its rows come back as the statement's, each after its read's index, ordered
    by that index and then by the statement's own ORDER BY (a subquery's order alone does not hold
    in the query around it).
    """

    def __init__(self, statement: Select[Any], names: tuple[str, ...]) -> None:
        self.statement = statement
        self.names = names
        binds = {
            e.key: e for e in iterate(statement) if isinstance(e, BindParameter) and e.key in names
        }
        asked = (
            func.unnest(
                bindparam("n", type_=ARRAY(BigInteger)),
                *(bindparam(name, type_=ARRAY(binds[name].type)) for name in names),
            )
            .table_valued("n", *names)
            .render_derived(name="asked")
        )

        def read_of_asked(element: Any, **_: Any) -> Any:
            if isinstance(element, BindParameter) and element.key in names:
                return asked.c[element.key]
            return None

        def correlated(element: Any, **_: Any) -> Any:
            # A SELECT nested in a subquery of the statement takes `asked` from the LATERAL around
            # it, not into its own FROM (SQLAlchemy correlates only the LATERAL's own SELECT).
            return (
                element.correlate(asked)
                if isinstance(element, Select) and element is not each
                else None
            )

        each = cast(Select[Any], replacement_traverse(statement, {}, read_of_asked))
        each = cast(Select[Any], replacement_traverse(each, {}, correlated))
        one = each.lateral("one")
        order = []
        for clause in each._order_by_clauses:
            column = one.corresponding_column(cast(KeyedColumnElement[Any], clause))
            if column is None:
                raise ValueError("a statement read together orders by columns it selects")
            order.append(column)
        self.batch = (
            select(asked.c.n, *one.c)
            .select_from(asked)
            .join(one, true())
            .order_by(asked.c.n, *order)
        )


class _Batches:
    """Reads of a `Together` statement that wait are sent as one batch (`rows_together`); how a
    batch is read is the subclass's `batch_rows`."""

    def __init__(self) -> None:
        self._waiting: dict[Together, list[tuple[dict[str, Any], asyncio.Future[Any]]]] = {}
        self._out: dict[Together, int] = {}  # batches sent and not yet answered, per statement
        self._due: set[Together] = set()  # a send asked for on the loop's next turn
        self._sending: set[asyncio.Task[None]] = set()

    async def rows_together(
        self, together: Together, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """`rows` of `together`'s statement, sent with the other reads of it waiting: one statement
        and one round trip for all of them. Reads asked for in the same turn of the event loop go
        together; while `READS_IN_FLIGHT` batches of the statement are out, new reads wait and go
        together when one comes back (at most `MOST_TOGETHER` in one)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        self._waiting.setdefault(together, []).append((params, answer))
        self._send_soon(together)
        return await answer

    def _send_soon(self, together: Together) -> None:
        """On the loop's next turn, once this turn's reads have come, if reads wait and a batch may
        go out (only `_send` takes reads off the list, so they are still there when it runs)."""
        if (
            self._waiting.get(together)
            and together not in self._due
            and self._out.get(together, 0) < READS_IN_FLIGHT
        ):
            self._due.add(together)
            asyncio.get_running_loop().call_soon(self._send, together)

    def _send(self, together: Together) -> None:
        self._due.discard(together)
        waiting = self._waiting[together]
        asked, self._waiting[together] = waiting[:MOST_TOGETHER], waiting[MOST_TOGETHER:]
        self._out[together] = self._out.get(together, 0) + 1
        task = asyncio.ensure_future(self._answer(together, asked))
        self._sending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    async def _answer(
        self,
        together: Together,
        asked: list[tuple[dict[str, Any], asyncio.Future[list[tuple[Any, ...]]]]],
    ) -> None:
        try:
            found = await self.batch_rows(together, [params for params, _ in asked])
        except BaseException as error:  # every read of the batch fails as one read would
            for _, answer in asked:
                if not answer.done():
                    answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        finally:
            self._out[together] -= 1
            self._send_soon(together)  # the reads that waited meanwhile
        for (_, answer), rows in zip(asked, found, strict=True):
            if not answer.done():  # its request may have gone (cancelled)
                answer.set_result(rows)

    async def batch_rows(
        self, together: Together, asked: list[dict[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        raise NotImplementedError


class AsyncReads(_Batches):
    """PostgreSQL: a read of one statement awaited in the event loop, on a pool of psycopg's async
    connections of its own (for the app's balance read, its most frequent call).

    No worker thread (a sync route's hops each hand the interpreter lock over), no ORM session,
    no BEGIN or COMMIT: the connections are in autocommit, and one SELECT is a transaction and a
    snapshot by itself. Statements are compiled once as `direct` does and prepared on each
    connection. Their session's time zone is UTC, so timestamps come back aware in UTC as
    `UTCDateTime` gives them. The pool is opened and closed by the app's lifespan (an event loop's
    own); a wait for a connection past `timeout` is `DatabaseBusy`, as the gate's is.
    """

    def __init__(self, engine: Engine, size: int, timeout: float) -> None:
        self.dialect = engine.dialect
        super().__init__()
        self.pool = AsyncConnectionPool(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            min_size=1,
            max_size=size,
            timeout=timeout,
            max_lifetime=POOL_RECYCLE_SECONDS,
            check=_still_open_async,
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
            open=False,
            name="tongka-reads",
        )

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def rows(self, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql, defaults = _for_psycopg(statement, self.dialect)
        try:
            async with self.pool.connection() as connection:
                cursor = await connection.execute(sql, {**defaults, **params}, prepare=True)
                return await cursor.fetchall()
        except AsyncPoolTimeout:
            raise DatabaseBusy() from None

    async def batch_rows(
        self, together: Together, asked: list[dict[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        """One read: its statement. More: the batch statement over their arrays, its rows shared
        out by each read's index."""
        if len(asked) == 1:
            return [await self.rows(together.statement, asked[0])]
        found: list[list[tuple[Any, ...]]] = [[] for _ in asked]
        arrays = {name: [params[name] for params in asked] for name in together.names}
        for row in await self.rows(together.batch, {"n": list(range(len(asked))), **arrays}):
            found[row[0]].append(row[1:])
        return found


class ThreadReads(_Batches):
    """SQLite, or an app whose lifespan has not opened `AsyncReads`: the reads that wait are read in
    one hop to a worker thread (one read-only transaction, the statement once a read), taking the
    database's turn `turn` gives (the gate's read turn), rather than a hop each."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        turn: Callable[[], AbstractAsyncContextManager[Any]],
    ) -> None:
        super().__init__()
        self.sessions, self.turn = sessions, turn

    async def batch_rows(
        self, together: Together, asked: list[dict[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        def read() -> list[list[tuple[Any, ...]]]:
            with transaction(self.sessions, read_only=True) as session:
                connection = session.connection()
                return [
                    [tuple(row) for row in connection.execute(together.statement, params)]
                    for params in asked
                ]

        async with self.turn():
            return await anyio.to_thread.run_sync(read)


async def _still_open_async(connection: psycopg.AsyncConnection[Any]) -> None:
    """`_still_open` for the async pool: the pool drops a connection this refuses and takes another."""
    if connection.closed or _readable(connection.fileno()):
        raise psycopg.OperationalError("the server closed the connection")


# --- many rows in one statement -----------------------------------------------------------
#
# PostgreSQL: one statement over arrays, a column an array (`INSERT ... SELECT FROM unnest`,
# `UPDATE ... FROM unnest`), run through `direct`: one plan, one run of the executor and one
# read of the table's constraints, where `executemany` does all that once a row. SQLite:
# `executemany`, which costs it little.

_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _arrays(table: Table, names: tuple[str, ...], alias: str) -> Any:
    """`unnest(:a, :b, ...) AS alias(a, b, ...)`, a parameter an array typed as the column of that name."""
    arrays = func.unnest(*(bindparam(n, type_=ARRAY(table.c[n].type)) for n in names))
    return arrays.table_valued(*names).render_derived(name=alias)


def _by_arrays(session: Session, table: Table, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Run `statement` (built on `_arrays`) with each column of `rows` as one array."""
    json_columns = {n for n in rows[0] if isinstance(table.c[n].type, JSON)}
    direct(session)(
        statement,
        {
            n: [None if r[n] is None else Json(r[n]) for r in rows]
            if n in json_columns
            else [r[n] for r in rows]
            for n in rows[0]
        },
    )


def _postgresql(session: Session) -> bool:
    return session.connection().dialect.name == "postgresql"


def _table(model: type[Base] | Table) -> Table:
    if isinstance(model, Table):
        return model
    # Declared as a FromClause on the declarative base; a mapped class of ours has a Table.
    return model.__table__  # type: ignore[return-value]


def insert_rows(session: Session, model: type[Base] | Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) into `model`'s table, past the ORM."""
    if not rows:
        return
    table = _table(model)
    if not _postgresql(session):
        session.connection().execute(insert(table), rows)
        return
    names = tuple(rows[0])
    statement = _STATEMENTS.get(("insert", table.name, names))
    if statement is None:
        new = _arrays(table, names, "new_rows")
        statement = _STATEMENTS["insert", table.name, names] = insert(table).from_select(
            names, select(*new.c)
        )
    _by_arrays(session, table, statement, rows)


def update_rows(
    session: Session,
    model: type[Base] | Table,
    key: str,
    rows: list[dict[str, Any]],
    *,
    add: tuple[str, ...] = (),
) -> None:
    """Set each row's values on the row of `model`'s table whose `key` column has its value there;
    to the columns in `add`, add them. Past the ORM; in key order, so two transactions lock alike."""
    if not rows:
        return
    table = _table(model)
    rows = sorted(rows, key=lambda r: r[key])
    names = tuple(rows[0])
    postgresql = _postgresql(session)
    statement = _STATEMENTS.get(("update", table.name, key, names, add, postgresql))
    if statement is None:
        if postgresql:
            new = _arrays(table, names, "new_rows")
            values = {n: table.c[n] + new.c[n] if n in add else new.c[n] for n in names if n != key}
            statement = update(table).where(table.c[key] == new.c[key]).values(values)
        else:
            values = {
                n: table.c[n] + bindparam(f"b_{n}") if n in add else bindparam(f"b_{n}")
                for n in names
                if n != key
            }
            statement = update(table).where(table.c[key] == bindparam(f"b_{key}")).values(values)
        _STATEMENTS["update", table.name, key, names, add, postgresql] = statement
    if postgresql:
        _by_arrays(session, table, statement, rows)
    else:
        session.connection().execute(statement, [{f"b_{n}": v for n, v in r.items()} for r in rows])


def add_rows(
    session: Session,
    model: type[Base],
    key: tuple[str, ...],
    amounts: tuple[str, ...],
    rows: list[dict[str, Any]],
) -> None:
    """Add each row's `amounts` to the row of `model` with the same primary or unique `key`, inserting it
    first if it is not there; a row's other values fill a new row only.

    One atomic statement (INSERT ... ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike), so two
    transactions starting the same counter at once both count; the rows go in key order, so two
    transactions adding to the same rows lock them in the same order.
    """
    if not rows:
        return
    session.flush()  # as Session.execute would: the ORM's pending rows first
    table = _table(model)
    rows = sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))
    names = tuple(rows[0])
    postgresql = _postgresql(session)
    statement = _STATEMENTS.get(("add", table.name, key, amounts, names, postgresql))
    if statement is None:
        from sqlalchemy.dialects import postgresql as pg
        from sqlalchemy.dialects import sqlite

        if postgresql:
            new = _arrays(table, names, "new_rows")
            statement = pg.insert(table).from_select(names, select(*new.c))
        else:
            statement = sqlite.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={name: table.c[name] + statement.excluded[name] for name in amounts},
        )
        _STATEMENTS["add", table.name, key, amounts, names, postgresql] = statement
    if postgresql:
        _by_arrays(session, table, statement, rows)
    else:
        session.connection().execute(statement, rows)
