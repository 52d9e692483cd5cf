"""Exchange rates: set by the operator, locked onto an order when it is made.

A rate is stored as an integer of millionths (1 HKD = 0.923400 CNY is 923400). A price
converts as `amount × rate / 10^6`, rounded half up to the currency's minor unit —
the one place money changes currency.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.fx.models import ExchangeRate
from tongka.money import CURRENCIES, Money, currency

SCALE = 1_000_000


def parse_rate(text: str) -> int:
    """`0.9234` -> 923400 millionths; more than six decimals or a non-positive rate is refused."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    micros = value * SCALE
    if value <= 0 or micros != micros.to_integral_value():
        raise ValueError("a rate is positive with at most six decimals")
    return int(micros)


def set_rate(
    session: Session, base: str, quote: str, rate_micros: int, set_by: str
) -> ExchangeRate:
    if base not in CURRENCIES or quote not in CURRENCIES or base == quote:
        raise ValueError(f"rates are between two of {', '.join(CURRENCIES)}")
    rate = ExchangeRate(base=base, quote=quote, rate_micros=rate_micros, set_by=set_by)
    session.add(rate)
    session.flush()
    return rate


def current_rate(session: Session, base: str, quote: str) -> ExchangeRate | None:
    return session.scalar(
        select(ExchangeRate)
        .where(ExchangeRate.base == base, ExchangeRate.quote == quote)
        .order_by(ExchangeRate.created_at.desc(), ExchangeRate.id.desc())
        .limit(1)
    )


def convert(amount: Money, quote: str, rate_micros: int) -> Money:
    value = (Decimal(amount.amount) * rate_micros / SCALE).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return Money(int(value), currency(quote))


def price_in(
    session: Session, prices: list[Money], currency: str
) -> tuple[Money, Money, int | None] | None:
    """(list price, price to charge, locked rate) to charge in `currency`: the catalog's own price in it
    if there is one, else the first catalog price converted at the rate in force; None if neither."""
    for price in prices:
        if price.currency == currency:
            return price, price, None
    for price in prices:
        rate = current_rate(session, price.currency, currency)
        if rate is not None:
            return price, convert(price, currency, rate.rate_micros), rate.rate_micros
    return None


def rates(session: Session) -> list[ExchangeRate]:
    """The rate in force for each pair."""
    latest: dict[tuple[str, str], ExchangeRate] = {}
    for rate in session.scalars(
        select(ExchangeRate).order_by(ExchangeRate.created_at, ExchangeRate.id)
    ):
        latest[(rate.base, rate.quote)] = rate
    return list(latest.values())
