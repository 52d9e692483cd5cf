"""Quantities: money in integer minor units with an ISO 4217 currency, data in integer bytes.

One GB in tongka is 1024³ = 1,073,741,824 bytes (the way mainland and Hong Kong
carriers count packs: 1 GB = 1024 MB); the catalog and every page say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from babel.numbers import format_currency

Currency = Literal["CNY", "HKD"]
CURRENCIES: tuple[Currency, ...] = ("CNY", "HKD")
# Minor-unit exponent per currency (both are cents / 分 / 仙).
EXPONENT: dict[str, int] = {"CNY": 2, "HKD": 2}

# The units the ledger counts in, besides currencies: data, voice, SMS.
Unit = Literal["bytes", "seconds", "messages", "CNY", "HKD"]

KB = 1024
MB = 1024**2
GB = 1024**3
GB_DEFINITION = "1 GB = 1024 MB = 1,073,741,824 bytes"


def currency(code: str) -> Currency:
    """A code read from a row or a provider, as a Currency; one tongka does not keep is a ValueError."""
    for known in CURRENCIES:
        if code == known:
            return known
    raise ValueError(f"unknown currency {code}")


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units
    currency: Currency

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("money amounts are integers of minor units")
        if self.currency not in EXPONENT:
            raise ValueError(f"unknown currency {self.currency}")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError("cannot add different currencies")
        return Money(self.amount + other.amount, self.currency)

    def format(self, locale: str = "en") -> str:
        """For people: `HK$12.50`, `¥30.00`. Never parsed back."""
        major = self.amount / 10 ** EXPONENT[self.currency]
        return format_currency(major, self.currency, locale=locale.replace("-", "_"))


def format_bytes(n: int) -> str:
    """For people: binary units written GB/MB as carriers do (1 GB = 1024 MB)."""
    for size, name in ((GB, "GB"), (MB, "MB"), (KB, "KB")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.0f} {name}" if value == int(value) else f"{value:.2f} {name}"
    return f"{n} B"
