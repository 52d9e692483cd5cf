from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator, model_validator

from tongka.promotion import pricing
from tongka.promotion.models import Offer, Quote

TIME_ZONES = ("Asia/Hong_Kong", "Asia/Shanghai")  # both UTC+8, no daylight saving


class QuoteIn(BaseModel):
    line_id: uuid.UUID
    pack_id: uuid.UUID
    currency: str = Field(pattern="^(CNY|HKD)$")
    coupon_code: str | None = Field(
        default=None, max_length=40, description="case-insensitive; hyphens optional"
    )


class QuoteOut(BaseModel):
    id: uuid.UUID
    line_id: uuid.UUID
    pack_id: uuid.UUID
    channel: str
    amount: int = Field(description="what an order made from this quote charges, minor units")
    currency: str
    price: dict[str, Any] = Field(
        description="the breakdown: list, offers, subtotal, exchange_rate?, total, bonus_bytes"
    )
    lines: list[str] = Field(
        description="the breakdown for people, in the caller's language, total last"
    )
    coupon_applied: bool | None = Field(
        description="null: no coupon given; false: a better offer won"
    )
    status: str
    expires_at: datetime = Field(description="the price holds until then (15 minutes)")

    @classmethod
    def of(cls, quote: Quote, coupon_offer_code: str | None, language: str) -> QuoteOut:
        codes = [o["code"] for o in quote.breakdown.get("offers", [])]
        return cls(
            id=quote.id,
            line_id=quote.line_id,
            pack_id=quote.pack_id,
            channel=quote.channel,
            amount=quote.amount,
            currency=quote.currency,
            price=quote.breakdown,
            lines=[
                *pricing.describe(quote.breakdown, language),
                pricing.total_line(quote.breakdown, language),
            ],
            coupon_applied=None if quote.coupon_code_id is None else coupon_offer_code in codes,
            status=quote.status,
            expires_at=quote.expires_at,
        )


class Tier(BaseModel):
    currency: str = Field(pattern="^(CNY|HKD)$")
    min: int = Field(gt=0, description="list price at least this (minor units)")
    off: int = Field(gt=0, description="saves this (minor units)")


class OfferIn(BaseModel):
    """An offer as the operator describes it; times without an offset are in `time_zone`."""

    code: str = Field(pattern="^[a-z0-9][a-z0-9-]{1,39}$")
    names: dict[str, str] = Field(
        description='by language: {"en": ..., "zh-Hans": ..., "zh-Hant": ...}'
    )
    kind: Literal["first_topup", "spend_threshold", "bonus_data", "coupon"]
    stackable: bool = False
    percent_off: float | None = Field(
        default=None, gt=0, le=100, description="e.g. 12.5; two decimals at most"
    )
    amount_off: dict[str, int] | None = Field(
        default=None, description='per list currency: {"HKD": 1000}'
    )
    tiers: list[Tier] | None = None
    bonus_bytes: int | None = Field(default=None, gt=0)
    bonus_zone: Literal["mainland", "hk", "both"] | None = None
    bonus_validity_days: int | None = Field(default=None, gt=0)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    time_zone: Literal["Asia/Hong_Kong", "Asia/Shanghai"] = "Asia/Hong_Kong"
    channels: list[Literal["app", "web", "store"]] | None = None
    currencies: list[Literal["CNY", "HKD"]] | None = None
    zones: list[Literal["mainland", "hk", "both"]] | None = None
    pack_codes: list[str] | None = None
    regions: list[Literal["hk", "mainland"]] | None = None
    new_customers_only: bool = False
    per_customer_limit: int | None = Field(default=None, gt=0)
    max_redemptions: int | None = Field(default=None, ge=0)
    max_discount: dict[str, int] | None = Field(
        default=None, description='cap on discount given, per currency: {"HKD": 100000}'
    )

    @field_validator("names")
    @classmethod
    def _has_english(cls, names: dict[str, str]) -> dict[str, str]:
        if not names.get("en"):
            raise ValueError("names need at least an English one")
        return names

    @field_validator("amount_off", "max_discount")
    @classmethod
    def _per_currency(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and (
            set(value) - {"CNY", "HKD"} or any(v < 0 for v in value.values())
        ):
            raise ValueError("amounts are per currency (CNY, HKD), in minor units, not negative")
        return value

    @model_validator(mode="after")
    def _gives_one_thing(self) -> OfferIn:
        if self.kind == "bonus_data":
            if not (self.bonus_bytes and self.bonus_zone and self.bonus_validity_days):
                raise ValueError("bonus data needs bonus_bytes, bonus_zone and bonus_validity_days")
        elif self.kind == "spend_threshold":
            if not self.tiers:
                raise ValueError("a spend-threshold offer needs tiers")
        elif (self.percent_off is None) == (not self.amount_off):
            raise ValueError("a discount is either percent_off or amount_off")
        if self.percent_off is not None and round(self.percent_off * 100) != self.percent_off * 100:
            raise ValueError("percent_off has at most two decimals")
        if (
            self.starts_at
            and self.ends_at
            and self.local(self.ends_at) <= self.local(self.starts_at)
        ):
            raise ValueError("ends_at must be after starts_at")
        return self

    def local(self, moment: datetime) -> datetime:
        """An aware time: as given, or in the offer's time zone when given without an offset."""
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(self.time_zone))


