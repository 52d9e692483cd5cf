"""Nchf_ConvergedCharging requests answered in batches, one transaction and one commit per batch.

Each request (create, update, release) becomes an `Op`; the ops waiting at that moment
are answered together in one transaction (`answer_batch`, over `engine.ChargingBatch`),
committed, and only then do their routes answer: the ledger is durable before the network
hears of a grant. While one batch is in the database, the next gathers. A batch that fails
(a database error, two servers creating the same session at once) is rolled back and its
ops are run again one per transaction, so one bad request fails alone.

Where the batches run (`Settings.charging_worker`):
  process  `ChargingProcess`: in a process of its own beside each server process, so that
           speaking HTTP and deciding charges use two cores rather than share one
           interpreter lock (`tongka serve`).
  thread   `GroupCommit`: in a thread of the server's process (the tests, which run many
           short-lived apps).

Within a batch the ops are decided in arrival order, as if each had its own
transaction: a retransmission in the same batch gets the answer its original got.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import multiprocessing
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.account.models import Line
from tongka.charging.engine import ChargingBatch, SessionState
from tongka.charging.models import ChargingAnswer, ChargingSession, Network
from tongka.charging.service import LineNotActive, NetworkNotServed, UnknownNetwork
from tongka.db import AnyOf, make_engine, make_sessionmaker, new_id, transaction
from tongka.ledger.batch import LedgerCache

log = structlog.get_logger()

VALIDITY_SECONDS = 600  # validityTime of each grant
THRESHOLD_SHARE = 5  # volumeQuotaThreshold: ask again when a fifth of the grant is left
MAX_BATCH = 64  # ops per transaction

# Application errors (ProblemDetails `cause`, TS 32.291 table 6.1.7.3-1).
USER_UNKNOWN = "USER_UNKNOWN"
END_USER_REQUEST_DENIED = "END_USER_REQUEST_DENIED"
# Armed in every create and update answer: the SMF reports at once when the phone changes network
# (at Lo Wu or Futian), closing its containers there, so each side's usage is charged in its zone.
TRIGGERS = [{"triggerType": "PLMN_CHANGE", "triggerCategory": "IMMEDIATE_REPORT"}]


@dataclass
class Op:
    """One request of the network, as much of it as charging needs."""

    kind: str  # create | update | release
    sequence: int  # invocationSequenceNumber
    # bytes reported per rating group: up to a PLMN_CHANGE (all of it without one), and after it
    used: dict[int, int] = field(default_factory=dict)
    requested: list[tuple[int, int]] = field(
        default_factory=list
    )  # (rating group, bytes), in the request's order
    ref: str | None = None  # update, release: the charging data ref
    identities: list[str] = field(default_factory=list)  # create: SUPI / GPSI, in the order tried
    plmn: str | None = None  # the serving network the request names (create: required)
    used_after: dict[int, int] = field(default_factory=dict)
    notify_uri: str | None = None  # create
    create_key: str | None = None  # create: what makes it the same create again


@dataclass
class Outcome:
    status: int
    body: Any  # the ChargingDataResponse, a ProblemDetails, or None (204)
    ref: str | None = None  # the session answered (create: for Location)

    @property
    def problem(self) -> bool:
        return self.status >= 400


def problem(status: int, title: str, detail: str, cause: str) -> Outcome:
    return Outcome(status, {"title": title, "status": status, "detail": detail, "cause": cause})


def not_found(ref: str | None) -> Outcome:
    return problem(404, "Not Found", f"No open charging session {ref}.", "CONTEXT_NOT_FOUND")


# --- one batch ----------------------------------------------------------------------------


def answer_batch(
    session: Session, ops: list[Op], renewal_base: str, cache: LedgerCache | None = None
) -> list[Outcome]:
    """Decide every op of the batch in order, write the lot and commit."""
    batch = ChargingBatch(session, clock.now(), cache)
    creates = [op for op in ops if op.kind == "create"]
    lines = _lines_for(session, [i for op in creates for i in op.identities])
    created = _created_before(session, [op.create_key for op in creates if op.create_key])
    batch.load(
        refs=[op.ref for op in ops if op.ref],
        line_ids=list(lines.values()),
        sequences=[op.sequence for op in ops if op.ref],
    )
    batch.load_rating_groups(
        [group for op in ops for group in (*op.used, *op.used_after, *(g for g, _ in op.requested))]
    )
    by_ref = {s.ref: s for s in batch.sessions.values()}
    # The networks of the creates and, only when a session changes network (rare), of every session's
    # request and its network (a session may cross and come back within one batch).
    plmns = {op.plmn for op in creates if op.plmn}
    if any(op.plmn and op.ref in by_ref and by_ref[op.ref].plmn != op.plmn for op in ops if op.ref):
        plmns |= {op.plmn for op in ops if op.plmn} | {s.plmn for s in batch.sessions.values()}
    networks = _networks(session, plmns)
    kept = {key: Outcome(status, answer) for key, (status, answer) in batch.kept.items()}
    answering = _Answering(batch, by_ref, kept, created, networks, lines, renewal_base)
    outcomes = [answering.answer(op) for op in ops]
    batch.flush(commit=True)
    return outcomes


@dataclass
class _Answering:
    batch: ChargingBatch
    by_ref: dict[str, SessionState]
    kept: dict[tuple[Any, int], Outcome]  # (session id, sequence) -> the answer given
    created: dict[str, Outcome]  # create key -> the answer given to that create
    networks: dict[str, tuple[str, bool]]  # plmn -> (zone, active)
    lines: dict[str, Any]  # identity -> line id
    renewal_base: str

    def answer(self, op: Op) -> Outcome:
        if op.kind == "create":
            return self.create(op)
        charging_session = self.by_ref.get(op.ref or "")
        if charging_session is None or (op.kind == "update" and charging_session.status != "open"):
            return not_found(op.ref)
        if (kept := self.kept.get((charging_session.id, op.sequence))) is not None:
            log.info("charging_retransmission", ref=op.ref, seq=op.sequence)
            return kept
        if charging_session.status != "open":
            return not_found(op.ref)
        self.cross_if_moved(charging_session, op)
        if op.kind == "update":
            return self.keep(
                charging_session, op, Outcome(200, self.grant_all(charging_session, op), op.ref)
            )
        self.batch.release(charging_session)
        return self.keep(charging_session, op, Outcome(204, None, op.ref))

    def create(self, op: Op) -> Outcome:
        line_id = next((self.lines[i] for i in op.identities if i in self.lines), None)
        if line_id is None:
            return problem(404, "Not Found", "No line has this SUPI or GPSI.", USER_UNKNOWN)
        if op.create_key and (again := self.created.get(op.create_key)) is not None:
            log.info("charging_retransmission", ref=again.ref, seq=op.sequence)
            return again
        line = self.batch.lines[line_id]
        zone, active = self.networks.get(op.plmn or "", (None, False))
        refusal = (
            UnknownNetwork.code
            if zone is None
            else NetworkNotServed.code
            if not active
            else (LineNotActive.code if line.status != "active" else None)
        )
        if refusal or zone is None:
            log.info("charging_refused", plmn=op.plmn, line_id=str(line.id), reason=refusal)
            return problem(
                403, "Forbidden", f"Charging refused: {refusal}.", END_USER_REQUEST_DENIED
            )
        assert op.plmn is not None
        charging_session = self.batch.open_session(
            line, op.plmn, zone, new_id().hex, notify_uri=op.notify_uri, create_key=op.create_key
        )
        self.by_ref[charging_session.ref] = charging_session
        outcome = self.keep(
            charging_session,
            op,
            Outcome(201, self.grant_all(charging_session, op), charging_session.ref),
        )
        if op.create_key:
            self.created[op.create_key] = outcome
        return outcome

    def keep(self, charging_session: SessionState, op: Op, outcome: Outcome) -> Outcome:
        self.batch.keep_answer(charging_session, op.sequence, outcome.status, outcome.body)
        self.kept[charging_session.id, op.sequence] = outcome
        return outcome

    def cross_if_moved(self, charging_session: SessionState, op: Op) -> None:
        """Charge the usage reported; if the request names another network than the session's, the phone
        crossed: the usage before the change is the old network's, the session's open grants are settled
        there, and the usage after it is the new network's. A network that is unknown (no zone to charge
        in) keeps the session on the old one, and, like one not served, gets no quota."""
        plmn = op.plmn
        zone, active = self.networks.get(plmn or "", (None, False))
        if plmn is None or plmn == charging_session.plmn or zone is None:
            # No crossing (or none to rate: an unknown network has no zone), so all of it is this
            # network's, settled at once against the groups' grants.
            used = dict(op.used)
            for group, volume in op.used_after.items():
                used[group] = used.get(group, 0) + volume
            self.settle(charging_session, used)
            if plmn is not None and plmn != charging_session.plmn:
                log.info(
                    "charging_plmn_change",
                    ref=op.ref,
                    old=charging_session.plmn,
                    new=plmn,
                    known=False,
                )
                self.batch.cross(
                    charging_session, charging_session.plmn, charging_session.zone, False
                )
            return
        log.info(
            "charging_plmn_change", ref=op.ref, old=charging_session.plmn, new=plmn, served=active
        )
        self.settle(charging_session, op.used)
        self.batch.cross(charging_session, plmn, zone, active)
        self.settle(charging_session, op.used_after)

    def settle(self, charging_session: SessionState, used: dict[int, int]) -> None:
        """Each rating group's reported usage settles its open grants; the excess is charged."""
        for rating_group, volume in used.items():
            excess = self.batch.settle_usage(charging_session, rating_group, volume)
            if excess is not None:
                log.info(
                    "charging_usage_beyond_grant",
                    ref=charging_session.ref,
                    rating_group=rating_group,
                    from_buckets=excess.from_buckets,
                    overage_bytes=excess.overage_bytes,
                    owed_bytes=excess.owed_bytes,
                )

    def grant_all(self, charging_session: SessionState, op: Op) -> dict[str, Any]:
        units = []
        for rating_group, requested in op.requested:
            result = self.batch.request_quota(
                charging_session, rating_group, requested, VALIDITY_SECONDS
            )
            unit: dict[str, Any] = {"resultCode": result.result_code, "ratingGroup": rating_group}
            if result.granted_bytes:
                unit["grantedUnit"] = {"totalVolume": result.granted_bytes}
                unit["validityTime"] = VALIDITY_SECONDS
                if not result.final_unit:
                    unit["volumeQuotaThreshold"] = result.granted_bytes // THRESHOLD_SHARE
            if result.final_unit:
                # Data stops, and the phone's browser is sent to the line's renewal page.
                unit["finalUnitIndication"] = {
                    "finalUnitAction": "REDIRECT",
                    "redirectServer": {
                        "redirectAddressType": "URL",
                        "redirectServerAddress": f"{self.renewal_base}/renew/{charging_session.line_id}",
                    },
                }
            units.append(unit)
        return {
            "invocationTimeStamp": self.batch.now.isoformat().replace("+00:00", "Z"),
            "invocationSequenceNumber": op.sequence,
            "multipleUnitInformation": units,
            "triggers": TRIGGERS,
        }


