"""The one pricing function: list price, the offers applied, total, bonus data.

Rules (also in docs/ARCHITECTURE.md, "Promotions"):

* Discounts apply to the **list price in its own currency**, before any conversion; the
  discounted subtotal is then converted once, at the rate locked on the order
  (`fx.convert`, half up). Thresholds and fixed amounts are per list currency.
* A percentage is in basis points (1000 = 10 %) of the list price, rounded **half up** to
  the minor unit (CNY and HKD both have 2 minor digits: 分 / 仙). Fixed amounts and 满减
  tiers are exact minor units. Several stackable percentages each take their share of
  the list price (not of each other's remainder), so the order they apply in is moot.
* Stacking: the best single non-stackable discount (ties: an offer that needs no coupon,
  then the offer code), plus every stackable discount, plus all bonus data. The discounts
  together never exceed the list price: the total is never below zero.

The breakdown is a plain dict (integers and strings only, as receipts sign it); the
order, the quote, the API, the receipt and the email all show this same dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from tongka.fx import service as fx
from tongka.i18n import _, gettext
from tongka.money import Money, format_bytes


class OfferTerms(Protocol):
    """What pricing needs of an offer (an `Offer` row, or anything shaped like one)."""

    code: str
    names: dict[str, str]
    kind: str
    stackable: bool
    percent_off_bp: int | None
    amount_off: dict[str, int] | None
    tiers: list[dict[str, Any]] | None
    bonus_bytes: int | None
    bonus_zone: str | None
    bonus_validity_days: int | None


@dataclass(frozen=True)
class Applied:
    offer: OfferTerms
    discount: int  # minor units of the list currency
    bonus_bytes: int = 0


@dataclass(frozen=True)
class Price:
    list_price: Money
    applied: list[Applied]
    subtotal: Money  # list price less the discounts, still in the list currency
    total: Money  # what the customer pays, in their currency
    rate_micros: int | None = None
    breakdown: dict[str, Any] = field(default_factory=dict)

    @property
    def discount(self) -> int:
        return sum(a.discount for a in self.applied)


def percent_of(amount: int, basis_points: int) -> int:
    """`amount × bp / 10000`, rounded half up to the minor unit (amounts are never negative)."""
    return (amount * basis_points + 5000) // 10000


def discount_of(offer: OfferTerms, list_price: Money) -> int:
    """What the offer alone takes off this list price (0 if nothing), never more than the price."""
    amount = list_price.amount
    if offer.kind == "bonus_data":
        return 0
    if offer.kind == "spend_threshold":
        reached = [
            int(t["off"])
            for t in offer.tiers or ()
            if t["currency"] == list_price.currency and amount >= int(t["min"])
        ]
        off = max(reached, default=0)
    elif offer.percent_off_bp:
        off = percent_of(amount, offer.percent_off_bp)
    else:
        off = (offer.amount_off or {}).get(list_price.currency, 0)
    return max(0, min(off, amount))


def gives_something(offer: OfferTerms, list_price: Money) -> bool:
    if offer.kind == "bonus_data":
        return bool(offer.bonus_bytes)
    return discount_of(offer, list_price) > 0


def price(
    list_price: Money, currency: str, rate_micros: int | None, offers: Sequence[OfferTerms]
) -> Price:
    """The price of one pack for one customer, given the offers that customer may have now."""
    if rate_micros is None and currency != list_price.currency:
        raise ValueError("a price in another currency needs a rate")
    discounts = [(o, d) for o in offers if (d := discount_of(o, list_price)) > 0]
    single = sorted(
        (x for x in discounts if not x[0].stackable),
        key=lambda x: (-x[1], x[0].kind == "coupon", x[0].code),
    )[:1]
    stacked = sorted((x for x in discounts if x[0].stackable), key=lambda x: x[0].code)
    applied: list[Applied] = []
    left = list_price.amount
    for offer, off in single + stacked:
        off = min(off, left)  # the total never goes below zero
        if off > 0:
            applied.append(Applied(offer, off))
            left -= off
    applied += [
        Applied(o, 0, o.bonus_bytes or 0)
        for o in sorted(offers, key=lambda o: o.code)
        if o.kind == "bonus_data" and o.bonus_bytes
    ]
    subtotal = Money(left, list_price.currency)
    total = subtotal if rate_micros is None else fx.convert(subtotal, currency, rate_micros)
    result = Price(list_price, applied, subtotal, total, rate_micros)
    return Price(list_price, applied, subtotal, total, rate_micros, breakdown=to_dict(result))


def _money(m: Money) -> dict[str, Any]:
    return {"amount": m.amount, "currency": m.currency}


def to_dict(p: Price) -> dict[str, Any]:
    offers = []
    for a in p.applied:
        entry: dict[str, Any] = {
            "code": a.offer.code,
            "names": dict(a.offer.names),
            "kind": a.offer.kind,
            "amount": a.discount,
            "currency": p.list_price.currency,
        }
        if a.bonus_bytes:
            entry["bonus"] = {
                "bytes": a.bonus_bytes,
                "zone": a.offer.bonus_zone,
                "validity_days": a.offer.bonus_validity_days,
            }
        offers.append(entry)
    out: dict[str, Any] = {
        "list": _money(p.list_price),
        "offers": offers,
        "subtotal": _money(p.subtotal),
        "total": _money(p.total),
        "bonus_bytes": sum(a.bonus_bytes for a in p.applied),
    }
    if p.rate_micros is not None:
        out["exchange_rate"] = {
            "base": p.list_price.currency,
            "quote": p.total.currency,
            "rate": f"{Decimal(p.rate_micros).scaleb(-6):.6f}",
        }
    return out


def of_order(order: Any) -> dict[str, Any]:
    """An order's breakdown: the one it was made with, or for an order made before promotions, one without offers."""
    if order.breakdown is not None:
        return order.breakdown
    listed = Money(order.list_amount, order.list_currency)
    rate = order.fx_rate_micros if order.list_currency != order.currency else None
    return to_dict(Price(listed, [], listed, Money(order.amount, order.currency), rate))


