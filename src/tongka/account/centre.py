"""The personal centre (`/account`) and binding a line (`/lines/bind`): pages of the web site.

Who may open them: the signed-in subscriber, on their own lines only (another's line is a 404).
What they show and do is the app API's: the balance of `GET /api/v1/lines/{line_id}/balance`
(`ledger.buckets.line_balance`), the usage of `GET /api/v1/lines/{line_id}/usage`
(`charging.service.usage_between`), and binding's two steps of `POST /api/v1/lines/bind` and
`.../confirm` (`account.lines`), with the same policy and limits; a refusal the subscriber can
act on (a wrong code, a resend too soon) is shown on the form.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from babel.dates import format_skeleton
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from tongka import clock, web
from tongka.account import lines as line_service
from tongka.account.identity import InvalidNumber, mask
from tongka.account.models import Account, Line
from tongka.account.schemas import BindConfirm, BindRequest
from tongka.charging import service as charging
from tongka.deps import SessionDep, SettingsDep, client_address
from tongka.errors import TongkaError
from tongka.forecast import model as forecast_model
from tongka.forecast import service as forecasts
from tongka.i18n import _, babel_locale, gettext
from tongka.ledger import buckets
from tongka.money import Currency
from tongka.order import service as orders
from tongka.promotion import pricing
from tongka.promotion import service as promotions
from tongka.promotion.pricing import ZONE_NAMES
from tongka.wallet import service as wallets

router = APIRouter(tags=["web: personal centre"])

USAGE_DAYS = 30  # the chart's and the table's period, as the API's default
LOW_SHARE = 5  # a gauge turns to "low" below a fifth of its total

BONUS = _("Bonus: {offer}")
OTHER_DATA = _("Data")
CODE_FORM = _("Enter the {digits}-digit code from the SMS.")
USAGE_AXIS = _("Data used (MB)")
DAY = _("Day")
LEFT_AXIS = _("Data left (MB)")
PROJECTED = _("Projected data left")
PROJECTED_DAYS = 14  # how far the chart's projected line goes

RUNS_OUT = _("At this rate your {zone} data runs out on {day} (between {low} and {high}).")
EXPIRES_FIRST = _("At this rate your {zone} data will not be used up: it expires first, on {day}.")
NO_HISTORY = _("No data used in the last week: nothing to forecast from.")
NONE_LEFT = _("You have no {zone} data left.")
NOT_USED = _("Your {zone} data is not being used: no run-out expected.")
AWAY = _("You have been using data outside {zone} lately: no run-out of your {zone} data expected.")
COVER = _("The cheapest way to cover your use until {day}: {packs}, {total}.")
COVERED = _("The data you have covers your use until {day}.")
NO_COVER = _("No packs on sale today cover your use until {day}.")
OFFERS_IN = _("Offers included: {offers}.")


# --- the personal centre --------------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """Data left on a line in one zone (a `both` bucket counts in each)."""

    zone: str
    title: str
    remaining: int
    total: int
    owed: int
    next_expiry: datetime | None

    @property
    def low(self) -> int:
        return self.total // LOW_SHARE


@dataclass(frozen=True)
class BucketRow:
    label: str  # the pack bought, or the offer whose bonus it is
    zone: str
    remaining: int
    total: int
    expires_at: datetime


@dataclass(frozen=True)
class UsageRow:
    day: date
    label: str  # the day, short: the period is a month
    zone: str
    operator: str
    bytes: int


@dataclass(frozen=True)
class Outlook:
    """The line's forecast in words: a sentence a zone, and the packs that cover the period."""

    zones: list[str]
    cover: str | None  # None: no recent use, nothing to cover
    offers: str | None
    renew_pack: uuid.UUID | None  # the recommendation's dearest pack, chosen on the renew page


@dataclass(frozen=True)
class LineCard:
    id: uuid.UUID
    numbers: list[str]  # masked
    status: str
    gauges: list[Gauge]
    buckets: list[BucketRow]
    usage: list[UsageRow]  # the period's by day and network, newest day first
    outlook: Outlook | None = None


def _period() -> tuple[date, date]:
    last = charging.usage_day(clock.now())
    return last - timedelta(days=USAGE_DAYS - 1), last


def _zone(zone: str, language: str) -> str:
    return gettext(ZONE_NAMES[zone], language)


def _day(day: date, language: str) -> str:
    return format_skeleton("MMMd", day, locale=babel_locale(language))