def _lines_for(session: Session, identities: list[str]) -> dict[str, Any]:
    """Line ids by the identities that name them: SUPI ("imsi-<digits>") or GPSI ("msisdn-<digits>", E.164 without +)."""
    imsis = {
        i.removeprefix("imsi-") for i in identities if i.startswith("imsi-") and i[5:].isdigit()
    }
    numbers = {
        "+" + i.removeprefix("msisdn-")
        for i in identities
        if i.startswith("msisdn-") and i[7:].isdigit()
    }
    if not imsis and not numbers:
        return {}
    found: dict[str, Any] = {}
    for line_id, imsi, hk_number, cn_number in session.connection().execute(
        _LINES_BY_IDENTITY, {"imsis": list(imsis), "numbers": list(numbers)}
    ):
        if imsi in imsis:
            found[f"imsi-{imsi}"] = line_id
        for number in (hk_number, cn_number):
            if number in numbers:
                found[f"msisdn-{number[1:]}"] = line_id
    return found


def _created_before(session: Session, keys: list[str]) -> dict[str, Outcome]:
    """For creates seen before: the first answer their session gave, by create key."""
    if not keys:
        return {}
    found: dict[str, Outcome] = {}
    for key, ref, status, answer in session.connection().execute(_CREATED_BEFORE, {"keys": keys}):
        found[key] = Outcome(status, answer, ref)  # the earliest is written last
    return found


