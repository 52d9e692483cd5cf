"""App API: a line's auto-renew rule (GET/PUT/DELETE /api/v1/lines/{line_id}/auto-renew).

Who may call: the line's owner (another subscriber's line is 404, as everywhere)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account import lines as line_service
from tongka.account.models import Account
from tongka.autorenew import service as rules
from tongka.autorenew.models import AutoRenewRule
from tongka.catalog import service as catalog
from tongka.deps import CurrentAccount, SessionDep
from tongka.money import Currency
from tongka.wallet import service as wallets

router = APIRouter(prefix="/api/v1", tags=["auto-renew"])

LineId = Annotated[uuid.UUID, Path()]


class AutoRenewIn(BaseModel):
    zone: Literal["mainland", "hk"]
    threshold_percent: int = Field(ge=1, le=99, description="buy when less than this % is left")
    pack_id: uuid.UUID
    source: Literal["wallet", "card"]  # card: the one saved for auto-renew
    monthly_cap: int = Field(ge=0, description="minor units of `currency` a Hong Kong month")
    currency: Currency


class MonthOut(BaseModel):
    month: str  # YYYY-MM, Hong Kong time
    spent: int  # succeeded and pending auto-renew purchases
    left: int


class AutoRenewOut(BaseModel):
    line_id: uuid.UUID
    zone: str
    threshold_percent: int
    pack_id: uuid.UUID
    source: str
    card: str | None  # the saved card, e.g. "Visa •••• 4242"
    monthly_cap: int
    currency: str
    active: bool  # false: paused after three payment failures in a row
    consecutive_failures: int
    this_month: MonthOut


def view(session: Session, rule: AutoRenewRule) -> AutoRenewOut:
    month = rules.month_of(clock.now())
    spent = rules.spent(session, rule.line_id, rule.currency, month)
    return AutoRenewOut(
        line_id=rule.line_id,
        zone=rule.zone,
        threshold_percent=rule.threshold_percent,
        pack_id=rule.pack_id,
        source=rule.source,
        card=rule.card_label,
        monthly_cap=rule.monthly_cap,
        currency=rule.currency,
        active=rule.active,
        consecutive_failures=rule.consecutive_failures,
        this_month=MonthOut(month=month, spent=spent, left=max(0, rule.monthly_cap - spent)),
    )


def set_rule(
    session: Session, account: Account, line_id: uuid.UUID, body: AutoRenewIn
) -> AutoRenewRule:
    """Checks what the domain cannot see (the pack, the wallet), then sets the rule."""
    line = line_service.own_line(session, account, line_id)
    pack = catalog.pack_for_sale(session, body.pack_id, "auto")
    if pack.zone not in (body.zone, "both"):
        raise rules.PackNotForZone()
    if catalog.list_price(pack, body.currency) is None:
        raise rules.PackNotPriced(currency=body.currency)
    if body.source == "wallet":
        wallets.open_wallet(session, account, body.currency)  # one in another currency is refused
    return rules.put(
        session,
        account.id,
        line.id,
        rules.Spec(
            zone=body.zone,
            threshold_percent=body.threshold_percent,
            pack_id=pack.id,
            source=body.source,
            monthly_cap=body.monthly_cap,
            currency=body.currency,
        ),
    )


@router.get("/lines/{line_id}/auto-renew", response_model=AutoRenewOut)
def get_auto_renew(line_id: LineId, account: CurrentAccount, session: SessionDep) -> AutoRenewOut:
    """The line's owner: the line's auto-renew rule and this month's spending (404: none set)."""
    line_service.own_line(session, account, line_id)
    rule = rules.of_line(session, line_id)
    if rule is None:
        raise rules.RuleNotFound()
    return view(session, rule)


@router.put("/lines/{line_id}/auto-renew", response_model=AutoRenewOut)
def put_auto_renew(
    line_id: LineId, body: AutoRenewIn, account: CurrentAccount, session: SessionDep
) -> AutoRenewOut:
    """The line's owner: set the rule (buy `pack_id` when data in `zone` falls below
    `threshold_percent` %, never above `monthly_cap` a month); a paused rule starts again."""
    return view(session, set_rule(session, account, line_id, body))


@router.delete("/lines/{line_id}/auto-renew", status_code=204)
def delete_auto_renew(line_id: LineId, account: CurrentAccount, session: SessionDep) -> Response:
    """The line's owner: auto-renew off for the line (its purchases stay)."""
    line_service.own_line(session, account, line_id)
    rules.delete(session, line_id)
    return Response(status_code=204)
