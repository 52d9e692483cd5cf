"""The ledger for many transfers at once: accounts locked and read in one statement, the
transfers decided in memory, then written in a few statements.

Online charging answers many requests per transaction (group commit, `charging.engine`):
one statement per transfer and per running total would cost more than the charging
itself. A `LedgerBatch` applies the rules of `ledger.service` (`check_transfer`,
`check_spendable`, `check_post`: a customer account is never spent, posted or reserved,
beyond its credits; a reservation is resolved exactly once, never posted after its time,
for at most what it holds) on accounts it locked first, in ascending id like everyone
else (`ledger.service.lock_accounts`). `flush()` appends
the transfers (their ids taken in the order they were made, so drawing order is kept)
and adds each account's change to its running totals. Operator accounts are neither
locked nor totalled, as in `ledger.service`.

Use one batch per transaction, and nothing else that writes the same accounts in between.
The session's own copies (ORM objects) of the accounts a flush wrote are expired, so that
what reads them afterwards through the ORM sees the new totals.

A caller that keeps reservations of its own (charging's grants) reads them with its rows
through `with_reservation`, and hands them to `pending()`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, inspect, literal_column, select
from sqlalchemy.orm import Session, aliased

from tongka.db import AnyOf, direct, insert_rows, update_rows
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount, Transfer
from tongka.ledger.service import (
    SYSTEM,
    ReservationResolved,
    check_post,
    check_spendable,
    check_transfer,
    keeps_totals,
)

_TOTALS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


@dataclass
class Account:
    """A ledger account as locked by the batch, with its totals kept current in memory."""

    id: int
    unit: str
    kind: str
    must_not_go_negative: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    changed: dict[str, int] = field(default_factory=dict)  # what flush() adds to the stored totals

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    def add(self, total: str, amount: int) -> None:
        if not keeps_totals(self.kind):
            return
        setattr(self, total, getattr(self, total) + amount)
        self.changed[total] = self.changed.get(total, 0) + amount


@dataclass
class Pending:
    """A reservation: loaded from the database, or made in this batch (its id comes at flush)."""

    debit: Account
    credit: Account
    amount: int
    reason: str
    reference: str
    expires_at: datetime | None
    id: int | None = None
    resolved: bool = False


@dataclass
class _Entry:
    kind: str
    debit: Account
    credit: Account
    amount: int
    reason: str
    reference: str
    expires_at: datetime | None = None
    pending: Pending | None = None  # the reservation this resolves
    made: Pending | None = None  # the reservation this is
    id: int = 0  # given at flush


@dataclass
class LedgerCache:
    """What a charging process keeps from one batch to the next, to spare each batch two round trips:
    operator accounts (made once, never changed: their totals are not kept) and transfer ids, taken
    from the sequence a block at a time. Ids taken and not used are a gap, as a sequence leaves after a
    rollback; within a batch they still ascend in the order the transfers were made."""

    system: dict[str, tuple[int, str]] = field(default_factory=dict)  # code -> (account id, unit)
    ids: list[int] = field(
        default_factory=list
    )  # free transfer ids, descending (the next at the end)
    block: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)


class LedgerBatch:
    def __init__(self, session: Session, now: datetime, cache: LedgerCache | None = None) -> None:
        self.session = session
        self.now = now
        self.cache = cache
        session.flush()  # what the session holds goes first: the batch reads and writes past the ORM
        # Core statements on the session's connection, on PostgreSQL past SQLAlchemy (db.direct).
        self.execute = direct(session)
        # PostgreSQL locks rows; SQLite already serialises writers at BEGIN IMMEDIATE (tongka.db).
        self.locks_rows = session.get_bind().dialect.name == "postgresql"
        self.accounts: dict[int, Account] = {}
        self.pendings: dict[int, Pending] = {}
        self._entries: list[_Entry] = []

    # --- reading ------------------------------------------------------------------------

    def lock(self, ids: Iterable[int]) -> None:
        """Lock (customer accounts) and read the accounts not held yet, in ascending id, in one statement."""
        wanted = sorted(set(ids) - self.accounts.keys())
        if not wanted:
            return
        rows = self.execute(_Q.lock if self.locks_rows else _Q.read, {"ids": wanted}).all()
        if len(rows) != len(wanted):  # operator accounts: read, never locked
            rows += self.execute(_Q.read_system, {"ids": wanted}).all()
        for row in rows:
            self.accounts[row[0]] = Account(*row)
        if len(rows) != len(wanted):
            raise ValueError(f"no ledger accounts {sorted(set(wanted) - {r[0] for r in rows})}")

    def system(self, codes: Iterable[str]) -> dict[str, Account]:
        """Operator accounts by code (`system:data_used:bytes`), made on first use; never locked."""
        found: dict[str, Account] = {}
        wanted = set(codes)
        known = self.cache.system if self.cache is not None else {}
        for code in wanted & known.keys():
            account_id, unit = known[code]
            found[code] = self.accounts.setdefault(
                account_id, Account(account_id, unit, SYSTEM, False)
            )
        if not (wanted := wanted - found.keys()):
            return found
        for account_id, code, unit in self.execute(_Q.system, {"codes": list(wanted)}):
            found[code] = self.accounts.setdefault(
                account_id, Account(account_id, unit, SYSTEM, False)
            )
            if self.cache is not None:  # committed (read, not made here): safe to keep
                known[code] = (account_id, unit)
        for code in wanted - found.keys():  # the first ever: made through the ledger (rare)
            _system, name, unit = code.split(":")
            made = ledger.system_account(self.session, name, unit)
            found[code] = self.accounts.setdefault(made.id, Account(made.id, unit, SYSTEM, False))
        return found

    def debt(self, line_id: uuid.UUID, zone: str) -> Account:
        """The account of what the line owes in `zone`, made if it has none yet (rare), locked."""
        made = buckets.debt_account(self.session, line_id, zone, create=True)
        assert made is not None
        self.lock([made.id])
        return self.accounts[made.id]

    def pending(
        self,
        pending_id: int,
        debit: int,
        credit: int,
        amount: int,
        reason: str,
        reference: str,
        expires_at: datetime | None,
        resolved: bool,
    ) -> Pending:
        """A reservation read by the caller (with whether it is resolved), on accounts this batch holds."""
        found = self.pendings.get(pending_id)
        if found is None:
            found = self.pendings[pending_id] = Pending(
                self.accounts[debit],
                self.accounts[credit],
                amount,
                reason,
                reference,
                expires_at,
                pending_id,
                resolved,
            )
        return found

    # --- transfers (the rules of ledger.service) ------------------------------------------

    def transfer(
        self, debit: Account, credit: Account, amount: int, *, reason: str, reference: str
    ) -> None:
        check_transfer(debit, credit, amount)
        check_spendable(debit, amount)
        debit.add("debits_posted", amount)
        credit.add("credits_posted", amount)
        self._entries.append(_Entry("posted", debit, credit, amount, reason, reference))

    def reserve(
        self,
        debit: Account,
        credit: Account,
        amount: int,
        *,
        reason: str,
        reference: str,
        expires_at: datetime,
    ) -> Pending:
        check_transfer(debit, credit, amount)
        check_spendable(debit, amount)
        debit.add("debits_pending", amount)
        credit.add("credits_pending", amount)
        made = Pending(debit, credit, amount, reason, reference, expires_at)
        self._entries.append(
            _Entry("pending", debit, credit, amount, reason, reference, expires_at, made=made)
        )
        return made

    def post(self, pending: Pending, amount: int, *, reason: str | None = None) -> None:
        """Settle `pending` for `amount` (at most what it holds); the rest goes back to the account."""
        self._open(pending)
        check_post(pending.amount, amount, pending.expires_at, self.now)
        self._release(pending)
        pending.debit.add("debits_posted", amount)
        pending.credit.add("credits_posted", amount)
        self._resolve("post_pending", pending, amount, reason)

    def void(self, pending: Pending, *, reason: str | None = None) -> None:
        self._open(pending)
        self._release(pending)
        self._resolve("void_pending", pending, pending.amount, reason)

    @staticmethod
    def _open(pending: Pending) -> None:
        if pending.resolved:
            raise ReservationResolved()

    @staticmethod
    def _release(pending: Pending) -> None:
        pending.debit.add("debits_pending", -pending.amount)
        pending.credit.add("credits_pending", -pending.amount)

    def _resolve(self, kind: str, pending: Pending, amount: int, reason: str | None) -> None:
        pending.resolved = True
        self._entries.append(
            _Entry(
                kind,
                pending.debit,
                pending.credit,
                amount,
                reason or pending.reason,
                pending.reference,
                pending=pending,
            )
        )

    # --- writing --------------------------------------------------------------------------

    def number(self) -> None:
        """Give the transfers made so far their ids: a read, so done before writes that are sent
        without waiting (`db.pipelined`)."""
        unnumbered = [e for e in self._entries if not e.id]
        if not unnumbered:
            return
        for entry, entry_id in zip(unnumbered, self._new_ids(len(unnumbered)), strict=True):
            if entry.made is not None:
                entry.made.id = entry_id
                self.pendings[entry_id] = entry.made
            entry.id = entry_id

    def flush(self) -> None:
        """Append the transfers made and add the changes to the accounts' running totals."""
        self.number()
        entries, self._entries = self._entries, []
        if entries:
            insert_rows(
                self.session,
                Transfer,
                [
                    {
                        "id": e.id,
                        "kind": e.kind,
                        "debit_account_id": e.debit.id,
                        "credit_account_id": e.credit.id,
                        "amount": e.amount,
                        "pending_id": e.pending.id if e.pending else None,
                        "reason": e.reason,
                        "reference": e.reference,
                        "expires_at": e.expires_at,
                        "created_at": self.now,
                    }
                    for e in entries
                ],
            )
        changed = [a for a in self.accounts.values() if a.changed]
        update_rows(
            self.session,
            LedgerAccount,
            "id",
            [{"id": x.id, **{t: x.changed.get(t, 0) for t in _TOTALS}} for x in changed],
            add=_TOTALS,
        )
        for x in changed:
            x.changed = {}
        if self.session.identity_map:  # the charging path holds none: nothing to look up
            copies = self.session.identity_map
            for x in changed:
                if (
                    copy := copies.get(_ACCOUNT.identity_key_from_primary_key((x.id,)))
                ) is not None:
                    self.session.expire(copy)

    def _new_ids(self, count: int) -> list[int]:
        """Ids for `count` new transfers, ascending, in the order they were made."""
        if self.locks_rows:
            if self.cache is None:
                return sorted(self.execute(_Q.next_ids, {"count": count}).scalars().all())
            with self.cache.lock:
                free = self.cache.ids
                if len(free) < count:
                    taken = (
                        self.execute(
                            _Q.next_ids, {"count": max(count - len(free), self.cache.block)}
                        )
                        .scalars()
                        .all()
                    )
                    free[:0] = sorted(taken, reverse=True)  # after those already held
                return [free.pop() for _ in range(count)]
        # SQLite: this transaction is the only writer (BEGIN IMMEDIATE), so the next ids are free.
        last = self.execute(_Q.last_id).scalar_one()
        return list(range(last + 1, last + 1 + count))