def _networks(session: Session, plmns: Iterable[str]) -> dict[str, tuple[str, bool]]:
    wanted = list(plmns)
    if not wanted:
        return {}
    return {
        plmn: (zone, active)
        for plmn, zone, active in session.connection().execute(_NETWORKS, {"plmns": wanted})
    }


# Built once; an array parameter each (`db.AnyOf`), so PostgreSQL plans them once.
_LINES_BY_IDENTITY = select(Line.id, Line.imsi, Line.hk_number, Line.cn_number).where(
    or_(
        AnyOf(Line.imsi, "imsis"),
        AnyOf(Line.hk_number, "numbers"),
        AnyOf(Line.cn_number, "numbers"),
    )
)
_CREATED_BEFORE = (
    select(
        ChargingSession.create_key,
        ChargingSession.charging_data_ref,
        ChargingAnswer.status_code,
        ChargingAnswer.answer,
    )
    .join(ChargingAnswer, ChargingAnswer.charging_session_id == ChargingSession.id)
    .where(AnyOf(ChargingSession.create_key, "keys"))
    .order_by(ChargingAnswer.created_at.desc(), ChargingAnswer.invocation_sequence_number.desc())
)
_NETWORKS = select(Network.plmn, Network.zone, Network.active).where(AnyOf(Network.plmn, "plmns"))


