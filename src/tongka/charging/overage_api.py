"""App API: overage (data beyond the packs, by choice) and its published rates; the wallet it is charged to.

Who may call: rates, anyone; a line's overage, the line's owner (another subscriber's
line is 404); the wallet, the signed-in subscriber.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from tongka import clock
from tongka.account import lines as line_service
from tongka.charging import notify, overage
from tongka.deps import CurrentAccount, SessionDep
from tongka.ledger.models import LedgerAccount
from tongka.money import GB, MB, Currency
from tongka.wallet import service as wallets

router = APIRouter(prefix="/api/v1", tags=["overage and wallet"])


class OverageRateOut(BaseModel):
    zone: str
    currency: str
    per_mb: int  # minor units per MB (1 MB = 1,048,576 bytes)
    per_gb: int  # the same rate for a GB, for comparison with packs


class OverageIn(BaseModel):
    enabled: bool
    monthly_cap: int = Field(
        ge=0, description="minor units of `currency` a Hong Kong calendar month"
    )
    currency: Currency


class OverageMonthOut(BaseModel):
    month: str  # YYYY-MM, Hong Kong time
    charged: int  # minor units posted this month
    held: int  # minor units held by grants in use
    left: int  # what the cap still allows
    volume_bytes: int  # overage data used this month


class OverageOut(BaseModel):
    line_id: uuid.UUID
    enabled: bool
    monthly_cap: int
    currency: str | None
    this_month: OverageMonthOut


class WalletOut(BaseModel):
    currency: str
    available: int  # minor units that can be spent now
    held: int  # minor units reserved by data in use


@router.get("/overage-rates", response_model=list[OverageRateOut])
def overage_rates(session: SessionDep) -> list[OverageRateOut]:
    """Anyone: the published price of data beyond a line's packs, per zone and currency, charged only
    when the line's owner turned overage on."""
    return [
        OverageRateOut(
            zone=r.zone, currency=r.currency, per_mb=r.per_mb, per_gb=r.per_mb * (GB // MB)
        )
        for r in overage.rates(session)
    ]


LineId = Annotated[uuid.UUID, Path()]


def _view(session: SessionDep, line_id: uuid.UUID) -> OverageOut:
    now = clock.now()
    chosen = overage.settings_of(session, line_id)
    month = overage.month_of(now)
    charged, held = overage.charged_in(session, line_id, month), overage.held(session, line_id, now)
    cap = chosen.monthly_cap if chosen else 0
    return OverageOut(
        line_id=line_id,
        enabled=bool(chosen and chosen.enabled),
        monthly_cap=cap,
        currency=chosen.currency if chosen else None,
        this_month=OverageMonthOut(
            month=month.strftime("%Y-%m"),
            charged=charged,
            held=held,
            left=max(0, cap - charged - held),
            volume_bytes=overage.volume_in(session, line_id, month),
        ),
    )


@router.get("/lines/{line_id}/overage", response_model=OverageOut)
def get_overage(line_id: LineId, account: CurrentAccount, session: SessionDep) -> OverageOut:
    """The line's owner: whether data continues beyond the packs, the monthly cap, and this month's spending."""
    line_service.own_line(session, account, line_id)
    return _view(session, line_id)


@router.put("/lines/{line_id}/overage", response_model=OverageOut)
def put_overage(
    line_id: LineId, body: OverageIn, account: CurrentAccount, session: SessionDep
) -> OverageOut:
    """The line's owner: turn overage on (with a monthly cap, in the wallet's currency) or off. Off is the default:
    without it, data stops when the packs run out. A session in progress hears of new quota at once."""
    line = line_service.own_line(session, account, line_id)
    overage.configure(
        session,
        line,
        account,
        enabled=body.enabled,
        monthly_cap=body.monthly_cap,
        currency=body.currency,
    )
    if body.enabled:
        notify.quota_changed(session, line.id)
    return _view(session, line_id)


@router.get("/wallet", response_model=WalletOut)
def get_wallet(account: CurrentAccount, session: SessionDep) -> WalletOut:
    """The signed-in subscriber: the wallet overage is charged to, in minor units of its currency."""
    wallet = wallets.wallet_of(session, account.id)
    if wallet is None:
        raise wallets.WalletNotFound()
    money = session.get_one(LedgerAccount, wallet.ledger_account_id)
    return WalletOut(currency=wallet.currency, available=money.available, held=money.debits_pending)
