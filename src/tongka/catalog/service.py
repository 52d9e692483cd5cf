"""The catalog: which packs are on sale, where, and at what list price."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.catalog.models import Pack, PackPrice
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _
from tongka.money import CURRENCIES, Money
from tongka.money import currency as as_currency


class PackNotFound(NotFound):
    code = "pack_not_found"
    message = _("No such pack.")


class PackNotOnSale(Conflict):
    code = "pack_not_on_sale"
    message = _("This pack is not on sale here now.")


class CurrencyNotOffered(Unprocessable):
    code = "currency_not_offered"
    message = _("This pack has no price in {currency}.")


def on_sale(pack: Pack, channel: str, now: datetime) -> bool:
    return (
        pack.active
        # Auto-renew buys what the app sells: its rule was set in the app or on the site.
        and (channel in pack.channels or (channel == "auto" and "app" in pack.channels))
        and (pack.sale_starts_at is None or pack.sale_starts_at <= now)
        and (pack.sale_ends_at is None or now < pack.sale_ends_at)
    )


def packs_on_sale(session: Session, channel: str, now: datetime | None = None) -> list[Pack]:
    now = now or clock.now()
    packs = session.scalars(select(Pack).where(Pack.active.is_(True)))
    return sorted(
        (p for p in packs if on_sale(p, channel, now)),
        key=lambda p: (p.zone, p.volume_bytes, p.validity_days),
    )


def pack_for_sale(session: Session, pack_id: uuid.UUID, channel: str) -> Pack:
    """The pack, if it can be bought on `channel` now."""
    pack = session.get(Pack, pack_id)
    if pack is None:
        raise PackNotFound()
    if not on_sale(pack, channel, clock.now()):
        raise PackNotOnSale()
    return pack


def list_price(pack: Pack, currency: str) -> Money | None:
    """The catalog price in `currency`, if the pack has one."""
    amount = pack.price(currency) if currency in CURRENCIES else None
    return None if amount is None else Money(amount, as_currency(currency))


def upsert_pack(
    session: Session,
    *,
    code: str,
    names: dict[str, str],
    zone: str,
    volume_bytes: int,
    validity_days: int,
    prices: dict[str, int],
    channels: list[str],
) -> Pack:
    """Create a pack, or update the one with this code (the demo loader and operators use this)."""
    pack = session.scalar(select(Pack).where(Pack.code == code))
    if pack is None:
        pack = Pack(code=code)
        session.add(pack)
    pack.names, pack.zone, pack.volume_bytes, pack.validity_days = (
        names,
        zone,
        volume_bytes,
        validity_days,
    )
    pack.channels = list(channels)
    existing = {p.currency: p for p in pack.prices}
    for currency, amount in prices.items():
        if currency in existing:
            existing[currency].amount = amount
        else:
            pack.prices.append(PackPrice(currency=currency, amount=amount))
    session.flush()
    return pack
