"""The store finder, /stores: where to buy a SIM or renew in person, and whether each store is open.

Who may call: anyone. The page says the same to everyone in a language, so caches may keep it a
minute (`web.public_page`): "open now" is never more than that old.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Annotated, Any

from babel.dates import get_day_names
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tongka import clock, web
from tongka.deps import SessionDep
from tongka.i18n import _, babel_locale, gettext
from tongka.stores import service
from tongka.stores.models import Store
from tongka.stores.service import WEEKDAYS, Opening

router = APIRouter(tags=["stores"])

NEAREST = {"mtr": _("Nearest MTR station: {name}"), "crossing": _("Border crossing: {name}")}
CLOSED = _("Closed")
EVERY_DAY = _("Every day")


def _clock(moment: datetime, closing: bool) -> str:
    """HH:MM; closing at midnight is 24:00, as timetables here write it."""
    if closing and moment.time() == time(0):
        return "24:00"
    return moment.strftime("%H:%M")


def status(state: Opening, now: datetime, language: str) -> str:
    """ "Open now · closes at 22:00", "Closed · opens at 10:00 tomorrow", in the reader's language."""
    local = now.astimezone(service.LOCAL_TIME)
    at = state.change_at
    if at is None:
        return gettext(_("Open 24 hours") if state.open else CLOSED, language)
    day = get_day_names("wide", locale=babel_locale(language))[at.weekday()]
    if state.open:
        clock_time = _clock(at, closing=True)
        if at - local < timedelta(days=1):
            return gettext(_("Open now · closes at {time}"), language, time=clock_time)
        return gettext(_("Open now · closes {day} at {time}"), language, day=day, time=clock_time)
    clock_time = _clock(at, closing=False)
    days = (at.date() - local.date()).days
    if days == 0:
        return gettext(_("Closed · opens at {time}"), language, time=clock_time)
    if days == 1:
        return gettext(_("Closed · opens at {time} tomorrow"), language, time=clock_time)
    return gettext(_("Closed · opens {day} at {time}"), language, day=day, time=clock_time)


def _days(first: int, last: int, names: Mapping[int, str], language: str) -> str:
    if (first, last) == (0, 6):
        return gettext(EVERY_DAY, language)
    return names[first] if first == last else f"{names[first]}–{names[last]}"


def hours_rows(
    hours: dict[str, list[list[str]]], today: int, language: str
) -> list[dict[str, Any]]:
    """The week as rows "Mon–Fri 10:00–22:00", days with the same hours together; today's marked."""
    names = get_day_names("abbreviated", locale=babel_locale(language))
    rows: list[dict[str, Any]] = []
    first = 0
    for last in range(7):
        if last < 6 and hours[WEEKDAYS[last + 1]] == hours[WEEKDAYS[first]]:
            continue
        spans = hours[WEEKDAYS[first]]
        rows.append(
            {
                "days": _days(first, last, names, language),
                "hours": ", ".join(f"{a}–{b}" for a, b in spans) or gettext(CLOSED, language),
                "today": first <= today <= last,
            }
        )
        first = last + 1
    return rows


def _view(store: Store, now: datetime, language: str) -> dict[str, Any]:
    state = service.opening(store.hours, now)
    return {
        "code": store.code,
        "name": store.name(language),
        "district": gettext(store.district, language),
        "address": store.address(language),
        "nearest": gettext(NEAREST[store.nearest_kind], language, name=store.nearest(language)),
        "open": state.open,
        "status": status(state, now, language),
        "hours": hours_rows(store.hours, now.astimezone(service.LOCAL_TIME).weekday(), language),
        "geo": store.geo_uri(),
    }


@router.get("/stores", response_class=HTMLResponse, include_in_schema=False)
def stores_page(
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    district: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    """Anyone: the stores (of one district): address, opening hours, open now or not, nearest station."""
    now = clock.now()
    language = visitor.language
    chosen = district or None
    return web.public_page(
        request,
        visitor,
        "web/stores.html",
        {
            "districts": [(d, gettext(d, language)) for d in service.districts(session)],
            "district": chosen,
            "stores": [_view(s, now, language) for s in service.active_stores(session, chosen)],
        },
    )