def _weekday_or_date(day: date, span: int, language: str) -> str:
    """A day of the run-out's range: its weekday when the range is within a week, else its date."""
    return format_skeleton("EEE" if span < 7 else "MMMd", day, locale=babel_locale(language))


def _outlook(found: forecasts.LineForecast, language: str) -> Outlook:
    locale = babel_locale(language)
    sentences = []
    for zone, z in found.zones.items():
        name = _zone(zone, language)
        if z.rate.active and z.left <= 0:
            sentences.append(gettext(NONE_LEFT, language, zone=name))
        elif z.run_out and z.low and z.high:
            day = format_skeleton("MMMEd", z.run_out.day, locale=locale)
            if z.run_out.cause == "expires":
                sentences.append(gettext(EXPIRES_FIRST, language, zone=name, day=day))
            else:
                span = (z.high - z.low).days
                low = _weekday_or_date(z.low, span, language)
                high = _weekday_or_date(z.high, span, language)
                sentences.append(
                    gettext(RUNS_OUT, language, zone=name, day=day, low=low, high=high)
                )
        elif z.left > 0 and z.rate.state == "away":
            sentences.append(gettext(AWAY, language, zone=name))
        elif z.left > 0:
            sentences.append(gettext(NOT_USED, language, zone=name))
    rec = found.recommendation
    until = format_skeleton("MMMEd", rec.until, locale=locale)
    offers = None
    if not any(z.rate.active for z in found.zones.values()):
        sentences.append(gettext(NO_HISTORY, language))
        return Outlook(sentences, None, None, None)
    if not rec.found:
        cover = gettext(NO_COVER, language, day=until)
    elif not rec.picks:
        cover = gettext(COVERED, language, day=until)
    else:
        counts: dict[uuid.UUID, int] = {}
        for pick in rec.picks:
            counts[pick.pack.id] = counts.get(pick.pack.id, 0) + 1
        names = {pick.pack.id: pick.pack.name(language) for pick in rec.picks}
        packs = " + ".join(f"{n} × {names[i]}" if n > 1 else names[i] for i, n in counts.items())
        total = web.money(rec.total.amount, rec.total.currency, language) if rec.total else ""
        cover = gettext(COVER, language, day=until, packs=packs, total=total)
        applied = {
            pricing.offer_name(o, language): None
            for pick in rec.picks
            for o in pick.price.breakdown["offers"]
        }
        offers = gettext(OFFERS_IN, language, offers=", ".join(applied)) if applied else None
    return Outlook(sentences, cover, offers, rec.picks[0].pack.id if rec.picks else None)


def _currency(language: str) -> Currency:
    return "CNY" if language == "zh-Hans" else "HKD"  # as the renew page's first choice


def _cards(
    session: Session,
    account: Account,
    lines: Iterable[Line],
    language: str,
    until: date | None = None,
) -> list[LineCard]:
    first, last = _period()
    read = [(line, buckets.line_balance(session, line.id)) for line in lines]
    bucket_ids = [b.id for _line, balance in read for b in balance.buckets]
    packs = orders.packs_of_buckets(session, bucket_ids)
    bonuses = promotions.bonus_offers(session, bucket_ids)

    def label(bucket_id: uuid.UUID) -> str:
        if bucket_id in packs:
            return packs[bucket_id].name(language)
        if bucket_id in bonuses:
            return gettext(BONUS, language, offer=bonuses[bucket_id].name(language))
        return gettext(OTHER_DATA, language)

    return [
        LineCard(
            id=line.id,
            numbers=[mask(n) for n in line.numbers],
            status=line.status,
            gauges=[
                Gauge(
                    zone=zone,
                    title=_zone(zone, language),
                    remaining=view.remaining_bytes,
                    total=view.total_bytes,
                    owed=view.owed_bytes,
                    next_expiry=view.next_expiry,
                )
                for zone, view in balance.zones.items()
            ],
            buckets=[
                BucketRow(
                    label=label(b.id),
                    zone=_zone(b.zone, language),
                    remaining=b.remaining_bytes,
                    total=b.total_bytes,
                    expires_at=b.expires_at,
                )
                for b in balance.buckets
            ],
            usage=[
                UsageRow(u.day, _day(u.day, language), _zone(u.zone, language), u.operator, u.bytes)
                for u in charging.usage_between(session, line.id, first, last)
            ],
            outlook=_outlook(
                forecasts.of_line(
                    session, account, line, currency=_currency(language), until=until
                ),
                language,
            ),
        )
        for line, balance in read
    ]


