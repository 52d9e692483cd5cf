"""Nchf_ConvergedCharging requests answered in batches, one transaction and one commit per batch.

Each request (create, update, release) becomes an `Op`; the ops waiting at that moment
are answered together in one transaction (`answer_batch`, over `engine.ChargingBatch`),
at the server's clock reading when the batch was sent, committed, and only then do their
routes answer: the ledger is durable before the network hears of a grant. A batch that fails
(a database error, two servers creating the same session at once) is rolled back and its
ops are run again one per transaction (`GroupCommit`), so one bad request fails alone.

How ops get here and where the batches run (a worker process beside each server process, or
a thread: `Settings.charging_worker`), and why a batch may safely be sent twice: `worker.py`.

Within a batch the ops are decided in arrival order, as if each had its own
transaction: a retransmission in the same batch gets the answer its original got.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tongka.account.models import Line
from tongka.charging.engine import ChargingBatch, SessionState
from tongka.charging.models import ChargingAnswer, ChargingSession, Network
from tongka.charging.renew_link import RenewLinks
from tongka.charging.service import LineNotActive, NetworkNotServed, UnknownNetwork
from tongka.db import AnyOf, new_id, transaction
from tongka.ledger.batch import LedgerCache

log = structlog.get_logger()

VALIDITY_SECONDS = 600  # validityTime of each grant
THRESHOLD_SHARE = 5  # volumeQuotaThreshold: ask again when a fifth of the grant is left
MAX_BATCH = 64  # ops per transaction at most (schemas.py bounds a batch's sums with it)
MAX_KNOWN = 200_000  # sessions whose ids a charging worker keeps (`GroupCommit.known`): about 40 MB

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
    session: Session,
    ops: list[Op],
    links: RenewLinks,
    now: datetime,
    cache: LedgerCache | None = None,
    known: dict[str, tuple[uuid.UUID, uuid.UUID]] | None = None,
) -> list[Outcome]:
    """Decide every op of the batch in order, at `now` (the server's clock when it sent the batch),
    write the lot and commit. `known`: session and line ids by ref (`ChargingBatch.load`), kept up to
    date with the sessions of the batch once it has committed."""
    batch = ChargingBatch(session, now, cache)
    creates = [op for op in ops if op.kind == "create"]
    lines = _lines_for(session, [i for op in creates for i in op.identities])
    created = _created_before(session, [op.create_key for op in creates if op.create_key])
    batch.load(
        refs=[op.ref for op in ops if op.ref],
        line_ids=list(lines.values()),
        sequences=[op.sequence for op in ops if op.ref],
        known=known,
        rating_groups=[
            group
            for op in ops
            for group in (*op.used, *op.used_after, *(g for g, _ in op.requested))
        ],
    )
    by_ref = {s.ref: s for s in batch.sessions.values()}
    # The networks of the creates and, only when a session changes network (rare), of every session's
    # request and its network (a session may cross and come back within one batch).
    plmns = {op.plmn for op in creates if op.plmn}
    if any(op.plmn and op.ref in by_ref and by_ref[op.ref].plmn != op.plmn for op in ops if op.ref):
        plmns |= {op.plmn for op in ops if op.plmn} | {s.plmn for s in batch.sessions.values()}
    networks = _networks(session, plmns)
    kept = {key: Outcome(status, answer) for key, (status, answer) in batch.kept.items()}
    answering = _Answering(batch, by_ref, kept, created, networks, lines, links)
    outcomes = [answering.answer(op) for op in ops]
    batch.flush(commit=True)
    if known is not None:
        if len(known) > MAX_KNOWN:
            known.clear()  # only a hint: a batch of sessions not known reads them one step at a time
        known.update((x.ref, (x.id, x.line_id)) for x in batch.sessions.values())
    return outcomes


@dataclass
class _Answering:
    batch: ChargingBatch
    by_ref: dict[str, SessionState]
    kept: dict[tuple[Any, int], Outcome]  # (session id, sequence) -> the answer given
    created: dict[str, Outcome]  # create key -> the answer given to that create
    networks: dict[str, tuple[str, bool]]  # plmn -> (zone, active)
    lines: dict[str, Any]  # identity -> line id
    links: RenewLinks

    def answer(self, op: Op) -> Outcome:
        if op.kind == "create":
            return self.create(op)
        charging_session = self.by_ref.get(op.ref or "")
        if charging_session is None:
            return not_found(op.ref)
        # The answer kept is looked up before the session's state: an update sent again after its
        # session was released (or a batch sent again after its worker died: worker.py) gets the
        # answer it was given, as a release sent again does.
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
                        "redirectServerAddress": self.links.url(
                            charging_session.line_id, self.batch.now
                        ),
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


# --- a batch in one transaction, or op by op ----------------------------------------------

# What the database refused (a unique key, a deadlock, a broken connection): the op is run again.
# psycopg's own too: the batch's statements go straight through it on PostgreSQL (`db.direct`),
# so its errors reach here unwrapped by SQLAlchemy.
DATABASE_ERRORS = (DBAPIError, psycopg.Error)


class GroupCommit:
    """Answers a batch of ops in one transaction and one commit; a batch that fails, op by op.

    Made once per charging worker (`worker.py`) and kept for its life, with the ledger's cache.
    """

    def __init__(self, sessions: sessionmaker[Session], links: RenewLinks) -> None:
        self.sessions = sessions
        self.links = links
        self.cache = LedgerCache()  # operator accounts and transfer ids, kept from batch to batch
        # Session and line ids by ref, of the sessions this worker has answered: never changed, so a
        # batch of them reads its sessions, lines and grants in one round trip (`ChargingBatch.load`).
        self.known: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}

    def run(self, ops: list[Op], now: datetime) -> list[Outcome | BaseException]:
        """Answer `ops` in one transaction; if it fails, each op again in its own."""
        try:
            return list(self._once(ops, now))
        except Exception as error:
            if len(ops) == 1:
                return [self._alone(ops[0], now, error)]
            log.warning("charging_batch_failed", ops=len(ops), error=type(error).__name__)
        return [self._alone(op, now) for op in ops]

    def _once(self, ops: list[Op], now: datetime) -> list[Outcome]:
        with transaction(self.sessions) as session:
            return answer_batch(session, ops, self.links, now, self.cache, self.known)

    def _alone(
        self, op: Op, now: datetime, error: BaseException | None = None
    ) -> Outcome | BaseException:
        # A unique key or a deadlock lost to another server: the op is run again and sees what won.
        for _attempt in range(3):
            if error is not None and not isinstance(error, DATABASE_ERRORS):
                return error
            try:
                return self._once([op], now)[0]
            except Exception as failed:
                error = failed
        assert error is not None
        log.error("charging_op_failed", kind=op.kind, ref=op.ref, error=repr(error))
        return error
