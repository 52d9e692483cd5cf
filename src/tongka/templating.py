"""Jinja2 templates shared by every HTML page."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from tongka.catalog.models import Pack
from tongka.money import Money, currency, format_bytes

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["bytes"] = format_bytes


def pack_rows(packs: list[Pack], language: str) -> list[dict[str, object]]:
    """Packs as a price list for people, the reader's own currency first (CNY for Simplified Chinese, else HKD)."""
    own = "CNY" if language == "zh-Hans" else "HKD"
    return [
        {
            "name": p.name(language),
            "zone": p.zone,
            "volume": format_bytes(p.volume_bytes),
            "days": p.validity_days,
            "prices": [
                Money(x.amount, currency(x.currency)).format(language)
                for x in sorted(p.prices, key=lambda x: x.currency != own)
            ],
        }
        for p in packs
    ]