@router.get("/account", response_class=HTMLResponse, include_in_schema=False)
def centre(
    request: Request,
    visitor: web.SubscriberDep,
    session: SessionDep,
    bound: str | None = None,
    until: str | None = None,
) -> HTMLResponse:
    """The signed-in subscriber: each of their lines' data left by zone, its forecast and the
    packs that cover the next 30 days (or until `until`, a trip's last day), its packs and 30
    days of usage; their wallet. `bound`: the line just bound, greeted with a notice."""
    account = session.get_one(Account, visitor.account_id)
    today = charging.usage_day(clock.now())
    trip, until_error = _until(until, today, visitor.language)
    cards = _cards(
        session, account, line_service.lines_of(session, account), visitor.language, trip
    )
    wallet = wallets.wallet_of(session, account.id)
    return web.page(
        request,
        visitor,
        "web/account/centre.html",
        {
            "cards": cards,
            "bound": next((c for c in cards if str(c.id) == bound), None),
            "wallet": wallet,
            "until": trip.isoformat() if trip else "",
            "until_error": until_error,
            "until_min": (today + timedelta(days=1)).isoformat(),
            # A pack bought now lasts 30 days from now: to the day before the 30th's end.
            "until_max": (today + timedelta(days=forecasts.PERIOD_DAYS - 1)).isoformat(),
        },
        status_code=400 if until_error else 200,
    )


def _until(text: str | None, today: date, language: str) -> tuple[date | None, str | None]:
    """The trip's last day typed in the date picker; an error to show instead if it is not one."""
    if not text:
        return None, None
    try:
        day = date.fromisoformat(text)
        forecasts.period_end(day, forecast_model.day_start(today) + timedelta(hours=12))
    except (ValueError, forecasts.PeriodInvalid):
        return None, forecasts.PeriodInvalid(max_days=forecasts.MAX_PERIOD_DAYS).detail(language)
    return day, None


def _usage_chart(
    rows: list[charging.NetworkUsage],
    first: date,
    last: date,
    language: str,
    left: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """The period's usage as the centre's chart draws it: a value a day for each zone's networks."""
    days = [first + timedelta(days=i) for i in range(USAGE_DAYS)]
    index = {day: i for i, day in enumerate(days)}
    zones: list[dict[str, Any]] = []
    for zone in buckets.ZONES:
        networks: dict[str, list[int]] = {}
        for row in rows:
            if row.zone == zone and row.day in index:
                networks.setdefault(row.operator, [0] * USAGE_DAYS)[index[row.day]] += row.bytes
        zones.append(
            {
                "zone": zone,
                "title": _zone(zone, language),
                "networks": [
                    {"operator": operator, "bytes": values}
                    for operator, values in sorted(networks.items(), key=lambda n: -sum(n[1]))
                ],
                # Data left now (drawn on today), then as each day ahead starts, at the expected rate.
                "projection": (left or {}).get(zone),
            }
        )
    ahead = [last + timedelta(days=i) for i in range(1, PROJECTED_DAYS + 1)]
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "labels": [_day(d, language) for d in days],
        "ahead": [_day(d, language) for d in ahead] if left else [],
        "axis": gettext(USAGE_AXIS, language),
        "left_axis": gettext(LEFT_AXIS, language),
        "projected": gettext(PROJECTED, language),
        "day": gettext(DAY, language),
        "zones": zones,
    }


@router.get("/account/usage/{line_id}.json", include_in_schema=False)
def usage_json(line_id: uuid.UUID, visitor: web.SubscriberDep, session: SessionDep) -> JSONResponse:
    """The line's owner: the line's usage of the last 30 days per zone and network, and the data
    left projected for the next 14 days at the expected rate, for the centre's chart."""
    account = session.get_one(Account, visitor.account_id)
    line = line_service.own_line(session, account, line_id)
    first, last = _period()
    rows = charging.usage_between(session, line.id, first, last)
    now = clock.now()
    rates = forecasts.rates_of(session, line.id, now)
    left = forecast_model.remaining(
        forecasts.pools(session, line.id, now), rates, now, PROJECTED_DAYS
    )
    body = _usage_chart(rows, first, last, visitor.language, left)
    return JSONResponse(
        {"line_id": str(line.id), **body},
        headers={"Cache-Control": "private, no-store", "Content-Language": visitor.language},
    )


