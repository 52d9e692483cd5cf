"""The ledger: the only code that writes balances. Everything else asks it.

Transfers are append-only. A reservation (pending transfer) holds an amount on a
customer's account, so the available balance already excludes it and nothing can be
granted twice; it is later posted (possibly for less, releasing the rest), voided or
expired, exactly once. `verify()` recomputes every balance from the transfers.

The rules a transfer obeys are public functions (`check_transfer`, `check_spendable`,
`check_post`, `keeps_totals`): the functions here apply them one transfer at a time, and
`ledger.batch` applies the same ones to the many transfers of a charging batch.

Locks: the accounts a transfer touches are locked in ascending id order
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite serialises writers at BEGIN).

Operator accounts (`system:*`) keep no running totals and are never locked: every
charging request and payment moves money or data through the same few of them, and one
row every request must lock and update makes all requests wait for each other. Nothing
checks their balance before a move (they may go negative), so their totals are the sum
of their transfers, computed when asked (`balances`), and `verify` checks them that way.
Made once and never changed, their ids are kept for the process (`system_account`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from tongka import clock
from tongka.errors import Conflict
from tongka.i18n import _
from tongka.ledger.models import LedgerAccount, Transfer


class InsufficientBalance(Conflict):
    code = "insufficient_balance"
    message = _("The balance is not enough for this.")


class ReservationResolved(Conflict):
    code = "reservation_resolved"
    message = _("This reservation was already settled.")


class ReservationExpired(Conflict):
    code = "reservation_expired"
    message = _("This reservation has expired.")


RESOLUTIONS = ("post_pending", "void_pending", "expire_pending")
SYSTEM = "system"  # the kind of the operator's own accounts


# --- the rules, for one transfer here and for many at once (`ledger.batch`) ----------------


class Spendable(Protocol):
    """What the rules read of an account: its row (`LedgerAccount`) or a batch's copy (`batch.Account`)."""

    @property
    def id(self) -> int: ...
    @property
    def unit(self) -> str: ...
    @property
    def must_not_go_negative(self) -> bool: ...
    @property
    def available(self) -> int: ...


def check_transfer(debit: Spendable, credit: Spendable, amount: int) -> None:
    """A transfer or reservation moves a positive whole amount between two accounts of one unit."""
    if debit.id == credit.id:
        raise ValueError("a transfer needs two different accounts")
    if debit.unit != credit.unit:
        raise ValueError(f"unit mismatch: {debit.unit} / {credit.unit}")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("a transfer moves a positive integer amount")


def check_spendable(debit: Spendable, amount: int) -> None:
    """A customer account is never spent (posted or reserved) beyond its credits; check it locked."""
    if debit.must_not_go_negative and debit.available < amount:
        raise InsufficientBalance(available=debit.available, requested=amount)


def check_post(reserved: int, amount: int, expires_at: datetime | None, now: datetime) -> None:
    """A reservation (not resolved yet) is posted before its time, for at most what it holds."""
    if expires_at is not None and now >= expires_at:
        raise ReservationExpired()
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= reserved:
        raise ValueError("a reservation is posted for between zero and the reserved amount")


def keeps_totals(kind: str) -> bool:
    """Customer accounts keep running totals; operator accounts keep none (see the module's docstring)."""
    return kind != SYSTEM


# --- accounts -----------------------------------------------------------------------------


def open_account(
    session: Session, *, unit: str, kind: str, must_not_go_negative: bool = True
) -> LedgerAccount:
    account = LedgerAccount(unit=unit, kind=kind, must_not_go_negative=must_not_go_negative)
    session.add(account)
    session.flush()
    return account


# Operator accounts' ids by code. They never change once made, so the id is kept for the
# process; a row not found under it (made in a transaction that was rolled back) is looked up again.
_operator_accounts: dict[str, int] = {}


def system_account(session: Session, name: str, unit: str) -> LedgerAccount:
    """The operator's own account `system:<name>:<unit>` (issuance, usage, revenue...), made on first use.

    Operator accounts may go negative: issuing data debits `data_issued` below zero. Known ones
    come from the session (no statement) or by primary key.
    """
    code = f"system:{name}:{unit}"
    known = _operator_accounts.get(code)
    if known is not None:
        account = session.get(LedgerAccount, known)
        if account is not None and account.code == code:
            return account
    account = session.scalar(select(LedgerAccount).where(LedgerAccount.code == code))
    if account is None:
        try:
            with session.begin_nested():
                account = LedgerAccount(
                    code=code, unit=unit, kind=SYSTEM, must_not_go_negative=False
                )
                session.add(account)
        except IntegrityError:  # made at the same moment by another transaction
            account = session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one()
    _operator_accounts[code] = account.id
    return account


