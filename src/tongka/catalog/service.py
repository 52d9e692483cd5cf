"""The catalog: which packs are on sale, where, and at what list price."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.catalog.models import Pack, PackPrice, PackPriceChange
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _
from tongka.money import CURRENCIES, EXPONENT, GB, MB, Money
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


class PackCodeTaken(Conflict):
    code = "pack_code_taken"
    message = _("A pack with this code already exists.")


class PriceInvalid(Unprocessable):
    code = "price_invalid"
    message = _("Enter a price above zero, like 48 or 48.50.")


class VolumeInvalid(Unprocessable):
    code = "volume_invalid"
    message = _("Enter a data volume like 5 GB or 500 MB (1 GB = 1024 MB).")


class SaleWindowInvalid(Unprocessable):
    code = "sale_window_invalid"
    message = _("The sale must end after it starts.")


ZONES = ("mainland", "hk", "both")
CHANNELS = ("app", "web", "store")


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
    changed_by: str = "cli",
) -> Pack:
    """Create a pack, or update the one with this code (the demo loader); its prices through
    `set_price`, so the price history starts with its first prices."""
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
    session.flush()
    for currency, amount in prices.items():
        set_price(session, pack, currency, amount, changed_by)
    return pack


# --- operating the catalog (the console) ---------------------------------------------------------

_VOLUME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GB|MB|G|M)\s*$", re.IGNORECASE)


def parse_volume(text: str) -> int:
    """A volume as a person writes it ("5 GB", "1.5GB", "500 MB") in bytes; 1 GB = 1024 MB."""
    found = _VOLUME.match(text or "")
    if not found:
        raise VolumeInvalid()
    number, unit = Decimal(found.group(1)), found.group(2).upper()
    size = number * (GB if unit.startswith("G") else MB)
    if size <= 0 or size != int(size):
        raise VolumeInvalid()
    return int(size)


def parse_price(text: str, currency: str) -> int:
    """A price as a person writes it in major units ("48", "48.50") in minor units; above zero."""
    try:
        major = Decimal((text or "").strip().replace(",", ""))
    except InvalidOperation:
        raise PriceInvalid() from None
    minor = major * 10 ** EXPONENT[currency]
    if not major.is_finite() or minor <= 0 or minor != int(minor):
        raise PriceInvalid()
    return int(minor)


def all_packs(session: Session) -> list[Pack]:
    return list(
        session.scalars(select(Pack).order_by(Pack.zone, Pack.volume_bytes, Pack.validity_days))
    )


def get_pack(session: Session, pack_id: uuid.UUID) -> Pack:
    pack = session.get(Pack, pack_id)
    if pack is None:
        raise PackNotFound()
    return pack


def _check_window(starts: datetime | None, ends: datetime | None) -> None:
    if starts and ends and ends <= starts:
        raise SaleWindowInvalid()


def create_pack(
    session: Session,
    *,
    code: str,
    names: dict[str, str],
    zone: str,
    volume_bytes: int,
    validity_days: int,
    prices: dict[str, int],
    channels: list[str],
    sale_starts_at: datetime | None,
    sale_ends_at: datetime | None,
    changed_by: str,
) -> Pack:
    """A new pack; its first prices go into the price history too."""
    if session.scalar(select(Pack.id).where(Pack.code == code)) is not None:
        raise PackCodeTaken()
    _check_window(sale_starts_at, sale_ends_at)
    if any(amount <= 0 for amount in prices.values()):
        raise PriceInvalid()
    pack = Pack(
        code=code,
        names=names,
        zone=zone,
        volume_bytes=volume_bytes,
        validity_days=validity_days,
        channels=list(channels),
        sale_starts_at=sale_starts_at,
        sale_ends_at=sale_ends_at,
        active=True,
    )
    session.add(pack)
    session.flush()
    for currency, amount in prices.items():
        set_price(session, pack, currency, amount, changed_by)
    return pack


@dataclass(frozen=True)
class PackEdit:
    names: dict[str, str]
    channels: list[str]
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    active: bool


def edit_pack(session: Session, pack: Pack, edit: PackEdit) -> None:
    """Names, channels, sale window and whether it is on sale at all; not its volume or validity
    (a different pack is a new code)."""
    _check_window(edit.sale_starts_at, edit.sale_ends_at)
    pack.names = dict(edit.names)
    pack.channels = list(edit.channels)
    pack.sale_starts_at, pack.sale_ends_at = edit.sale_starts_at, edit.sale_ends_at
    pack.active = edit.active
    session.flush()


def set_price(
    session: Session, pack: Pack, currency: str, amount: int, changed_by: str
) -> PackPriceChange | None:
    """The pack's list price in `currency` becomes `amount` (minor units), written to the price
    history; None when it already was. Orders keep the price they were placed at."""
    if currency not in CURRENCIES:
        raise CurrencyNotOffered(currency=currency)
    if amount <= 0:
        raise PriceInvalid()
    price = session.scalar(
        select(PackPrice)
        .where(PackPrice.pack_id == pack.id, PackPrice.currency == currency)
        .with_for_update()
    )
    old = None if price is None else price.amount
    if old == amount:
        return None
    if price is None:
        pack.prices.append(PackPrice(currency=currency, amount=amount))
    else:
        price.amount = amount
    change = PackPriceChange(
        pack_id=pack.id,
        currency=currency,
        old_amount=old,
        new_amount=amount,
        at=clock.now(),
        changed_by=changed_by[:32],
    )
    session.add(change)
    session.flush()
    return change


def price_history(session: Session, pack_id: uuid.UUID) -> list[PackPriceChange]:
    """The pack's price changes, newest first."""
    return list(
        session.scalars(
            select(PackPriceChange)
            .where(PackPriceChange.pack_id == pack_id)
            .order_by(PackPriceChange.at.desc(), PackPriceChange.id.desc())
        )
    )