# --- binding a line -------------------------------------------------------------------------

T = TypeVar("T")


def _attempt(session: Session, step: Callable[[], T]) -> T | TongkaError:
    """`step`, kept or undone as the API's own transaction would keep it: a refusal undoes what it
    did unless its tries count (`commit_anyway`: a wrong code), and is returned to be shown."""
    savepoint = session.begin_nested()
    try:
        done = step()
    except TongkaError as refusal:
        if refusal.commit_anyway:
            savepoint.commit()
        else:
            savepoint.rollback()
        return refusal
    savepoint.commit()
    return done


def _bind_page(
    request: Request,
    visitor: web.Visitor,
    *,
    step: str,
    number: str = "",
    errors: dict[str, str] | None = None,
    refusal: TongkaError | None = None,
    minutes: int | None = None,
    status_code: int = 200,
) -> Response:
    """Step "number" (which line) or "code" (the SMS code for `number`); a refusal that is not one
    field's is said above the form."""
    response = web.page(
        request,
        visitor,
        "web/account/bind.html",
        {
            "step": step,
            "number": number,
            "errors": errors or {},
            "alert": refusal.detail(visitor.language) if refusal else None,
            "minutes": minutes,
            "digits": line_service.CODE_DIGITS,
        },
        status_code=refusal.status if refusal else status_code,
    )
    if refusal:
        response.headers.update(refusal.headers())
    return response


@router.get("/lines/bind", response_class=HTMLResponse, include_in_schema=False)
def bind_form(request: Request, visitor: web.SubscriberDep) -> Response:
    """The signed-in subscriber: bind a line, step 1: its number."""
    return _bind_page(request, visitor, step="number")


@router.post("/lines/bind", response_class=HTMLResponse, include_in_schema=False)
def bind(
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The signed-in subscriber: with `number`, send the SMS code to it (as `POST /api/v1/lines/bind`);
    with `number` and `code`, take the line (as `POST /api/v1/lines/bind/confirm`), then to /account."""
    language = visitor.language
    account = session.get_one(Account, visitor.account_id)
    policy = line_service.bind_policy(settings)
    typed = str(posted.get("number") or "")

    if "code" not in posted:
        asked, errors = web.parse(BindRequest, posted, language)
        if asked is None:
            return _bind_page(
                request, visitor, step="number", number=typed, errors=errors, status_code=400
            )
        sent = _attempt(
            session,
            lambda: line_service.request_bind(
                session, account, asked.number, policy, address=client_address(request)
            ),
        )
        if isinstance(sent, InvalidNumber):
            errors = {"number": sent.detail(language)}
            return _bind_page(
                request, visitor, step="number", number=typed, errors=errors, status_code=422
            )
        if isinstance(sent, TongkaError):
            # Said where the code is typed after the resend button (on step 2), or a send again
            # too soon (a reload): the code sent a moment ago still works.
            again = "resend" in posted or isinstance(sent, line_service.BindCodeTooSoon)
            step = "code" if again else "number"
            return _bind_page(request, visitor, step=step, number=typed, refusal=sent)
        return _bind_page(
            request, visitor, step="code", number=sent.number, minutes=policy.ttl_seconds // 60
        )

    confirm, errors = web.parse(BindConfirm, posted, language)
    if confirm is None:
        if "number" in errors:  # the hidden field, changed: start again
            errors = {"number": errors["number"]}
            return _bind_page(
                request, visitor, step="number", number=typed, errors=errors, status_code=400
            )
        errors = {"code": gettext(CODE_FORM, language, digits=line_service.CODE_DIGITS)}
        return _bind_page(
            request, visitor, step="code", number=typed, errors=errors, status_code=400
        )
    line = _attempt(
        session,
        lambda: line_service.confirm_bind(session, account, confirm.number, confirm.code, policy),
    )
    if isinstance(line, line_service.BindCodeWrong):
        errors = {"code": line.detail(language)}
        return _bind_page(
            request, visitor, step="code", number=typed, errors=errors, status_code=line.status
        )
    if isinstance(line, TongkaError):
        return _bind_page(request, visitor, step="code", number=typed, refusal=line)
    return web.redirect(request, f"/account?bound={line.id}")