def credited(session: Session, account: LedgerAccount, reference: str) -> bool:
    """Whether a transfer for `reference` credited `account` (a move made once per reference)."""
    found = session.scalar(
        select(Transfer.id)
        .where(Transfer.reference == reference, Transfer.credit_account_id == account.id)
        .limit(1)
    )
    return found is not None


def lock_accounts(session: Session, ids: Iterable[int]) -> dict[int, LedgerAccount]:
    """Lock ledger accounts in ascending id (the one order everyone uses), fresh from the database.

    Operator accounts are returned unlocked: they keep no totals to protect.
    """
    wanted = sorted(set(ids))
    rows = session.scalars(
        select(LedgerAccount)
        .where(LedgerAccount.id.in_(wanted), LedgerAccount.kind != SYSTEM)
        .order_by(LedgerAccount.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    found = {a.id: a for a in rows}
    for account_id in wanted:
        if account_id not in found:
            found[account_id] = session.get_one(LedgerAccount, account_id)
    return found


def _add(account: LedgerAccount, field: str, amount: int) -> None:
    """Add to a customer account's running total; operator accounts keep none."""
    if keeps_totals(account.kind):
        setattr(account, field, getattr(account, field) + amount)


@dataclass(frozen=True)
class Balances:
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


def balances(session: Session, account: LedgerAccount) -> Balances:
    """An account's four totals now: as stored for customer accounts, summed from the transfers for operator ones."""
    if account.kind != SYSTEM:
        row = session.execute(
            select(
                LedgerAccount.debits_posted,
                LedgerAccount.credits_posted,
                LedgerAccount.debits_pending,
                LedgerAccount.credits_pending,
            ).where(LedgerAccount.id == account.id)
        ).one()
        return Balances(*row)
    debits, credits = (
        _sums(session, Transfer.debit_account_id, account.id),
        _sums(session, Transfer.credit_account_id, account.id),
    )
    return Balances(
        debits.get(account.id, (0, 0))[0],
        credits.get(account.id, (0, 0))[0],
        debits.get(account.id, (0, 0))[1],
        credits.get(account.id, (0, 0))[1],
    )


@dataclass(frozen=True)
class Entry:
    """A posted movement of one account, as its statement shows it: + credited, - debited."""

    id: int
    at: datetime
    amount: int
    reason: str
    reference: str


def entries(
    session: Session,
    account_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    reasons: Iterable[str] | None = None,
    limit: int | None = 100,
) -> list[Entry]:
    """The account's posted movements made in [start, end) (reservations only once posted, for what
    was posted), newest first."""
    t = Transfer
    query = select(t).where(
        (t.debit_account_id == account_id) | (t.credit_account_id == account_id),
        t.kind.in_(("posted", "post_pending")),
        t.amount > 0,
    )
    if start is not None:
        query = query.where(t.created_at >= start)
    if end is not None:
        query = query.where(t.created_at < end)
    if reasons is not None:
        query = query.where(t.reason.in_(list(reasons)))
    return [
        Entry(
            e.id,
            e.created_at,
            e.amount if e.credit_account_id == account_id else -e.amount,
            e.reason,
            e.reference,
        )
        for e in session.scalars(query.order_by(t.id.desc()).limit(limit))
    ]  # limit None: all of them


# --- transfers ----------------------------------------------------------------------------


def transfer(
    session: Session,
    debit: LedgerAccount,
    credit: LedgerAccount,
    amount: int,
    *,
    reason: str,
    reference: str,
) -> Transfer:
    """Move `amount` from `debit` to `credit` now."""
    check_transfer(debit, credit, amount)
    accounts = lock_accounts(session, (debit.id, credit.id))
    d, c = accounts[debit.id], accounts[credit.id]
    check_spendable(d, amount)
    _add(d, "debits_posted", amount)
    _add(c, "credits_posted", amount)
    return _append(session, "posted", d.id, c.id, amount, reason, reference)


def sweep(
    session: Session, debit: LedgerAccount, credit: LedgerAccount, *, reason: str, reference: str
) -> int:
    """Move all that `debit` has available (reservations stay) to `credit`; returns the amount moved."""
    d = lock_accounts(session, (debit.id, credit.id))[debit.id]
    amount = d.available
    if amount > 0:
        transfer(session, d, credit, amount, reason=reason, reference=reference)
    return max(amount, 0)


def reserve(
    session: Session,
    debit: LedgerAccount,
    credit: LedgerAccount,
    amount: int,
    *,
    reason: str,
    reference: str,
    expires_at: datetime,
) -> Transfer:
    """Hold `amount` of `debit` for `credit` until posted, voided or expired (after `expires_at`)."""
    check_transfer(debit, credit, amount)
    accounts = lock_accounts(session, (debit.id, credit.id))
    d, c = accounts[debit.id], accounts[credit.id]
    check_spendable(d, amount)
    _add(d, "debits_pending", amount)
    _add(c, "credits_pending", amount)
    return _append(session, "pending", d.id, c.id, amount, reason, reference, expires_at=expires_at)


def post(
    session: Session, pending_id: int, amount: int | None = None, *, reason: str | None = None
) -> Transfer:
    """Settle a reservation for `amount` (default: all of it); the rest goes back to the account."""
    pending, d, c = _open_reservation(session, pending_id)
    amount = pending.amount if amount is None else amount
    check_post(pending.amount, amount, pending.expires_at, clock.now())
    _release(d, c, pending.amount)
    _add(d, "debits_posted", amount)
    _add(c, "credits_posted", amount)
    return _append(
        session,
        "post_pending",
        d.id,
        c.id,
        amount,
        reason or pending.reason,
        pending.reference,
        pending,
    )


def void(session: Session, pending_id: int, *, reason: str | None = None) -> Transfer:
    """Cancel a reservation: the whole amount goes back to the account."""
    pending, d, c = _open_reservation(session, pending_id)
    _release(d, c, pending.amount)
    return _append(
        session,
        "void_pending",
        d.id,
        c.id,
        pending.amount,
        reason or pending.reason,
        pending.reference,
        pending,
    )


def expire_reservations(session: Session, now: datetime | None = None) -> int:
    """Release every reservation whose time is up. Safe to run from several workers at once."""
    now = now or clock.now()
    resolved = aliased(Transfer)
    due = session.scalars(
        select(Transfer.id)
        .outerjoin(resolved, resolved.pending_id == Transfer.id)
        .where(Transfer.kind == "pending", Transfer.expires_at <= now, resolved.id.is_(None))
        .order_by(Transfer.id)
    ).all()
    count = 0
    for pending_id in due:
        try:
            pending, d, c = _open_reservation(session, pending_id)
        except ReservationResolved:  # settled meanwhile by its owner
            continue
        _release(d, c, pending.amount)
        _append(
            session,
            "expire_pending",
            d.id,
            c.id,
            pending.amount,
            pending.reason,
            pending.reference,
            pending,
        )
        count += 1
    return count


def _open_reservation(
    session: Session, pending_id: int
) -> tuple[Transfer, LedgerAccount, LedgerAccount]:
    pending = session.get(Transfer, pending_id)
    if pending is None or pending.kind != "pending":
        raise ValueError(f"transfer {pending_id} is not a reservation")
    # Lock both accounts first: two resolvers of one reservation then run one after the other.
    accounts = lock_accounts(session, (pending.debit_account_id, pending.credit_account_id))
    if session.scalar(select(Transfer.id).where(Transfer.pending_id == pending_id)) is not None:
        raise ReservationResolved()
    return pending, accounts[pending.debit_account_id], accounts[pending.credit_account_id]


def _release(d: LedgerAccount, c: LedgerAccount, amount: int) -> None:
    _add(d, "debits_pending", -amount)
    _add(c, "credits_pending", -amount)


def _append(
    session: Session,
    kind: str,
    debit_id: int,
    credit_id: int,
    amount: int,
    reason: str,
    reference: str,
    pending: Transfer | None = None,
    expires_at: datetime | None = None,
) -> Transfer:
    entry = Transfer(
        kind=kind,
        debit_account_id=debit_id,
        credit_account_id=credit_id,
        amount=amount,
        pending_id=pending.id if pending else None,
        reason=reason,
        reference=reference,
        expires_at=expires_at,
    )
    session.add(entry)
    session.flush()
    return entry


# --- verification -------------------------------------------------------------------------


def _sums(
    session: Session, side: InstrumentedAttribute[int], account_id: int | None = None
) -> dict[int, tuple[int, int]]:
    """Per account on one side of the transfers (debit or credit): (posted, still pending), from the transfers."""
    t, resolution = Transfer, aliased(Transfer)
    moved = t.kind.in_(("posted", "post_pending"))
    open_pending = (t.kind == "pending") & resolution.id.is_(None)

    def total(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, t.amount), else_=0)), 0)

    query = (
        select(side, total(moved), total(open_pending))
        .select_from(t)
        .outerjoin(resolution, resolution.pending_id == t.id)
    )
    if account_id is not None:
        query = query.where(side == account_id)
    rows = session.execute(query.group_by(side)).all()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


