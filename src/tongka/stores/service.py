"""The store finder's rules: the districts, opening hours (read from the import's short form, and
whether a store is open at a moment), the store list, and its import (all or nothing).

A store's opening hours are local time: Hong Kong and Shenzhen both keep UTC+8, without
daylight saving, so one time zone serves both sides of the border.
"""

from __future__ import annotations

import csv
import itertools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.errors import NotFound
from tongka.i18n import _
from tongka.stores.models import Store

LOCAL_TIME = ZoneInfo("Asia/Hong_Kong")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order

# Where a store may be, in the order the finder lists them: Hong Kong's 18 districts (Hong Kong
# Island, Kowloon, the New Territories), then the Shenzhen districts with a crossing to Hong Kong.
# A row naming another district is refused, so a misspelling never splits the finder's list.
DISTRICTS = (
    _("Central and Western"),
    _("Wan Chai"),
    _("Eastern"),
    _("Southern"),
    _("Yau Tsim Mong"),
    _("Sham Shui Po"),
    _("Kowloon City"),
    _("Wong Tai Sin"),
    _("Kwun Tong"),
    _("Kwai Tsing"),
    _("Tsuen Wan"),
    _("Tuen Mun"),
    _("Yuen Long"),
    _("North"),
    _("Tai Po"),
    _("Sha Tin"),
    _("Sai Kung"),
    _("Islands"),
    _("Shenzhen Luohu"),
    _("Shenzhen Futian"),
    _("Shenzhen Nanshan"),
    _("Shenzhen Yantian"),
)


# --- opening hours --------------------------------------------------------------------------------

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _days(text: str) -> list[str]:
    """`daily`, `mon`, `mon-fri`, `sat,sun`, `fri-mon` (a range may wrap past Sunday)."""
    if text == "daily":
        return list(WEEKDAYS)
    days: list[str] = []
    for item in text.split(","):
        first, _sep, last = item.strip().partition("-")
        last = last or first
        if first not in WEEKDAYS or last not in WEEKDAYS:
            raise ValueError(f"{item.strip()!r} is not a day or a range of days (mon-fri, sat,sun)")
        i, j = WEEKDAYS.index(first), WEEKDAYS.index(last)
        days += [WEEKDAYS[(i + k) % 7] for k in range((j - i) % 7 + 1)]
    return days


def _spans(text: str) -> list[list[str]]:
    """`10:00-22:00`, `09:00-13:00,14:00-18:00`, `18:00-02:00` (past midnight), `06:30-24:00`."""
    spans: list[list[str]] = []
    for item in text.split(","):
        start, _sep, end = item.strip().partition("-")
        if not _CLOCK.match(start) or not (_CLOCK.match(end) or end == "24:00") or start == end:
            raise ValueError(f"{item.strip()!r} is not opening hours like 10:00-22:00")
        spans.append([start, end])
    spans.sort(key=lambda span: _minutes(span[0]))
    for (a_start, a_end), (b_start, _b_end) in itertools.pairwise(spans):
        # Only the day's last span may run past midnight.
        if _minutes(a_end) <= _minutes(a_start) or _minutes(a_end) > _minutes(b_start):
            raise ValueError(f"opening hours {text.strip()!r} overlap")
    return spans


def parse_hours(text: str) -> dict[str, list[list[str]]]:
    """Opening hours from the import's short form to the stored one ({"mon": [["10:00", "22:00"]],
    ..., "sun": []}): `mon-fri 10:00-22:00; sat,sun 11:00-23:00; daily 06:30-24:00`,
    `fri-sat 11:00-02:00` (past midnight), `sun closed`. A day not named is closed."""
    hours: dict[str, list[list[str]]] = {day: [] for day in WEEKDAYS}
    named: set[str] = set()
    for part in text.replace("–", "-").lower().split(";"):
        days_text, _sep, spans_text = part.strip().partition(" ")
        if not days_text:
            continue
        days = _days(days_text)
        if twice := named.intersection(days):
            raise ValueError(f"{', '.join(sorted(twice, key=WEEKDAYS.index))} given twice")
        named.update(days)
        spans = [] if spans_text.strip() == "closed" else _spans(spans_text)
        for day in days:
            hours[day] = spans
    if not any(hours.values()):
        raise ValueError("open on no day (a closed store is imported with active=no)")
    return hours


@dataclass(frozen=True)
class Opening:
    """Whether a store is open at a moment, and when that changes (local time). `change_at` is
    None when nothing changes within the coming week: open round the clock, or no hours at all."""

    open: bool
    change_at: datetime | None


def _at(day: date, clock: str) -> datetime:
    return datetime.combine(day, time(), LOCAL_TIME) + timedelta(minutes=_minutes(clock))


def opening(hours: dict[str, list[list[str]]], now: datetime) -> Opening:
    """Open or closed at `now`, and until when: yesterday's hours count (a night past midnight),
    and spans that meet (23:00-24:00, then 00:00-02:00) are one."""
    local = now.astimezone(LOCAL_TIME)
    first = local.date() - timedelta(days=1)
    horizon = _at(first + timedelta(days=9), "00:00")
    spans: list[tuple[datetime, datetime]] = []
    for k in range(9):
        day = first + timedelta(days=k)
        for start, end in hours.get(WEEKDAYS[day.weekday()], []):
            begins, ends = _at(day, start), _at(day, end)
            spans.append((begins, ends if ends > begins else ends + timedelta(days=1)))
    merged: list[tuple[datetime, datetime]] = []
    for begins, ends in sorted(spans):
        if merged and begins <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], ends))
        else:
            merged.append((begins, ends))
    for begins, ends in merged:
        if begins <= local < ends:
            return Opening(True, None if ends >= horizon else ends)
        if local < begins:
            return Opening(False, begins)
    return Opening(False, None)


