"""Overage: data beyond a line's packs, only if its owner turned it on, charged to the wallet up to a monthly cap.

The rate is the catalog's published price per MB for the zone, in the wallet's currency.
A volume costs ceil(bytes × rate / 1,048,576) minor units, rounded up once per grant
settled (a customer pays at most one fen or cent more than the exact price per grant).
Quota from overage is a reservation of money on the wallet, like a bucket reservation of
bytes: posted for the volume used, the rest released. The cap counts what was charged
in the Hong Kong calendar month plus what open grants hold, so grants can never add up
to more than the cap. Locks: the wallet's ledger account serialises all overage of an
account, so the cap is checked and spent under that one lock. The charging decisions
themselves are `engine.ChargingBatch`'s; this module holds the settings, rates and sums.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account, Line
from tongka.catalog.models import OverageRate
from tongka.charging.models import (
    ChargingSession,
    Grant,
    GrantReservation,
    LineOverage,
    OverageMonth,
)
from tongka.errors import Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.money import MB
from tongka.wallet import service as wallets


class OverageCapInvalid(Unprocessable):
    code = "overage_cap_invalid"
    message = _(
        "The monthly cap must be a whole number of minor units, at least 0 and at most {maximum}."
    )


MAX_CAP = (
    100_000_00  # 100,000.00 a month: a sanity ceiling on what one line may be allowed to spend
)


def cost(volume_bytes: int, per_mb: int) -> int:
    """Minor units for `volume_bytes` at `per_mb` a MB, rounded up: data is never free."""
    return -(-volume_bytes * per_mb // MB)


def month_of(at: datetime) -> date:
    """The first day of the Hong Kong calendar month of `at`."""
    from tongka.charging.engine import usage_day  # the one definition of a Hong Kong day

    return usage_day(at).replace(day=1)


def settings_of(session: Session, line_id: uuid.UUID) -> LineOverage | None:
    return session.get(LineOverage, line_id)


def rates(session: Session) -> list[OverageRate]:
    return list(
        session.scalars(select(OverageRate).order_by(OverageRate.zone, OverageRate.currency))
    )


def set_rate(session: Session, zone: str, currency: str, per_mb: int) -> OverageRate:
    found = session.get(OverageRate, (zone, currency))
    if found is None:
        found = OverageRate(zone=zone, currency=currency, per_mb=per_mb)
        session.add(found)
    found.per_mb = per_mb
    session.flush()
    return found


def configure(
    session: Session, line: Line, owner: Account, *, enabled: bool, monthly_cap: int, currency: str
) -> LineOverage:
    """Turn overage on or off for `line` with a monthly cap in `currency` (the wallet's; opened if need be)."""
    if not 0 <= monthly_cap <= MAX_CAP:
        raise OverageCapInvalid(maximum=MAX_CAP)
    wallet = wallets.open_wallet(session, owner, currency)
    found = session.get(LineOverage, line.id, with_for_update=True)
    if found is None:
        found = LineOverage(line_id=line.id)
        session.add(found)
    found.enabled, found.monthly_cap, found.currency, found.updated_at = (
        enabled,
        monthly_cap,
        wallet.currency,
        clock.now(),
    )
    session.flush()
    return found


def charged_in(session: Session, line_id: uuid.UUID, month: date) -> int:
    return (
        session.scalar(
            select(OverageMonth.charged).where(
                OverageMonth.line_id == line_id, OverageMonth.month == month
            )
        )
        or 0
    )


def held(session: Session, line_id: uuid.UUID, now: datetime) -> int:
    """Money held by the line's open grants on the wallet (lapsed ones can no longer be posted)."""
    # int(): PostgreSQL sums bigints as numeric, which would come back as a Decimal.
    return int(
        session.scalar(
            select(func.coalesce(func.sum(GrantReservation.amount), 0))
            .join(Grant, Grant.id == GrantReservation.grant_id)
            .join(ChargingSession, ChargingSession.id == Grant.charging_session_id)
            .where(
                ChargingSession.line_id == line_id,
                GrantReservation.per_mb.is_not(None),
                Grant.status == "open",
                Grant.expires_at > now,
            )
        )
        or 0
    )


def volume_in(session: Session, line_id: uuid.UUID, month: date) -> int:
    return (
        session.scalar(
            select(OverageMonth.volume_bytes).where(
                OverageMonth.line_id == line_id, OverageMonth.month == month
            )
        )
        or 0
    )


@dataclass(frozen=True)
class Charge:
    """Overage data paid from the wallet: one posted charge (a grant's use, or usage no grant covered)."""

    at: datetime
    amount: int  # minor units taken from the wallet
    currency: str
    line_id: uuid.UUID | None


def _line_of_references(session: Session, references: set[str]) -> dict[str, uuid.UUID]:
    """The line each overage reference (`grant:<id>`, `charging_session:<id>`) charged for."""
    grants: set[uuid.UUID] = set()
    sessions: set[uuid.UUID] = set()
    for reference in references:
        kind, _sep, raw = reference.partition(":")
        try:
            (grants if kind == "grant" else sessions).add(uuid.UUID(raw))
        except ValueError:
            continue
    found: dict[str, uuid.UUID] = {}
    if grants:
        for grant_id, line_id in session.execute(
            select(Grant.id, ChargingSession.line_id)
            .join(ChargingSession, ChargingSession.id == Grant.charging_session_id)
            .where(Grant.id.in_(grants))
        ):
            found[f"grant:{grant_id}"] = line_id
    if sessions:
        for session_id, line_id in session.execute(
            select(ChargingSession.id, ChargingSession.line_id).where(
                ChargingSession.id.in_(sessions)
            )
        ):
            found[f"charging_session:{session_id}"] = line_id
    return found


def charges_of(
    session: Session,
    account_id: uuid.UUID,
    *,
    line_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> list[Charge]:
    """Overage charged to the account's wallet in [start, end) (for one line, if given), newest first,
    from the wallet's ledger entries."""
    wallet = wallets.wallet_of(session, account_id)
    if wallet is None:
        return []
    # For one line, every charge of the period is read and those of other lines dropped: the
    # ledger's references name grants and sessions, not lines.
    entries = ledger.entries(
        session,
        wallet.ledger_account_id,
        start=start,
        end=end,
        reasons=("overage",),
        limit=None if line_id is not None else limit,
    )
    lines = _line_of_references(session, {e.reference for e in entries})
    charges = [
        Charge(e.at, -e.amount, wallet.currency, lines.get(e.reference))
        for e in entries
        if line_id is None or lines.get(e.reference) == line_id
    ]
    return charges[:limit]
