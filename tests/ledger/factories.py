"""Ledger test helpers: funded accounts, lines for buckets, balance snapshots (the clock: tests/helpers.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongka.account.models import Line
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount, Transfer

# A fixed instant, so tests read as "T0 + 5 minutes" rather than wall-clock time.
T0 = datetime(2030, 1, 15, 8, 0, tzinfo=UTC)

_serial = itertools.count(1)


def funded_account(
    session: Session, amount: int, unit: str = "bytes", kind: str = "bucket"
) -> LedgerAccount:
    """A customer account credited with `amount` from the operator's issuance account."""
    account = ledger.open_account(session, unit=unit, kind=kind)
    if amount:
        issued = ledger.system_account(session, "data_issued", unit)
        ledger.transfer(
            session, issued, account, amount, reason="test_funding", reference=f"test:{account.id}"
        )
    return account


def sink(session: Session, unit: str = "bytes") -> LedgerAccount:
    """Where usage goes: the operator's `data_used` account."""
    return ledger.system_account(session, "data_used", unit)


def reserve(
    session: Session,
    debit: LedgerAccount,
    amount: int,
    *,
    expires_at: datetime | None = None,
    reason: str = "usage",
) -> Transfer:
    """Hold `amount` of `debit` for `data_used`, until T0 + 1 hour unless told otherwise."""
    return ledger.reserve(
        session,
        debit,
        sink(session, debit.unit),
        amount,
        reason=reason,
        reference=f"session:{next(_serial)}",
        expires_at=expires_at or T0 + timedelta(hours=1),
    )


def line(session: Session) -> Line:
    """A SIM line, inserted directly (buckets need one to point at)."""
    n = next(_serial)
    row = Line(iccid=f"898520{n:013d}", hk_number=f"+852{50000000 + n}")
    session.add(row)
    session.flush()
    return row


def balances(session: Session, account: LedgerAccount) -> tuple[int, int, int, int]:
    """(debits_posted, credits_posted, debits_pending, credits_pending) now, not as cached in the session
    (summed from the transfers for an operator account, which keeps no totals)."""
    b = ledger.balances(session, account)
    return (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)


def transfer_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Transfer)) or 0


def resolutions_of(session: Session, pending: Transfer) -> list[Transfer]:
    return list(session.scalars(select(Transfer).where(Transfer.pending_id == pending.id)))