# --- the store list -------------------------------------------------------------------------------


def _in_district_order(store: Store) -> tuple[int, str]:
    known = store.district in DISTRICTS
    return (DISTRICTS.index(store.district) if known else len(DISTRICTS), store.code)


def active_stores(session: Session, district: str | None = None) -> list[Store]:
    """The active stores (of one district), in the finder's district order."""
    query = select(Store).where(Store.active.is_(True))
    if district:
        query = query.where(Store.district == district)
    return sorted(session.scalars(query), key=_in_district_order)


def districts(session: Session) -> list[str]:
    """The districts with an active store, in the finder's order."""
    present = set(session.scalars(select(Store.district).where(Store.active.is_(True))))
    return [d for d in DISTRICTS if d in present]


# --- the import ----------------------------------------------------------------------------------


def _district(name: str) -> str:
    for known in DISTRICTS:
        if name.casefold() == known.casefold():
            return known
    raise ValueError(
        f"unknown district {name!r}: one of Hong Kong's 18 (e.g. Yau Tsim Mong, North) "
        "or Shenzhen Luohu, Futian, Nanshan, Yantian"
    )


Text = Annotated[str, Field(min_length=1, max_length=200)]


class StoreRow(BaseModel):
    """One row of the import file: names, address and nearest station in the three languages."""

    model_config = ConfigDict(str_strip_whitespace=True)

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")
    name_en: Text
    name_zh_hans: Text
    name_zh_hant: Text
    district: Annotated[str, BeforeValidator(_district)]
    address_en: Text
    address_zh_hans: Text
    address_zh_hant: Text
    hours: Annotated[dict[str, list[list[str]]], BeforeValidator(parse_hours)]
    nearest_kind: Literal["mtr", "crossing"]
    nearest_en: Text
    nearest_zh_hans: Text
    nearest_zh_hant: Text
    latitude: Decimal = Field(ge=-90, le=90, decimal_places=6)
    longitude: Decimal = Field(ge=-180, le=180, decimal_places=6)
    active: bool = True

    def fields(self) -> dict[str, Any]:
        """The row as the Store's columns."""

        def by_language(prefix: str) -> dict[str, str]:
            return {
                "en": getattr(self, f"{prefix}_en"),
                "zh-Hans": getattr(self, f"{prefix}_zh_hans"),
                "zh-Hant": getattr(self, f"{prefix}_zh_hant"),
            }

        return {
            "names": by_language("name"),
            "district": self.district,
            "addresses": by_language("address"),
            "hours": self.hours,
            "nearest_kind": self.nearest_kind,
            "nearest_names": by_language("nearest"),
            "latitude_e6": int(self.latitude * 1_000_000),
            "longitude_e6": int(self.longitude * 1_000_000),
            "active": self.active,
        }


COLUMNS = [name for name in StoreRow.model_fields if name != "active"]


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number in the file, reason)


def _reasons(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )


def import_stores(session: Session, rows: Iterable[str]) -> ImportReport:
    """Adds or updates stores by code from CSV text (the columns of `StoreRow`; `active` may be
    left out). Every row is checked first: if any is wrong, each problem is reported with its line
    number and nothing is written. Stores not in the file are left as they are."""
    report = ImportReport()
    reader = csv.DictReader(rows)
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in StoreRow.model_fields]
    if missing or unknown:
        for what, names in (("missing", missing), ("unknown", unknown)):
            if names:
                report.errors.append((1, f"{what} columns: {', '.join(names)}"))
        return report
    checked: list[StoreRow] = []
    lines: dict[str, int] = {}
    for cells in reader:
        if None in cells:
            report.errors.append((reader.line_num, f"more cells than the {len(header)} columns"))
            continue
        try:
            row = StoreRow.model_validate({k: v for k, v in cells.items() if v})
        except ValidationError as error:
            report.errors.append((reader.line_num, _reasons(error)))
            continue
        if row.code in lines:
            report.errors.append(
                (reader.line_num, f"code {row.code} is on line {lines[row.code]} too")
            )
            continue
        lines[row.code] = reader.line_num
        checked.append(row)
    if not checked and not report.errors:
        report.errors.append((1, "no stores in the file"))
    if report.errors:
        return report
    existing = {s.code: s for s in session.scalars(select(Store).where(Store.code.in_(lines)))}
    for row in checked:
        values = row.fields()
        store = existing.get(row.code)
        if store is None:
            session.add(Store(code=row.code, **values))
            report.added += 1
        elif all(getattr(store, k) == v for k, v in values.items()):
            report.unchanged += 1
        else:
            for k, v in values.items():
                setattr(store, k, v)
            report.updated += 1
    session.flush()
    return report


class StoreNotFound(NotFound):
    code = "store_not_found"
    message = _("No such store.")


def all_stores(session: Session) -> list[Store]:
    """Every store, open or closed for good, by code (the console)."""
    return list(session.scalars(select(Store).order_by(Store.code)))


def get(session: Session, store_id: uuid.UUID) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise StoreNotFound()
    return store
