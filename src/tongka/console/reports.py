"""The console's reports: revenue, renewals, data sold and used, top stores and agents, payment
failures, over a period of Hong Kong days. Each figure is a table (what a screen reader and the
tests read), a chart drawn by static/console-reports.js from the JSON block in the page, and a
CSV export. The numbers come from console/figures.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from functools import cached_property
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from tongka import clock, web
from tongka.charging.engine import usage_day
from tongka.console import figures
from tongka.deps import SessionDep
from tongka.errors import NotFound, Unprocessable
from tongka.i18n import _, gettext
from tongka.money import EXPONENT, GB
from tongka.promotion.pricing import ZONE_NAMES
from tongka.receipt.service import CHANNEL_NAMES, METHOD_NAMES

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 30
MAX_DAYS = 366

METHODS = {
    **METHOD_NAMES,
    "card_terminal": _("Card terminal"),
    "store_qr": _("QR code payment"),
    "sandbox": _("Sandbox"),
}
PROVIDERS = {
    "wechat": _("WeChat Pay"),
    "alipay": _("Alipay"),
    "stripe": _("Card"),
    "paypal": _("PayPal"),
    "store": _("Store"),
    "sandbox": _("Sandbox"),
}
RANGE_INVALID = _("The period must end on or after its first day and span at most {max_days} days.")


class ReportRangeInvalid(Unprocessable):
    code = "report_range_invalid"
    message = RANGE_INVALID


class Range(BaseModel):
    """The form's period: Hong Kong days, both included."""

    model_config = ConfigDict(populate_by_name=True)

    first: Annotated[date, Field(alias="from")]
    last: Annotated[date, Field(alias="to")]

    @model_validator(mode="after")
    def _span(self) -> Range:
        if self.first > self.last or (self.last - self.first).days + 1 > MAX_DAYS:
            raise ValueError("range")
        return self


def _default() -> figures.Period:
    last = usage_day(clock.now())
    return figures.Period(last - timedelta(days=DEFAULT_DAYS - 1), last)


def _period(request: Request, language: str) -> tuple[figures.Period, dict[str, str]]:
    """The period asked for (default: the last 30 Hong Kong days, today included), and the
    form's errors: a period that cannot be read shows the default with the error."""
    query = {k: v for k, v in request.query_params.items() if k in ("from", "to")}
    if not query:
        return _default(), {}
    default = _default()
    query.setdefault("from", default.first.isoformat())
    query.setdefault("to", default.last.isoformat())
    model, errors = web.parse(Range, query, language)
    if model is None:
        if not set(errors) & {"from", "to"}:  # the span itself
            errors = {"to": gettext(RANGE_INVALID, language, max_days=MAX_DAYS)}
        return default, errors
    return figures.Period(model.first, model.last), {}


def _decimal(amount: int, currency: str) -> str:
    """Minor units as a plain decimal string: `1250` HKD -> `12.50`."""
    exponent = EXPONENT[currency]
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{part:0{exponent}d}" if exponent else f"{sign}{whole}"


def _major(amount: int, currency: str) -> float:
    """For a chart's axis only (the tables and CSV keep exact minor units)."""
    return amount / 10 ** EXPONENT[currency]


def _percent(permille: int) -> str:
    return f"{permille // 10}.{permille % 10}"


# --- the figures as tables, charts and CSV -----------------------------------------------------