# -- for people ----------------------------------------------------------------------------

ZONE_NAMES = {"mainland": _("Mainland"), "hk": _("Hong Kong"), "both": _("Mainland + Hong Kong")}
LIST_PRICE = _("List price: {price}")
OFFER_LINE = _("{offer}: −{amount}")
BONUS_LINE = _("{offer}: +{volume} of {zone} data, valid for {days} days")
SUBTOTAL = _("After offers: {price}")
EXCHANGE_RATE = _("Exchange rate: 1 {base} = {rate} {quote}")
TOTAL = _("Total: {price}")


def offer_name(entry: dict[str, Any], language: str) -> str:
    names = entry.get("names") or {}
    return str(names.get(language) or names.get("en") or entry["code"])


def bonus_text(bonus: dict[str, Any], language: str) -> str:
    """`+1 GB · Hong Kong · 30 days`-like text for a receipt row (without the offer's name)."""
    zone = gettext(ZONE_NAMES.get(bonus["zone"], bonus["zone"]), language)
    return f"+{format_bytes(bonus['bytes'])} · {zone} · " + gettext(
        _("{days} days"), language, days=bonus["validity_days"]
    )


def describe(breakdown: dict[str, Any], language: str) -> list[str]:
    """The breakdown as lines of text, without the total (the email says what was paid, the quote the total)."""

    def money(part: dict[str, Any]) -> str:
        return Money(part["amount"], part["currency"]).format(language)

    lines = [gettext(LIST_PRICE, language, price=money(breakdown["list"]))]
    offers = breakdown.get("offers", [])
    for entry in offers:
        name = offer_name(entry, language)
        if entry["amount"]:
            amount = money({"amount": entry["amount"], "currency": entry["currency"]})
            lines.append(gettext(OFFER_LINE, language, offer=name, amount=amount))
        if bonus := entry.get("bonus"):
            zone = gettext(ZONE_NAMES.get(bonus["zone"], bonus["zone"]), language)
            lines.append(
                gettext(
                    BONUS_LINE,
                    language,
                    offer=name,
                    volume=format_bytes(bonus["bytes"]),
                    zone=zone,
                    days=bonus["validity_days"],
                )
            )
    if any(e["amount"] for e in offers) and "exchange_rate" in breakdown:
        lines.append(gettext(SUBTOTAL, language, price=money(breakdown["subtotal"])))
    if fx_rate := breakdown.get("exchange_rate"):
        lines.append(
            gettext(
                EXCHANGE_RATE,
                language,
                base=fx_rate["base"],
                rate=fx_rate["rate"],
                quote=fx_rate["quote"],
            )
        )
    return lines


def total_line(breakdown: dict[str, Any], language: str) -> str:
    total = breakdown["total"]
    return gettext(
        TOTAL, language, price=Money(total["amount"], total["currency"]).format(language)
    )
