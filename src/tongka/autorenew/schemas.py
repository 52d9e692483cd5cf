"""The auto-renew API's shapes, and setting a rule as the API and the page both do."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account import lines as line_service
from tongka.account.models import Account
from tongka.autorenew import service as rules
from tongka.autorenew.models import AutoRenewRule
from tongka.catalog import service as catalog
from tongka.money import Currency
from tongka.wallet import service as wallets


class AutoRenewIn(BaseModel):
    zone: Literal["mainland", "hk"]
    threshold_percent: int = Field(ge=1, le=99, description="buy when less than this % is left")
    pack_id: uuid.UUID
    # card: the one saved for auto-renew; alipay_agreement / wechat_agreement: the Alipay
    # agreement or WeChat Pay contract signed for it
    source: Literal["wallet", "card", "alipay_agreement", "wechat_agreement"]
    monthly_cap: int = Field(ge=0, description="minor units of `currency` a Hong Kong month")
    currency: Currency
    forecast_days: int | None = Field(
        default=None, ge=1, le=30, description="also buy when the forecast says fewer days are left"
    )


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
    agreement: str | None = None  # the wallet account the agreement was signed with
    monthly_cap: int
    currency: str
    forecast_days: int | None
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
        card=card.label
        if rule.source == "card" and (card := rules.card_of(session, rule.account_id))
        else None,
        agreement=agreement.label
        if (provider := rules.AGREEMENT_SOURCES.get(rule.source))
        and (agreement := rules.agreement_of(session, rule.account_id, provider))
        else None,
        monthly_cap=rule.monthly_cap,
        currency=rule.currency,
        forecast_days=rule.forecast_days,
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
            forecast_days=body.forecast_days,
        ),
    )