class Report:
    """The figures of one period."""

    def __init__(self, session: Session, period: figures.Period) -> None:
        self.session = session
        self.period = period

    # Each read when first needed: a CSV export reads its one figure.
    @cached_property
    def revenue(self) -> list[figures.Revenue]:
        return figures.revenue(self.session, self.period)

    @cached_property
    def renewals(self) -> list[figures.Renewals]:
        return figures.renewals(self.session, self.period)

    @cached_property
    def data(self) -> list[figures.ZoneData]:
        return figures.data(self.session, self.period)

    @cached_property
    def stores(self) -> list[figures.Seller]:
        return figures.top_stores(self.session, self.period)

    @cached_property
    def agents(self) -> list[figures.Seller]:
        return figures.top_agents(self.session, self.period)

    @cached_property
    def failures(self) -> list[figures.Failures]:
        return figures.failures(self.session, self.period)

    def revenue_totals(self) -> list[tuple[str, int]]:
        """The period's revenue per currency (each apart)."""
        totals: dict[str, int] = defaultdict(int)
        for r in self.revenue:
            totals[r.currency] += r.amount
        return sorted(totals.items())

    def charts(self, language: str) -> dict[str, Any]:
        """What static/console-reports.js draws: per chart its labels (x), series and axis."""
        t = web.translator(language)
        days = self.period.days()
        day_labels = [web.when(d, language) for d in days]
        charts: dict[str, Any] = {}
        for currency, _total in self.revenue_totals():
            per: dict[tuple[str, str], list[float]] = {}
            for r in self.revenue:
                if r.currency == currency:
                    values = per.setdefault((r.channel, r.method), [0.0] * len(days))
                    values[days.index(r.day)] += _major(r.amount, currency)
            charts[f"revenue-{currency}"] = {
                "kind": "stacked",
                "labels": day_labels,
                "axis": currency,
                "series": [
                    {
                        "label": f"{t(CHANNEL_NAMES.get(ch, ch))} · {t(METHODS.get(m, m))}",
                        "values": [round(v, 2) for v in values],
                    }
                    for (ch, m), values in sorted(per.items())
                ],
            }
        packs: dict[str, int] = {}
        for renewal in self.renewals:
            packs[renewal.pack] = packs.get(renewal.pack, 0) + renewal.orders
        if packs:
            charts["renewals"] = {
                "kind": "bars",
                "labels": list(packs),
                "axis": t("Renewals"),
                "series": [{"label": t("Renewals"), "values": list(packs.values())}],
            }
        if any(z.sold or z.used for z in self.data):
            charts["data"] = {
                "kind": "grouped",
                "labels": [t(ZONE_NAMES[z.zone]) for z in self.data],
                "axis": "GB",
                "series": [
                    {"label": t("Sold"), "values": [round(z.sold / GB, 2) for z in self.data]},
                    {"label": t("Used"), "values": [round(z.used / GB, 2) for z in self.data]},
                ],
            }
        for name, sellers in (("stores", self.stores), ("agents", self.agents)):
            counts: dict[str, int] = {}
            for s in sellers:
                label = s.name if name == "agents" else _store_name(s, language)
                counts[label] = counts.get(label, 0) + s.sales
            if counts:
                charts[name] = {
                    "kind": "bars",
                    "labels": list(counts),
                    "axis": t("Sales"),
                    "series": [{"label": t("Sales"), "values": list(counts.values())}],
                }
        if self.failures:
            providers = sorted({f.provider for f in self.failures})
            rates = {(f.day, f.provider): f.rate_permille / 10 for f in self.failures}
            charts["failures"] = {
                "kind": "lines",
                "labels": day_labels,
                "axis": "%",
                "series": [
                    {
                        "label": t(PROVIDERS.get(p, p)),
                        "values": [rates.get((d, p)) for d in days],
                    }
                    for p in providers
                ],
            }
        return charts


def _store_name(seller: figures.Seller, language: str) -> str:
    return seller.store_names.get(language) or seller.store_names.get("en") or seller.store


CSV: dict[str, tuple[Sequence[str], Callable[[Report], Iterable[Sequence[object]]]]] = {
    "revenue": (
        ("day", "channel", "currency", "method", "amount", "payments", "refunds"),
        lambda rep: (
            (
                r.day,
                r.channel,
                r.currency,
                r.method,
                _decimal(r.amount, r.currency),
                r.payments,
                r.refunds,
            )
            for r in rep.revenue
        ),
    ),
    "renewals": (
        ("pack", "currency", "orders", "amount"),
        lambda rep: (
            (r.pack, r.currency, r.orders, _decimal(r.amount, r.currency)) for r in rep.renewals
        ),
    ),
    "data": (
        ("zone", "sold_bytes", "used_bytes"),
        lambda rep: ((z.zone, z.sold, z.used) for z in rep.data),
    ),
    "stores": (
        ("store", "currency", "sales", "amount"),
        lambda rep: (
            (s.store, s.currency, s.sales, _decimal(s.amount, s.currency)) for s in rep.stores
        ),
    ),
    "agents": (
        ("agent", "name", "store", "currency", "sales", "amount"),
        lambda rep: (
            (s.key, s.name, s.store, s.currency, s.sales, _decimal(s.amount, s.currency))
            for s in rep.agents
        ),
    ),
    "failures": (
        ("day", "provider", "attempts", "failed", "failure_rate_percent"),
        lambda rep: (
            (f.day, f.provider, f.attempts, f.failed, _percent(f.rate_permille))
            for f in rep.failures
        ),
    ),
}


# --- routes ------------------------------------------------------------------------------------


@router.get("/console/reports", response_class=HTMLResponse)
def reports(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: the business's figures over a period of Hong Kong days, with charts."""
    period, errors = _period(request, visitor.language)
    report = Report(session, period)
    query = f"from={period.first.isoformat()}&to={period.last.isoformat()}"
    return web.page(
        request,
        visitor,
        "web/console/reports.html",
        {
            "report": report,
            "period": period,
            "errors": errors,
            # What was typed, shown again beside its error.
            "asked": {k: v for k, v in request.query_params.items() if k in ("from", "to")}
            if errors
            else {},
            "query": query,
            "charts": report.charts(visitor.language),
            "channels": CHANNEL_NAMES,
            "methods": METHODS,
            "providers": PROVIDERS,
            "zones": ZONE_NAMES,
            "percent": _percent,
            "store_name": _store_name,
        },
        status_code=400 if errors else 200,
    )


@router.get("/console/reports/{figure}.csv")
def report_csv(
    figure: str, request: Request, visitor: web.AdminDep, session: SessionDep
) -> Response:
    """Operator admins: one figure of the reports over the same period, as CSV."""
    if figure not in CSV:
        raise NotFound()
    period, errors = _period(request, visitor.language)
    if errors:  # a file of another period than asked would be read as that one
        raise ReportRangeInvalid(max_days=MAX_DAYS)
    header, rows = CSV[figure]
    name = f"tongka-{figure}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
    # Column names stay English: a stable header for the spreadsheets that read these files.
    return web.csv_download(header, rows(Report(session, period)), name, "en")