@dataclass(frozen=True)
class Mismatch:
    account_id: int | None
    what: str
    stored: int | str | None
    recomputed: int | str | None

    def __str__(self) -> str:
        where = f"account {self.account_id}" if self.account_id is not None else "ledger"
        return f"{where}: {self.what}: stored {self.stored}, recomputed {self.recomputed}"


def verify(session: Session) -> list[Mismatch]:
    """Recompute every balance from the transfers and report each difference.

    Also checks what the running totals cannot show: resolutions match their
    reservation, units match, customer accounts never went below zero, and every
    unit sums to zero.
    """
    problems: list[Mismatch] = []
    t = Transfer
    debits, credits = _sums(session, t.debit_account_id), _sums(session, t.credit_account_id)
    per_unit: dict[str, int] = {}
    # populate_existing: compare with the stored totals as they are now, not as this session last saw them.
    for account in session.scalars(
        select(LedgerAccount).order_by(LedgerAccount.id).execution_options(populate_existing=True)
    ):
        d_posted, d_pending = debits.get(account.id, (0, 0))
        c_posted, c_pending = credits.get(account.id, (0, 0))
        # An operator account keeps no totals: its stored ones stay at zero.
        kept = account.kind != SYSTEM
        for what, stored, recomputed in (
            ("debits_posted", account.debits_posted, d_posted if kept else 0),
            ("credits_posted", account.credits_posted, c_posted if kept else 0),
            ("debits_pending", account.debits_pending, d_pending if kept else 0),
            ("credits_pending", account.credits_pending, c_pending if kept else 0),
        ):
            if stored != recomputed:
                problems.append(Mismatch(account.id, what, stored, recomputed))
        if account.must_not_go_negative and d_posted + d_pending > c_posted:
            problems.append(
                Mismatch(account.id, "spent beyond its credits", c_posted, d_posted + d_pending)
            )
        per_unit[account.unit] = per_unit.get(account.unit, 0) + c_posted - d_posted

    for unit, net in sorted(per_unit.items()):
        if net != 0:
            problems.append(Mismatch(None, f"{unit} does not sum to zero", 0, net))

    debit_acc, credit_acc = aliased(LedgerAccount), aliased(LedgerAccount)
    for entry_id, d_unit, c_unit in session.execute(
        select(t.id, debit_acc.unit, credit_acc.unit)
        .join(debit_acc, debit_acc.id == t.debit_account_id)
        .join(credit_acc, credit_acc.id == t.credit_account_id)
        .where(debit_acc.unit != credit_acc.unit)
    ):
        problems.append(Mismatch(None, f"transfer {entry_id} mixes units", d_unit, c_unit))

    # Resolutions that disagree with their reservation: found by the database, not loaded one by one.
    p = aliased(Transfer)
    for r_id, p_id, p_kind, same_accounts, r_amount, p_amount, r_kind in session.execute(
        select(
            t.id,
            p.id,
            p.kind,
            (t.debit_account_id == p.debit_account_id)
            & (t.credit_account_id == p.credit_account_id),
            t.amount,
            p.amount,
            t.kind,
        )
        .join(p, p.id == t.pending_id)
        .where(
            t.kind.in_(RESOLUTIONS),
            (p.kind != "pending")
            | (t.debit_account_id != p.debit_account_id)
            | (t.credit_account_id != p.credit_account_id)
            | ((t.kind == "post_pending") & (t.amount > p.amount))
            | ((t.kind != "post_pending") & (t.amount != p.amount)),
        )
    ):
        if p_kind != "pending":
            problems.append(
                Mismatch(
                    None, f"transfer {r_id} resolves a non-reservation {p_id}", p_kind, "pending"
                )
            )
        elif not same_accounts:
            problems.append(
                Mismatch(None, f"transfer {r_id} names other accounts than {p_id}", None, None)
            )
        elif r_kind == "post_pending":
            problems.append(
                Mismatch(None, f"transfer {r_id} posts more than reserved", p_amount, r_amount)
            )
        else:
            problems.append(
                Mismatch(None, f"transfer {r_id} releases another amount", p_amount, r_amount)
            )
    return problems
