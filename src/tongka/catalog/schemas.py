from __future__ import annotations

import uuid

from pydantic import BaseModel

from tongka.catalog.models import Pack


class PriceOut(BaseModel):
    currency: str
    amount: int  # minor units: 4800 HKD is HK$48.00


class PackOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    zone: str
    volume_bytes: int
    volume: str  # for people: "5 GB" (1 GB = 1024³ bytes)
    validity_days: int
    channels: list[str]
    prices: list[PriceOut]

    @classmethod
    def of(cls, pack: Pack, language: str) -> PackOut:
        from tongka.money import format_bytes

        return cls(
            id=pack.id,
            code=pack.code,
            name=pack.name(language),
            zone=pack.zone,
            volume_bytes=pack.volume_bytes,
            volume=format_bytes(pack.volume_bytes),
            validity_days=pack.validity_days,
            channels=pack.channels,
            prices=[PriceOut(currency=p.currency, amount=p.amount) for p in pack.prices],
        )