class OfferOut(BaseModel):
    """An offer as the public sees it."""

    code: str
    name: str
    names: dict[str, str]
    kind: str
    stackable: bool
    percent_off: float | None
    amount_off: dict[str, int] | None
    tiers: list[dict[str, Any]] | None
    bonus_bytes: int | None
    bonus_zone: str | None
    bonus_validity_days: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    time_zone: str
    channels: list[str] | None
    currencies: list[str] | None
    zones: list[str] | None
    pack_codes: list[str] | None
    regions: list[str] | None
    new_customers_only: bool

    @classmethod
    def fields_of(cls, offer: Offer, language: str) -> dict[str, Any]:
        tz = ZoneInfo(offer.time_zone)
        return {
            "code": offer.code,
            "name": offer.name(language),
            "names": offer.names,
            "kind": offer.kind,
            "stackable": offer.stackable,
            "percent_off": None if offer.percent_off_bp is None else offer.percent_off_bp / 100,
            "amount_off": offer.amount_off,
            "tiers": offer.tiers,
            "bonus_bytes": offer.bonus_bytes,
            "bonus_zone": offer.bonus_zone,
            "bonus_validity_days": offer.bonus_validity_days,
            "starts_at": offer.starts_at.astimezone(tz) if offer.starts_at else None,
            "ends_at": offer.ends_at.astimezone(tz) if offer.ends_at else None,
            "time_zone": offer.time_zone,
            "channels": offer.channels,
            "currencies": offer.currencies,
            "zones": offer.zones,
            "pack_codes": offer.pack_codes,
            "regions": offer.regions,
            "new_customers_only": offer.new_customers_only or offer.kind == "first_topup",
        }

    @classmethod
    def of(cls, offer: Offer, language: str) -> OfferOut:
        return cls(**cls.fields_of(offer, language))


class BudgetOut(BaseModel):
    currency: str
    max_discount: int | None
    spent: int = Field(description="discount held or given, minor units")


class OfferAdminOut(OfferOut):
    id: uuid.UUID
    status: str
    per_customer_limit: int | None
    max_redemptions: int | None
    redeemed: int = Field(description="redemptions held or confirmed")
    budgets: list[BudgetOut]
    created_by: str
    created_at: datetime


class CodesIn(BaseModel):
    count: int = Field(
        default=1, ge=1, le=10000, description="random single-use (or max_uses) codes to make"
    )
    max_uses: int | None = Field(
        default=1, ge=1, description="uses per code; null: shared, bounded by the budget"
    )
    code: str | None = Field(
        default=None, max_length=40, description="one shared code of your choosing instead"
    )
    batch: str | None = Field(default=None, max_length=40)


class CodesOut(BaseModel):
    batch: str
    codes: list[str] = Field(description="shown this once: only keyed hashes are kept")


class RedemptionOut(BaseModel):
    id: uuid.UUID
    offer_id: uuid.UUID
    account_id: uuid.UUID
    username: str
    quote_id: uuid.UUID
    order_id: uuid.UUID | None
    coupon_hint: str | None
    currency: str
    discount: int
    bonus_bytes: int
    status: str
    release_reason: str | None
    created_at: datetime
    settled_at: datetime | None


class ReportRow(BaseModel):
    code: str
    kind: str
    status: str
    confirmed: int
    held: int
    released: int
    discount_given: dict[str, int] = Field(description="confirmed, per currency, minor units")
    discount_held: dict[str, int]
    bonus_bytes_given: int
    max_redemptions: int | None
    redemptions_left: int | None
