"""Stores: where a customer can buy a SIM or renew in person, and when each is open."""

from __future__ import annotations

from sqlalchemy import JSON, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin

NEAREST_KINDS = ("mtr", "crossing")


class Store(IdMixin, CreatedMixin, Base):
    """One store. Names, addresses and the nearest station are by language ({"en", "zh-Hans",
    "zh-Hant"}); the district is one of `service.DISTRICTS`, by its English name.

    Opening hours are local time (Hong Kong and Shenzhen keep UTC+8) per weekday:
    {"mon": [["10:00", "22:00"]], ..., "sun": []} (closed); an end of "24:00" is midnight, an end
    before its start is past midnight. Coordinates are integer micro-degrees (exact, WGS 84).
    """

    __tablename__ = "stores"
    __table_args__ = (
        CheckConstraint("nearest_kind IN " + str(NEAREST_KINDS), name="nearest_kind"),
        CheckConstraint(
            "latitude_e6 BETWEEN -90000000 AND 90000000"
            " AND longitude_e6 BETWEEN -180000000 AND 180000000",
            name="coordinates",
        ),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)  # stable, e.g. "lo-wu"
    names: Mapped[dict[str, str]] = mapped_column(JSON)
    district: Mapped[str] = mapped_column(String(40))
    addresses: Mapped[dict[str, str]] = mapped_column(JSON)
    hours: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON)
    nearest_kind: Mapped[str] = mapped_column(String(16))  # an MTR station or a border crossing
    nearest_names: Mapped[dict[str, str]] = mapped_column(JSON)
    latitude_e6: Mapped[int]
    longitude_e6: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names["en"]

    def address(self, language: str) -> str:
        return self.addresses.get(language) or self.addresses["en"]

    def nearest(self, language: str) -> str:
        return self.nearest_names.get(language) or self.nearest_names["en"]

    def geo_uri(self) -> str:
        """The store's place as a `geo:` link (RFC 5870): the phone's own map app opens it."""
        return f"geo:{degrees(self.latitude_e6)},{degrees(self.longitude_e6)}"


def degrees(micro: int) -> str:
    """Micro-degrees as decimal degrees, exactly: -1500000 -> "-1.500000"."""
    whole, fraction = divmod(abs(micro), 1_000_000)
    return f"{'-' if micro < 0 else ''}{whole}.{fraction:06d}"