def with_reservation(query: Select[*tuple[Any, ...]], pending_id: Any) -> Select[*tuple[Any, ...]]:
    """`query` joined to the reservation (pending transfer) whose id is its column `pending_id`,
    with its pending_debit_id, pending_credit_id, pending_amount, pending_reason,
    pending_reference, pending_expires_at and pending_resolved (`pending()`'s arguments, in
    order). Built once by the caller, as part of its own statement."""
    t, resolution = Transfer, aliased(Transfer)
    return query.add_columns(
        t.debit_account_id.label("pending_debit_id"),
        t.credit_account_id.label("pending_credit_id"),
        t.amount.label("pending_amount"),
        t.reason.label("pending_reason"),
        t.reference.label("pending_reference"),
        t.expires_at.label("pending_expires_at"),
        select(resolution.id)
        .where(resolution.pending_id == t.id)
        .exists()
        .label("pending_resolved"),
    ).join(t, t.id == pending_id)


_ACCOUNT = inspect(LedgerAccount)


class _Q:
    """The batch's statements, built once."""

    a, t = LedgerAccount, Transfer
    _columns = (
        a.id,
        a.unit,
        a.kind,
        a.must_not_go_negative,
        a.debits_posted,
        a.credits_posted,
        a.debits_pending,
        a.credits_pending,
    )
    read = select(*_columns).where(AnyOf(a.id, "ids"), a.kind != SYSTEM).order_by(a.id)
    lock = read.with_for_update()
    read_system = select(*_columns).where(AnyOf(a.id, "ids"), a.kind == SYSTEM)
    system = select(a.id, a.code, a.unit).where(AnyOf(a.code, "codes"))
    next_ids = select(
        func.nextval(literal_column("pg_get_serial_sequence('ledger_transfers', 'id')"))
    ).select_from(func.generate_series(1, bindparam("count")))
    last_id = select(func.coalesce(func.max(t.id), 0))
