"""Charging, decided in memory for many requests at once, written in a few statements.

A `ChargingBatch` belongs to one transaction. `load()` reads what the requests of the
batch will touch — their charging sessions (locked), open grants and reservations, each
line's usable buckets, debts and overage settings — and locks every customer ledger
account among them in one statement, in ascending id (the one order everyone uses).
Then each request is decided in Python against that state, in arrival order, exactly as
if it had its own transaction: one request sees what the one before it granted or used.
`flush()` writes it all: new sessions and grants, settled grants, the ledger's transfers
and running totals (`ledger.batch`), usage per day and overage per month, in about eight
statements however many requests there were. The ledger's tables are read only through
the parts of statements `ledger` gives (`ledger.buckets`, `ledger.batch.with_reservation`),
and written only through `ledger.batch`.

The rules (`charging.service` says them in full): quota in a zone draws on that zone's
buckets and `both` buckets, the soonest-expiring first, the narrower zone before `both`
on a tie (`ledger.buckets.draw`); what is owed in the zone is paid back first; overage, only if the owner turned
it on, comes from the wallet within the month's cap; usage posts against a grant's
reservations in order and the rest is released; usage beyond a grant, or after its
reservations lapsed, is charged from the buckets, then overage, else owed.

A session that crosses to another network (`cross`) has its open grants settled with the usage
reported before the crossing (their unused reservations released); then it is on the new
network, whose zone the usage after the crossing and every new grant are charged in. A session
on a network not served (`SessionState.served`, read with the session) is granted nothing.
A zero-rated rating group (`RatingGroup`, loaded per batch for the groups its requests name) is
granted what it asks for an active line, reserving nothing; its usage is counted in the day
(`UsageDay.zero_rated_bytes`) and never charged.

Locks, in this order: charging sessions (ascending id), ledger accounts (ascending id),
then the rows of usage per day and overage per month (ascending key).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, String, and_, bindparam, func, inspect, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from tongka.account.models import Line
from tongka.catalog.models import OverageRate
from tongka.charging.models import (
    ChargingAnswer,
    ChargingSession,
    Grant,
    GrantReservation,
    LineOverage,
    Network,
    OverageMonth,
    RatingGroup,
    UsageDay,
)
from tongka.charging.overage import cost, month_of
from tongka.db import AnyOf, add_rows, direct_all, insert_rows, new_id, pipelined, update_rows
from tongka.ledger import buckets as ledger_buckets
from tongka.ledger.batch import Account, LedgerBatch, LedgerCache, Pending, with_reservation
from tongka.ledger.buckets import counts_in, draw, drawing_order
from tongka.ledger.service import ReservationExpired, ReservationResolved
from tongka.money import MB
from tongka.wallet.models import Wallet

SUCCESS = "SUCCESS"  # 3GPP TS 32.291 resultCode values
QUOTA_LIMIT_REACHED = "QUOTA_LIMIT_REACHED"
# Diameter's DIAMETER_END_USER_SERVICE_DENIED (4010), which TS 32.291 maps it to: the service is
# refused by a restriction (a network tongka does not serve, a line no longer active), and the
# units used that the request reports are still charged.
END_USER_SERVICE_DENIED = "END_USER_SERVICE_DENIED"

# A grant's reservations outlive its validity time by this much, so a network element that
# reports a little late is still charged from them, and one that crashed frees them soon after.
RESERVATION_MARGIN = timedelta(seconds=60)

USED = "system:data_used:bytes"
USAGE_BEYOND_GRANT = (
    "usage_beyond_grant"  # the reason of usage no grant covered, taken from a bucket
)

# Usage is counted by calendar day in Hong Kong time (UTC+8 all year: no daylight saving).
HONG_KONG = timezone(timedelta(hours=8), "HKT")


def usage_day(at: datetime) -> date:
    """The calendar day in Hong Kong of the instant `at` (timezone-aware)."""
    return at.astimezone(HONG_KONG).date()


# --- the state a batch works on --------------------------------------------------------------


@dataclass
class BucketState:
    id: uuid.UUID
    zone: str
    expires_at: datetime
    account: Account


@dataclass
class OverageState:
    monthly_cap: int
    chosen: str  # the currency the owner chose (the wallet's when chosen)
    currency: str  # the wallet's
    wallet: Account
    rates: dict[str, int] = field(
        default_factory=dict
    )  # minor units per MB, by zone, in the chosen currency


@dataclass
class LineState:
    id: uuid.UUID
    status: str
    account_id: uuid.UUID | None
    buckets: list[BucketState] = field(default_factory=list)  # usable now, in drawing order
    debts: dict[str, Account] = field(default_factory=dict)  # by zone
    overage: OverageState | None = None
    charged: int = 0  # overage charged this Hong Kong month
    held: int = 0  # overage money held by open grants not lapsed

    def usable(self, zone: str) -> list[BucketState]:
        return [b for b in self.buckets if counts_in(b.zone, zone)]


@dataclass
class ReservationState:
    pending: Pending
    bucket_id: uuid.UUID | None
    amount: int
    volume_bytes: int
    per_mb: int | None  # overage: money held on the wallet for volume_bytes


@dataclass
class GrantState:
    id: uuid.UUID
    session_id: uuid.UUID
    rating_group: int
    granted_bytes: int
    expires_at: datetime
    created_at: datetime
    reservations: list[ReservationState]
    status: str = "open"
    used_bytes: int = 0
    unreserved_bytes: int = 0
    settled_at: datetime | None = None
    new: bool = False


@dataclass
class SessionState:
    id: uuid.UUID
    line_id: uuid.UUID
    ref: str
    plmn: str
    zone: str
    status: str
    notify_uri: str | None
    grants: list[GrantState] = field(default_factory=list)  # open ones, oldest first
    new: bool = False
    served: bool = True  # its network is active: quota may be granted there
    moved: bool = False  # crossed to another network in this batch (plmn and zone to write)
    create_key: str | None = None
    released_at: datetime | None = None


@dataclass(frozen=True)
class QuotaResult:
    result_code: str  # SUCCESS | QUOTA_LIMIT_REACHED | END_USER_SERVICE_DENIED
    granted_bytes: int
    grant_id: uuid.UUID | None  # None when nothing was granted
    final_unit: bool  # True when this is all the line has left in the zone (granted < requested)


@dataclass(frozen=True)
class UsageResult:
    grant_id: uuid.UUID
    used_bytes: int  # as reported
    charged_bytes: int  # posted from the reservations
    unreserved_bytes: int  # used but not charged here: beyond the grant, or after it lapsed
    already_settled: bool  # this grant had been settled before: nothing changed


@dataclass(frozen=True)
class ExcessCharge:
    """How usage no grant covered was charged: every byte somewhere."""

    from_buckets: int
    overage_bytes: int
    overage_amount: int  # minor units of the wallet's currency
    owed_bytes: int
    overage_currency: str | None = None


# --- the batch -----------------------------------------------------------------------------


class ChargingBatch:
    def __init__(
        self,
        session: Session,
        now: datetime,
        cache: LedgerCache | None = None,
        ledger: LedgerBatch | None = None,
    ) -> None:
        """`ledger`: a ledger batch of the same transaction to decide in (the usage import's, which
        holds its accounts already), rather than a new one."""
        self.session = session
        self.now = now
        self.ledger = ledger if ledger is not None else LedgerBatch(session, now, cache)
        self.execute = self.ledger.execute
        self.sessions: dict[uuid.UUID, SessionState] = {}
        self.lines: dict[uuid.UUID, LineState] = {}
        self.system: dict[str, Account] = {}
        self._released: list[SessionState] = []
        self._settled: list[GrantState] = []
        self._new_grants: list[GrantState] = []
        # (line, day, zone, network) -> [charged bytes, zero-rated bytes]
        self._usage: defaultdict[tuple[uuid.UUID, date, str, str], list[int]] = defaultdict(
            lambda: [0, 0]
        )
        self.zero_rated: set[int] = set()  # the batch's rating groups that the operator made free
        self._overage: dict[tuple[uuid.UUID, date], list[Any]] = {}  # [currency, charged, volume]
        self._answers: list[dict[str, Any]] = []
        self._grants_loaded: set[uuid.UUID] = set()
        self.kept: dict[
            tuple[uuid.UUID, int], tuple[int, Any]
        ] = {}  # (session, sequence) -> (status, answer) given

    # --- loading --------------------------------------------------------------------------

    def load(
        self,
        *,
        session_ids: Sequence[uuid.UUID] = (),
        refs: Sequence[str] = (),
        line_ids: Sequence[uuid.UUID] = (),
        sequences: Sequence[int] = (),
        known: Mapping[str, tuple[uuid.UUID, uuid.UUID]] | None = None,
        rating_groups: Iterable[int] = (),
    ) -> None:
        """Read (and lock) what the batch will touch: the named charging sessions and the lines of them and of
        `line_ids`. Named by ref, the sessions come with the answers they gave to `sequences` (`self.kept`).
        Which of `rating_groups` are zero-rated is read as well (`load_rating_groups`).

        `known`: session ids and line ids by ref, of sessions seen before (neither ever changes). When
        every ref is known, the lines, the open grants and the rating groups are read in the same round
        trip as the sessions (`db.direct_all`), after their lock as before, rather than one after another."""
        lock = self.ledger.locks_rows
        groups = list(set(rating_groups))
        prefetched: _Prefetched | None = None
        if session_ids:
            rows = self.execute(
                _Q.sessions_by_id_locked if lock else _Q.sessions_by_id, {"ids": list(session_ids)}
            )
            for row in map(_SessionRow._make, rows):
                self._add_session(row)
        elif refs:
            query = _Q.sessions_by_ref_locked if lock else _Q.sessions_by_ref
            params = {
                "refs": list(refs),
                "seqs": list(sequences),
                "pairs": list(zip(refs, sequences, strict=True)),
            }
            hinted = [known[ref] for ref in refs if ref in known] if known is not None else []
            if hinted and len(hinted) == len(refs):
                prefetched = _Prefetched(
                    {line_id for _id, line_id in hinted} | set(line_ids),
                    {session_id for session_id, _line in hinted},
                )
                statements: list[tuple[Any, dict[str, Any]]] = [
                    (query, params),
                    (_Q.lines, {"ids": list(prefetched.line_ids), "now": self.now}),
                    (_Q.grants, {"ids": list(prefetched.session_ids)}),
                ]
                if groups:
                    statements.append((_Q.zero_rated, {"groups": groups}))
                rows, prefetched.lines, prefetched.grants, *zero_rated = direct_all(
                    self.session, statements
                )
                if zero_rated:
                    self.zero_rated = {row[0] for row in zero_rated[0]}
                    groups = []
            else:
                rows = self.execute(query, params)
            for answered in map(_AnsweredRow._make, rows):
                self._add_session(answered)
                if answered.sequence is not None:
                    assert answered.answer_status is not None
                    self.kept[answered.id, answered.sequence] = (
                        answered.answer_status,
                        answered.answer,
                    )
        loaded = [
            x.id for x in self.sessions.values() if not x.new and x.id not in self._grants_loaded
        ]
        self._grants_loaded.update(loaded)
        wanted = {x.line_id for x in self.sessions.values()} | set(line_ids)
        self._load_lines(wanted - self.lines.keys(), loaded, prefetched)
        self.load_rating_groups(groups)

    def _add_session(self, row: _SessionRow | _AnsweredRow) -> None:
        if row.id not in self.sessions:
            self.sessions[row.id] = SessionState(
                row.id,
                row.line_id,
                row.ref,
                row.plmn,
                row.zone,
                row.status,
                row.notify_uri,
                create_key=row.create_key,
                served=bool(row.served),
            )

    def _load_lines(
        self,
        line_ids: set[uuid.UUID],
        session_ids: list[uuid.UUID],
        prefetched: _Prefetched | None = None,
    ) -> None:
        if not line_ids and not session_ids:
            return
        if (
            prefetched is not None
            and line_ids <= prefetched.line_ids
            and prefetched.session_ids.issuperset(session_ids)
        ):  # read with the sessions, perhaps a few more: only those wanted are kept
            rows = [r for r in map(_LineRow._make, prefetched.lines) if r.line_id in line_ids]
            wanted_grants = set(session_ids)
            grants = [
                g for g in map(_GrantRow._make, prefetched.grants) if g.session_id in wanted_grants
            ]
        else:
            rows = (
                [
                    _LineRow._make(row)
                    for row in self.execute(_Q.lines, {"ids": list(line_ids), "now": self.now})
                ]
                if line_ids
                else []
            )
            grants = (
                [_GrantRow._make(row) for row in self.execute(_Q.grants, {"ids": session_ids})]
                if session_ids
                else []
            )
        lines = list({row.line_id: row for row in rows}.values())
        found_buckets = [row for row in rows if row.bucket_id is not None]
        codes = {USED} | {
            f"system:overage_sales:{row.wallet_currency}"
            for row in lines
            if row.wallet_account_id is not None
        }
        self.system.update(self.ledger.system(codes - self.system.keys()))
        self.ledger.lock(
            [row.bucket_account_id for row in found_buckets]
            + [
                a
                for row in lines
                for a in (row.debt_mainland, row.debt_hk, row.wallet_account_id)
                if a is not None
            ]
            + [a for row in grants for a in (row.pending_debit_id, row.pending_credit_id)]
        )

        accounts = self.ledger.accounts
        overage_lines = []
        for row in lines:
            line = self.lines[row.line_id] = LineState(row.line_id, row.status, row.account_id)
            for zone, debt in (("mainland", row.debt_mainland), ("hk", row.debt_hk)):
                if debt is not None:
                    line.debts[zone] = accounts[debt]
            if row.wallet_account_id is not None:
                assert row.overage_cap is not None and row.overage_currency is not None
                assert row.wallet_currency is not None
                line.overage = OverageState(
                    row.overage_cap,
                    row.overage_currency,
                    row.wallet_currency,
                    accounts[row.wallet_account_id],
                )
                overage_lines.append(line)
        for found in sorted(
            found_buckets,
            key=lambda b: drawing_order(
                b.bucket_expires_at, b.bucket_zone, b.bucket_created_at, b.bucket_id
            ),
        ):
            self.lines[found.line_id].buckets.append(
                BucketState(
                    found.bucket_id,
                    found.bucket_zone,
                    found.bucket_expires_at,
                    accounts[found.bucket_account_id],
                )
            )
        if overage_lines:
            self._load_overage(overage_lines)
        by_id: dict[uuid.UUID, GrantState] = {}
        for reserved in grants:
            grant = by_id.get(reserved.grant_id)
            if grant is None:
                grant = by_id[reserved.grant_id] = GrantState(
                    reserved.grant_id,
                    reserved.session_id,
                    reserved.rating_group,
                    reserved.granted_bytes,
                    reserved.expires_at,
                    reserved.created_at,
                    [],
                )
                self.sessions[reserved.session_id].grants.append(grant)
            # Read before the accounts were locked: if the expiry job resolved it meanwhile, the
            # unique pending_id refuses a second resolution and the batch is done again.
            pending = self.ledger.pending(
                reserved.pending_id,
                reserved.pending_debit_id,
                reserved.pending_credit_id,
                reserved.pending_amount,
                reserved.pending_reason,
                reserved.pending_reference,
                reserved.pending_expires_at,
                reserved.pending_resolved,
            )
            grant.reservations.append(
                ReservationState(
                    pending,
                    reserved.bucket_id,
                    reserved.amount,
                    reserved.volume_bytes,
                    reserved.per_mb,
                )
            )

    def load_rating_groups(self, rating_groups: Iterable[int]) -> None:
        """Which of `rating_groups` are zero-rated (one statement; a group not configured is charged)."""
        wanted = list(set(rating_groups))
        if wanted:
            self.zero_rated = {row[0] for row in self.execute(_Q.zero_rated, {"groups": wanted})}

    def _load_overage(self, lines: list[LineState]) -> None:
        """Published rates, and what each line's overage has charged this month and holds in open grants."""
        rates: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for zone, currency, per_mb in self.execute(_Q.rates):
            rates[currency][zone] = per_mb
        for line in lines:
            assert line.overage is not None
            line.overage.rates = rates[line.overage.chosen]
        by_id = {line.id: line for line in lines}
        for line_id, charged in self.execute(
            _Q.charged, {"ids": list(by_id), "month": month_of(self.now)}
        ):
            by_id[line_id].charged = charged
        for line_id, held in self.execute(_Q.held, {"ids": list(by_id), "now": self.now}):
            by_id[line_id].held = int(held or 0)  # PostgreSQL sums bigints as numeric

    # --- sessions -------------------------------------------------------------------------

    def open_session(
        self,
        line: LineState,
        plmn: str,
        zone: str,
        ref: str,
        *,
        notify_uri: str | None,
        create_key: str | None,
    ) -> SessionState:
        """A new charging session (checked by the caller: the network is served and the line active)."""
        state = SessionState(
            new_id(), line.id, ref, plmn, zone, "open", notify_uri, new=True, create_key=create_key
        )
        self.sessions[state.id] = state
        return state

    def cross(self, charging_session: SessionState, plmn: str, zone: str, served: bool) -> int:
        """The session's phone crossed to the network `plmn` (in `zone`): its open grants, granted in the
        old zone, are settled with the usage reported so far (report the usage before the crossing
        first), their unused reservations released, and from now on its usage and grants are the new
        zone's. Returns how many grants were settled."""
        settled = 0
        for grant in list(charging_session.grants):
            settled += not self.report_usage(grant, 0).already_settled
        if plmn != charging_session.plmn and not charging_session.new:
            charging_session.moved = True
        charging_session.plmn, charging_session.zone, charging_session.served = plmn, zone, served
        return settled

    # --- quota ----------------------------------------------------------------------------

    def request_quota(
        self,
        charging_session: SessionState,
        rating_group: int,
        requested_bytes: int,
        validity_seconds: int,
    ) -> QuotaResult:
        """Grant up to `requested_bytes` from the line's buckets in the session's zone (then overage), reserved.

        A zero-rated group is granted what it asks, reserving nothing, while the line is active; on a
        network not served nothing is granted (END_USER_SERVICE_DENIED)."""
        if requested_bytes <= 0 or validity_seconds <= 0:
            raise ValueError("quota is requested for a positive volume and validity time")
        line = self.lines[charging_session.line_id]
        if not charging_session.served:
            return QuotaResult(END_USER_SERVICE_DENIED, 0, None, final_unit=False)
        if rating_group in self.zero_rated:
            if line.status != "active":
                return QuotaResult(END_USER_SERVICE_DENIED, 0, None, final_unit=False)
            grant = GrantState(
                new_id(),
                charging_session.id,
                rating_group,
                requested_bytes,
                self.now + timedelta(seconds=validity_seconds) + RESERVATION_MARGIN,
                self.now,
                [],
                new=True,
            )
            charging_session.grants.append(grant)
            self._new_grants.append(grant)
            return QuotaResult(SUCCESS, requested_bytes, grant.id, final_unit=False)
        zone = charging_session.zone
        candidates = line.usable(zone)
        self._repay(line, zone, candidates)
        plan, wanted = draw(candidates, requested_bytes)
        extra = None
        if wanted and (allowed := self._allowance(line, zone)) is not None:
            per_mb, money = allowed
            if (volume := min(wanted, money * MB // per_mb)) > 0:
                extra = (per_mb, volume)
                wanted -= volume
        granted = requested_bytes - wanted
        if granted == 0:
            return QuotaResult(QUOTA_LIMIT_REACHED, 0, None, final_unit=True)

        grant = GrantState(
            new_id(),
            charging_session.id,
            rating_group,
            granted,
            self.now + timedelta(seconds=validity_seconds) + RESERVATION_MARGIN,
            self.now,
            [],
            new=True,
        )
        reference = f"grant:{grant.id}"
        for bucket, amount in plan:  # in drawing order: the transfer ids keep it
            pending = self.ledger.reserve(
                bucket.account,
                self.system[USED],
                amount,
                reason="usage",
                reference=reference,
                expires_at=grant.expires_at,
            )
            grant.reservations.append(ReservationState(pending, bucket.id, amount, amount, None))
        if extra is not None:
            assert line.overage is not None
            per_mb, volume = extra
            money = cost(volume, per_mb)
            pending = self.ledger.reserve(
                line.overage.wallet,
                self._sales(line.overage.currency),
                money,
                reason="overage",
                reference=reference,
                expires_at=grant.expires_at,
            )
            grant.reservations.append(ReservationState(pending, None, money, volume, per_mb))
            line.held += money
        charging_session.grants.append(grant)
        self._new_grants.append(grant)
        return QuotaResult(SUCCESS, granted, grant.id, final_unit=granted < requested_bytes)

    def _repay(self, line: LineState, zone: str, candidates: list[BucketState]) -> None:
        """Pay back what the line owes in `zone` from `candidates` before granting anything there."""
        debt = line.debts.get(zone)
        if debt is None or debt.available >= 0:
            return
        for bucket, pay in draw(candidates, -debt.available)[0]:
            self.ledger.transfer(
                bucket.account,
                debt,
                pay,
                reason="usage_owed_repaid",
                reference=f"bucket:{bucket.id}",
            )

    def _allowance(self, line: LineState, zone: str) -> tuple[int, int] | None:
        """(rate per MB, money) overage may still spend now, if the owner turned it on and a rate is published."""
        chosen = line.overage
        if chosen is None or line.account_id is None or (per_mb := chosen.rates.get(zone)) is None:
            return None
        cap_left = chosen.monthly_cap - line.charged - line.held
        return per_mb, max(0, min(chosen.wallet.available, cap_left))

    def _sales(self, currency: str) -> Account:
        return self.system[f"system:overage_sales:{currency}"]

    # --- usage ----------------------------------------------------------------------------

    def report_usage(
        self, grant: GrantState, used_bytes: int, *, count_usage: bool = True, free: bool = False
    ) -> UsageResult:
        """Settle `grant` with the volume used: post it against the reservations in order, release the rest.

        Usage beyond the grant, and the share of a reservation that lapsed before the report,
        is returned as unreserved (for `charge_usage`). A settled grant changes nothing. `free`
        (a zero-rated group): every reservation is released and nothing is left to charge.
        """
        if not isinstance(used_bytes, int) or isinstance(used_bytes, bool) or used_bytes < 0:
            raise ValueError("used volume is a non-negative integer")
        if grant.status != "open":
            return UsageResult(
                grant.id,
                grant.used_bytes,
                grant.used_bytes - grant.unreserved_bytes,
                grant.unreserved_bytes,
                True,
            )
        charging_session = self.sessions[grant.session_id]
        line = self.lines[charging_session.line_id]
        grant.status, grant.settled_at = "settled", self.now
        if not grant.new:
            self._settled.append(grant)
        charging_session.grants.remove(grant)
        left, unreserved = (0 if free else used_bytes), 0
        overage_amount = overage_volume = 0
        overage_currency = ""
        for reservation in grant.reservations:
            share = min(left, reservation.volume_bytes)
            left -= share
            amount = share if reservation.per_mb is None else cost(share, reservation.per_mb)
            if reservation.per_mb is not None and grant.expires_at > self.now:
                line.held -= reservation.amount  # no longer held by an open grant
            try:
                if amount > 0:
                    self.ledger.post(reservation.pending, amount)
                else:
                    self.ledger.void(reservation.pending)
            except ReservationExpired:  # past its time, the expiry job has not run yet
                self.ledger.void(reservation.pending, reason="usage_late")
                unreserved += share
                continue
            except ReservationResolved:  # released by the expiry job
                unreserved += share
                continue
            if reservation.per_mb is not None:
                overage_amount += amount
                overage_volume += share
                # The wallet's: overage may have been turned off since the grant (line.overage is then None).
                overage_currency = reservation.pending.debit.unit
        unreserved += left
        grant.used_bytes, grant.unreserved_bytes = used_bytes, unreserved
        if overage_amount:
            self._record_overage(line, overage_currency, overage_amount, overage_volume)
        if used_bytes and count_usage:
            self.add_usage(charging_session, used_bytes, zero_rated=free)
        return UsageResult(
            grant.id, used_bytes, 0 if free else used_bytes - unreserved, unreserved, False
        )

    def settle_usage(
        self, charging_session: SessionState, rating_group: int, used_bytes: int
    ) -> ExcessCharge | None:
        """The usage reported for a rating group: settles its open grants in order, counts it once in
        the day's usage, and charges what no grant covered (`charge_usage`)."""
        free = rating_group in self.zero_rated
        left = used_bytes
        for grant in [g for g in charging_session.grants if g.rating_group == rating_group]:
            left = self.report_usage(grant, left, count_usage=False, free=free).unreserved_bytes
        if used_bytes:
            self.add_usage(charging_session, used_bytes, zero_rated=free)
        if not left or free:
            return None
        return self.charge_usage(
            self.lines[charging_session.line_id],
            charging_session.zone,
            left,
            reference=f"charging_session:{charging_session.id}",
        )

    def charge_usage(
        self, line: LineState, zone: str, used_bytes: int, *, reference: str
    ) -> ExcessCharge:
        """Charge usage no grant covered: what the line's buckets in `zone` still have, then overage if its
        owner turned it on (within the wallet and the month's cap), and the rest is owed by the line in that
        zone. Does not count the usage of the day: the caller does."""
        if used_bytes <= 0:
            raise ValueError("charged usage is a positive volume")
        plan, left = draw(line.usable(zone), used_bytes)
        for bucket, take in plan:
            self.ledger.transfer(
                bucket.account,
                self.system[USED],
                take,
                reason=USAGE_BEYOND_GRANT,
                reference=reference,
            )
        from_buckets = used_bytes - left
        overage_bytes = overage_amount = 0
        currency = None
        if left and (allowed := self._allowance(line, zone)) is not None:
            assert line.overage is not None
            per_mb, money = allowed
            if (volume := min(left, money * MB // per_mb)) > 0:
                overage_amount = cost(volume, per_mb)
                currency = line.overage.currency
                self.ledger.transfer(
                    line.overage.wallet,
                    self._sales(currency),
                    overage_amount,
                    reason="overage",
                    reference=reference,
                )
                self._record_overage(line, currency, overage_amount, volume)
                overage_bytes, left = volume, left - volume
        if left:
            debt = line.debts.get(zone)
            if debt is None:  # the first time this line owes in this zone (rare)
                debt = line.debts[zone] = self.ledger.debt(line.id, zone)
            self.ledger.transfer(
                debt, self.system[USED], left, reason="usage_owed", reference=reference
            )
        return ExcessCharge(from_buckets, overage_bytes, overage_amount, left, currency)

    def release(self, charging_session: SessionState) -> int:
        """End the session: its open grants are settled with no further usage. Returns how many were settled."""
        if charging_session.status != "open":
            return 0
        charging_session.status, charging_session.released_at = "released", self.now
        if not charging_session.new:
            self._released.append(charging_session)
        settled = 0
        for grant in list(charging_session.grants):
            settled += not self.report_usage(grant, 0).already_settled
        return settled

    def add_usage(
        self, charging_session: SessionState, used_bytes: int, *, zero_rated: bool = False
    ) -> None:
        """Count usage in the day of the network the session is on now (its zone and PLMN)."""
        key = (
            charging_session.line_id,
            usage_day(self.now),
            charging_session.zone,
            charging_session.plmn,
        )
        self._usage[key][zero_rated] += used_bytes

    def _record_overage(self, line: LineState, currency: str, amount: int, volume: int) -> None:
        line.charged += amount
        found = self._overage.setdefault((line.id, month_of(self.now)), [currency, 0, 0])
        found[1] += amount
        found[2] += volume

    def keep_answer(
        self, charging_session: SessionState, sequence: int, status_code: int, answer: Any
    ) -> None:
        self._answers.append(
            {
                "charging_session_id": charging_session.id,
                "invocation_sequence_number": sequence,
                "status_code": status_code,
                "answer": answer,
                "created_at": self.now,
            }
        )

    # --- writing --------------------------------------------------------------------------

    def flush(self, *, commit: bool = False) -> None:
        """Write what the batch decided, parents before children, and commit if asked.

        On PostgreSQL the writes (and the commit) are sent without waiting for each answer
        (`db.pipelined`): one round trip rather than one a statement. The transfer ids are
        read first, as the rows written refer to them.
        """
        self.ledger.number()
        with pipelined(self.session):
            self._write()
            if commit:
                self.session.commit()

    def _write(self) -> None:
        session = self.session
        # The rows the caller may hold as ORM objects (the per-call API, `charging.service`): they are
        # written past the ORM, so its copies are read again when next used. Nchf batches hold none.
        copies = (
            [
                _SESSION_ROW.identity_key_from_primary_key((x.id,))
                for x in self.sessions.values()
                if x.moved
            ]
            + [_SESSION_ROW.identity_key_from_primary_key((x.id,)) for x in self._released]
            + [_GRANT_ROW.identity_key_from_primary_key((g.id,)) for g in self._settled]
            if session.identity_map
            else []
        )
        new_sessions = [x for x in self.sessions.values() if x.new]
        if new_sessions:
            insert_rows(
                session,
                ChargingSession,
                [
                    {
                        "id": x.id,
                        "line_id": x.line_id,
                        "charging_data_ref": x.ref,
                        "plmn": x.plmn,
                        "zone": x.zone,
                        "status": x.status,
                        "released_at": x.released_at,
                        "notify_uri": x.notify_uri,
                        "create_key": x.create_key,
                        "created_at": self.now,
                    }
                    for x in new_sessions
                ],
            )
            for x in new_sessions:
                x.new = False
        update_rows(
            session,
            ChargingSession,
            "id",
            [
                {"id": x.id, "plmn": x.plmn, "zone": x.zone}
                for x in self.sessions.values()
                if x.moved
            ],
        )
        for x in self.sessions.values():
            x.moved = False
        update_rows(
            session,
            ChargingSession,
            "id",
            [{"id": x.id, "status": "released", "released_at": self.now} for x in self._released],
        )
        self.ledger.flush()
        if self._new_grants:
            insert_rows(
                session,
                Grant,
                [
                    {
                        "id": g.id,
                        "charging_session_id": g.session_id,
                        "rating_group": g.rating_group,
                        "granted_bytes": g.granted_bytes,
                        "used_bytes": g.used_bytes,
                        "unreserved_bytes": g.unreserved_bytes,
                        "status": g.status,
                        "expires_at": g.expires_at,
                        "settled_at": g.settled_at,
                        "created_at": g.created_at,
                    }
                    for g in self._new_grants
                ],
            )
            insert_rows(
                session,
                GrantReservation,
                [
                    {
                        "pending_transfer_id": r.pending.id,
                        "grant_id": g.id,
                        "bucket_id": r.bucket_id,
                        "amount": r.amount,
                        "volume_bytes": r.volume_bytes,
                        "per_mb": r.per_mb,
                    }
                    for g in self._new_grants
                    for r in g.reservations
                ],
            )
            for g in self._new_grants:
                g.new = False
        update_rows(
            session,
            Grant,
            "id",
            [
                {
                    "id": g.id,
                    "status": "settled",
                    "settled_at": self.now,
                    "used_bytes": g.used_bytes,
                    "unreserved_bytes": g.unreserved_bytes,
                }
                for g in self._settled
            ],
        )
        add_rows(
            session,
            UsageDay,
            ("line_id", "day", "zone", "plmn"),
            ("bytes", "zero_rated_bytes"),
            [
                {
                    "id": new_id(),
                    "line_id": k[0],
                    "day": k[1],
                    "zone": k[2],
                    "plmn": k[3],
                    "bytes": used[0],
                    "zero_rated_bytes": used[1],
                }
                for k, used in self._usage.items()
            ],
        )
        add_rows(
            session,
            OverageMonth,
            ("line_id", "month"),
            ("charged", "volume_bytes"),
            [
                {
                    "line_id": k[0],
                    "month": k[1],
                    "currency": v[0],
                    "charged": v[1],
                    "volume_bytes": v[2],
                }
                for k, v in self._overage.items()
            ],
        )
        insert_rows(session, ChargingAnswer, self._answers)
        self._released, self._settled, self._new_grants, self._answers = [], [], [], []
        self._usage, self._overage = defaultdict(lambda: [0, 0]), {}
        for key in copies:
            if (copy := session.identity_map.get(key)) is not None:
                session.expire(copy)


# --- the statements of a batch, built once, and their rows -------------------------------------
#
# Each statement's columns are labelled with the names of its row's fields, in their order (checked
# below, on import): its rows are read by name, whichever way they were run (`db.direct`).


class _SessionRow(NamedTuple):
    id: uuid.UUID
    line_id: uuid.UUID
    ref: str
    plmn: str
    zone: str
    status: str
    notify_uri: str | None
    create_key: str | None
    served: bool  # the session's network is active now


class _AnsweredRow(NamedTuple):
    """A session named by ref, with the answer it already gave to the sequence number asked of it."""

    id: uuid.UUID
    line_id: uuid.UUID
    ref: str
    plmn: str
    zone: str
    status: str
    notify_uri: str | None
    create_key: str | None
    served: bool
    sequence: int | None  # None: not answered yet
    answer_status: int | None
    answer: Any


class _LineRow(NamedTuple):
    """A line, what it owes per zone, its overage (if on) with the wallet it charges, and one of its
    buckets usable now (NULLs: it has none)."""

    line_id: uuid.UUID
    status: str
    account_id: uuid.UUID | None
    debt_mainland: int | None  # ledger accounts of what it owes
    debt_hk: int | None
    overage_cap: int | None
    overage_currency: str | None  # chosen by the owner
    wallet_account_id: int | None
    wallet_currency: str | None
    # On the one row of a line without usable buckets, the bucket's fields are all NULL.
    bucket_id: uuid.UUID
    bucket_zone: str
    bucket_expires_at: datetime
    bucket_created_at: datetime
    bucket_account_id: int


class _GrantRow(NamedTuple):
    """An open grant with one of its reservations and that reservation's pending transfer."""

    grant_id: uuid.UUID
    session_id: uuid.UUID
    rating_group: int
    granted_bytes: int
    expires_at: datetime
    created_at: datetime
    pending_id: int
    bucket_id: uuid.UUID | None
    amount: int
    volume_bytes: int
    per_mb: int | None
    pending_debit_id: int
    pending_credit_id: int
    pending_amount: int
    pending_reason: str
    pending_reference: str
    pending_expires_at: datetime | None
    pending_resolved: bool


_SESSION_ROW, _GRANT_ROW = inspect(ChargingSession), inspect(Grant)  # their mappers


@dataclass
class _Prefetched:
    """Lines and open grants read with the sessions of a batch (`ChargingBatch.load`), by the ids hinted."""

    line_ids: set[uuid.UUID]
    session_ids: set[uuid.UUID]
    lines: list[Any] = field(default_factory=list)
    grants: list[Any] = field(default_factory=list)


class _Q:
    s, g, r = ChargingSession, Grant, GrantReservation
    # With whether the session's network is served now (the registry is the operator's to change).
    _session = select(
        s.id,
        s.line_id,
        s.charging_data_ref.label("ref"),
        s.plmn,
        s.zone,
        s.status,
        s.notify_uri,
        s.create_key,
        Network.active.label("served"),
    ).join(Network, Network.plmn == s.plmn)
    sessions_by_id = _session.where(AnyOf(s.id, "ids")).order_by(s.id)
    # By ref (the network's requests), each with the answer it already gave to the sequence number
    # asked of it (a retransmission). SQLite: the pairs as a row-value IN; PostgreSQL (which locks):
    # joined to the pairs as arrays, one statement text whatever their number.
    _answered = (
        ChargingAnswer.invocation_sequence_number.label("sequence"),
        ChargingAnswer.status_code.label("answer_status"),
        ChargingAnswer.answer,
    )
    sessions_by_ref = (
        _session.add_columns(*_answered)
        .outerjoin(
            ChargingAnswer,
            and_(
                ChargingAnswer.charging_session_id == s.id,
                tuple_(s.charging_data_ref, ChargingAnswer.invocation_sequence_number).in_(
                    bindparam("pairs", expanding=True)
                ),
            ),
        )
        .where(AnyOf(s.charging_data_ref, "refs"))
        .order_by(s.id)
    )
    _asked = (
        func.unnest(
            bindparam("refs", type_=ARRAY(String())), bindparam("seqs", type_=ARRAY(BigInteger))
        )
        .table_valued("ref", "seq")
        .render_derived(name="asked")
    )
    sessions_by_ref_locked = (
        _session.add_columns(*_answered)
        .join(_asked, _asked.c.ref == s.charging_data_ref)
        .outerjoin(
            ChargingAnswer,
            and_(
                ChargingAnswer.charging_session_id == s.id,
                ChargingAnswer.invocation_sequence_number == _asked.c.seq,
            ),
        )
        .order_by(s.id)
        .with_for_update(of=s)
    )
    sessions_by_id_locked = sessions_by_id.with_for_update(
        of=s
    )  # not the network's row: every session shares it
    lines = ledger_buckets.with_usable_buckets(
        select(
            Line.id.label("line_id"),
            Line.status,
            Line.account_id,
            ledger_buckets.debt_account_id(Line.id, "mainland").label("debt_mainland"),
            ledger_buckets.debt_account_id(Line.id, "hk").label("debt_hk"),
            LineOverage.monthly_cap.label("overage_cap"),
            LineOverage.currency.label("overage_currency"),
            Wallet.ledger_account_id.label("wallet_account_id"),
            Wallet.currency.label("wallet_currency"),
        )
        .outerjoin(LineOverage, and_(LineOverage.line_id == Line.id, LineOverage.enabled))
        .outerjoin(
            Wallet, and_(Wallet.account_id == Line.account_id, LineOverage.line_id.is_not(None))
        ),
        Line.id,
        ids="ids",
        now="now",
    ).where(AnyOf(Line.id, "ids"))
    # Open grants with their reservations, each with its pending transfer and whether it is resolved.
    grants = with_reservation(
        select(
            g.id.label("grant_id"),
            g.charging_session_id.label("session_id"),
            g.rating_group,
            g.granted_bytes,
            g.expires_at,
            g.created_at,
            r.pending_transfer_id.label("pending_id"),
            r.bucket_id,
            r.amount,
            r.volume_bytes,
            r.per_mb,
        ).join(r, r.grant_id == g.id),
        r.pending_transfer_id,
    ).where(AnyOf(g.charging_session_id, "ids"), g.status == "open")
    grants = grants.order_by(g.created_at, g.id, r.pending_transfer_id)
    zero_rated = select(RatingGroup.rating_group).where(
        AnyOf(RatingGroup.rating_group, "groups"), RatingGroup.zero_rated
    )
    rates = select(OverageRate.zone, OverageRate.currency, OverageRate.per_mb)
    charged = select(OverageMonth.line_id, OverageMonth.charged).where(
        AnyOf(OverageMonth.line_id, "ids"), OverageMonth.month == bindparam("month")
    )
    held = (
        select(s.line_id, func.sum(r.amount))
        .join(g, g.id == r.grant_id)
        .join(s, s.id == g.charging_session_id)
        .where(
            AnyOf(s.line_id, "ids"),
            r.per_mb.is_not(None),
            g.status == "open",
            g.expires_at > bindparam("now"),
        )
        .group_by(s.line_id)
    )


for _statement, _row in (
    (_Q.sessions_by_id, _SessionRow),
    (_Q.sessions_by_ref, _AnsweredRow),
    (_Q.sessions_by_ref_locked, _AnsweredRow),
    (_Q.lines, _LineRow),
    (_Q.grants, _GrantRow),
):
    assert tuple(_statement.selected_columns.keys()) == _row._fields, _row