# --- group commit -------------------------------------------------------------------------


class GroupCommit:
    """A worker thread that answers the ops waiting, a batch per transaction.

    One batch at a time: two in flight measured slower (bench/README.md).
    """

    def __init__(
        self, sessions: sessionmaker[Session], renewal_base: str, *, max_batch: int = MAX_BATCH
    ) -> None:
        self.sessions = sessions
        self.renewal_base = renewal_base.rstrip("/")
        self.max_batch = max_batch
        self.cache = LedgerCache()  # operator accounts and transfer ids, kept from batch to batch
        self._queue: queue.SimpleQueue[
            tuple[Op, asyncio.AbstractEventLoop, asyncio.Future[Outcome]] | None
        ] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, op: Op) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put((op, loop, future))
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="charging-group-commit", daemon=True
                )
                self._worker.start()
        return await future

    def stop(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(
                    timeout=5
                )  # idle for a while: the thread ends (another starts on demand)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            if first is None:
                return
            waiting = [first]
            while len(waiting) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                waiting.append(item)
            results = self.run([op for op, _loop, _future in waiting])
            _deliver_all(
                [
                    (loop, future, result)
                    for (_op, loop, future), result in zip(waiting, results, strict=True)
                ]
            )

    def run(self, ops: list[Op]) -> list[Outcome | BaseException]:
        """Answer `ops` in one transaction; if it fails, each op again in its own."""
        try:
            return list(self._once(ops))
        except Exception as error:
            if len(ops) == 1:
                return [self._alone(ops[0], error)]
            log.warning("charging_batch_failed", ops=len(ops), error=type(error).__name__)
        return [self._alone(op) for op in ops]

    def _once(self, ops: list[Op]) -> list[Outcome]:
        with transaction(self.sessions) as session:
            return answer_batch(session, ops, self.renewal_base, self.cache)

    def _alone(self, op: Op, error: BaseException | None = None) -> Outcome | BaseException:
        # A unique key or a deadlock lost to another server: the op is run again and sees what won.
        for _attempt in range(3):
            if error is not None and not isinstance(error, (IntegrityError, DBAPIError)):
                return error
            try:
                return self._once([op])[0]
            except Exception as failed:
                error = failed
        assert error is not None
        log.error("charging_op_failed", kind=op.kind, ref=op.ref, error=repr(error))
        return error


def _settle(future: asyncio.Future[Outcome], result: Outcome | BaseException) -> None:
    if future.done():  # the request was cancelled (the client went away)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


# --- the batches in a process of their own -------------------------------------------------


class ChargingFailed(RuntimeError):
    """An op the charging process could not answer (its error, as text: errors do not all cross processes)."""


# An op on its way to the charging process: its id, the op, and where its outcome goes.
_Sending = tuple[int, Op, asyncio.AbstractEventLoop, "asyncio.Future[Outcome]"]


class ChargingProcess:
    """The server's side of a charging process: ops go down a pipe, outcomes come back, a batch at a time."""

    def __init__(self, database_url: str, renewal_base: str, *, log_json: bool = False) -> None:
        self.database_url = database_url
        self.renewal_base = renewal_base
        self.log_json = log_json
        self._ids = itertools.count(1)
        # each op with the pipe it went down, so that a process's end fails only what that process held
        self._waiting: dict[
            int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Outcome], Connection]
        ] = {}
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._outbox: list[_Sending] = []
        self._flushing = False
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        with self._lock:
            if self._conn is not None and self._process is not None and self._process.is_alive():
                return
            if (
                self._process is not None and self._process.is_alive()
            ):  # its pipe broke: it is on its way out
                self._process.kill()
            context = multiprocessing.get_context("spawn")  # not fork: the server has threads
            conn, child = context.Pipe()
            self._process = context.Process(
                target=_serve,
                args=(child, self.database_url, self.renewal_base, self.log_json),
                name="tongka-charging",
                daemon=not multiprocessing.current_process().daemon,
            )
            self._process.start()
            child.close()
            self._conn = conn
            threading.Thread(
                target=self._read, args=(conn,), name="charging-answers", daemon=True
            ).start()

    async def submit(self, op: Op) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        with self._lock:
            self._outbox.append((next(self._ids), op, loop, future))
            if (
                not self._flushing
            ):  # the requests read in this turn of the event loop go down the pipe together
                self._flushing = True
                loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        with self._lock:
            sending, self._outbox, self._flushing = self._outbox, [], False
        try:
            self._send(sending)
        except Exception as error:  # nobody is left waiting for an answer that cannot come
            _deliver_all([(loop, future, error) for _id, _op, loop, future in sending])

    def _send(self, sending: list[_Sending]) -> None:
        for attempt in (1, 2):
            if self._conn is None:  # not started, or the process ended (the reader said so)
                self.start()
            # Under self._sending, not self._lock: the reader takes self._lock to hand out outcomes, and
            # the process waits for its outcomes to be read before it reads more ops, so a sender
            # blocked on a full pipe must not hold the reader up. The reader takes self._sending only
            # when the process has ended, so it never fails ops whose writing has not finished: if the
            # write fails, they never reached the process and go once more, to a new one.
            with self._sending:
                with self._lock:
                    conn = self._conn
                    if conn is None:  # stopped meanwhile
                        raise ChargingFailed("the charging process is stopping")
                    self._waiting.update(
                        (op_id, (loop, future, conn)) for op_id, _op, loop, future in sending
                    )
                try:
                    conn.send([(op_id, op) for op_id, op, _loop, _future in sending])
                    return
                except OSError:  # the process died and its reader has not seen it yet
                    with self._lock:
                        for op_id, *_ in sending:
                            del self._waiting[op_id]
                        if self._conn is conn:
                            self._conn = None
            if attempt == 2:
                raise ChargingFailed("the charging process ended")

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                answered = conn.recv()
            except (EOFError, OSError):  # the process ended: whoever still waits on it is told so
                with self._sending, self._lock:
                    lost = [
                        op_id
                        for op_id, (_l, _f, sent_to) in self._waiting.items()
                        if sent_to is conn
                    ]
                    waiting = [self._waiting.pop(op_id) for op_id in lost]
                    if self._conn is conn:
                        self._conn = None  # the next request starts another
                _deliver_all(
                    [
                        (loop, future, ChargingFailed("the charging process ended"))
                        for loop, future, _c in waiting
                    ]
                )
                return
            with self._lock:
                delivering = [(*self._waiting.pop(op_id)[:2], result) for op_id, result in answered]
            _deliver_all(delivering)

    def stop(self) -> None:
        with self._lock:
            conn, process, self._conn, self._process = self._conn, self._process, None, None
        if conn is not None:
            try:
                with self._sending:
                    conn.send(
                        None
                    )  # the process stops (closing the pipe alone would not wake it: our reader holds it)
            except OSError:
                pass
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def _serve(conn: Connection, database_url: str, renewal_base: str, log_json: bool) -> None:
    """The charging process: read the ops waiting, answer them in one batch, send the outcomes back together."""
    from tongka import logs

    logs.configure(log_json)
    # No ping on each checkout: it was a round trip per batch. A connection that broke fails its
    # batch, which is run again op by op (GroupCommit.run) on a new one.
    group = GroupCommit(make_sessionmaker(make_engine(database_url, pre_ping=False)), renewal_base)
    queued: collections.deque[tuple[int, Op]] = collections.deque()
    stopping = False
    while queued or not stopping:
        try:  # everything the pipe holds, so that the server's sends never wait long
            while not stopping and (not queued or conn.poll()):
                item = conn.recv()
                if item is None:  # the server stops: what came before is answered first
                    stopping = True
                else:
                    queued.extend(item)
        except (EOFError, OSError):  # the server ended
            return
        waiting = [queued.popleft() for _ in range(min(len(queued), group.max_batch))]
        if not waiting:
            continue
        results = group.run([op for _id, op in waiting])
        conn.send(
            [
                (op_id, r if isinstance(r, Outcome) else ChargingFailed(f"{type(r).__name__}: {r}"))
                for (op_id, _op), r in zip(waiting, results, strict=True)
            ]
        )


def _deliver_all(
    results: Iterable[
        tuple[asyncio.AbstractEventLoop, asyncio.Future[Outcome], Outcome | BaseException]
    ],
) -> None:
    """Hand each result to its request's event loop: one wake-up per loop for a whole batch."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome | BaseException]]
    ] = {}
    for loop, future, result in results:
        by_loop.setdefault(loop, []).append((future, result))
    for loop, settling in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settling)
        except RuntimeError:  # that event loop has closed: nobody is waiting
            pass


def _settle_all(settling: list[tuple[asyncio.Future[Outcome], Outcome | BaseException]]) -> None:
    for future, result in settling:
        _settle(future, result)
