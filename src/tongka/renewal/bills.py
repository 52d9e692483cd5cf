"""Bills (账单明细): one list of what moved money or data on a subscriber's account, as a page and as CSV.

Orders, their payments and refunds, wallet top-ups' payments, overage charged to the wallet and the
wallet's other movements, newest first, filtered by kind, line, Hong Kong dates and status. Each
domain reads its own rows (order, payment, wallet, charging.overage; the wallet's from its ledger
entries); this module only puts them side by side. A page of N rows asks each source for the rows
up to the end of that page, merges them and keeps the page's slice.

Who may call: the signed-in subscriber, for their own account (another's lines are a 404).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from tongka import clock, web
from tongka.account import lines as line_service
from tongka.account.identity import mask
from tongka.account.models import Account, Line
from tongka.charging import overage
from tongka.deps import SessionDep
from tongka.i18n import _, gettext
from tongka.money import EXPONENT
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.receipt.service import METHOD_NAMES
from tongka.wallet import service as wallets

router = APIRouter(include_in_schema=False)

PER_PAGE = 20
CSV_MAX_ROWS = 10_000  # one export; a longer history is exported a period at a time

KINDS = {
    "orders": _("Order"),
    "payments": _("Payment"),
    "refunds": _("Refund"),
    "overage": _("Overage data"),
    "wallet": _("Wallet"),
}
KIND_FILTERS = {
    "orders": _("Orders"),
    "payments": _("Payments"),
    "refunds": _("Refunds"),
    "overage": _("Overage data"),
    "wallet": _("Wallet movements"),
}
STATUSES = {
    "awaiting_payment": _("Awaiting payment"),
    "paid": _("Paid"),
    "fulfilled": _("Fulfilled"),
    "cancelled": _("Cancelled"),
    "expired": _("Expired"),
    "pending": _("Pending"),
    "succeeded": _("Succeeded"),
    "failed": _("Failed"),
    "completed": _("Completed"),  # a posted ledger movement (overage, wallet)
}
Status = Literal[
    "awaiting_payment",
    "paid",
    "fulfilled",
    "cancelled",
    "expired",
    "pending",
    "succeeded",
    "failed",
    "completed",
]
WALLET_REASONS = {"wallet_topup": _("Wallet top-up"), "overage": _("Overage data")}
TOPUP = _("Wallet top-up")
CSV_HEADER = (
    _("Date"),
    _("Type"),
    _("Details"),
    _("Line"),
    _("Status"),
    _("Amount"),
    _("Currency"),
    _("Direction"),
)
DIRECTIONS = {"in": _("In"), "out": _("Out")}


class Filters(BaseModel):
    """The list's filters, as GET query fields."""

    model_config = ConfigDict(populate_by_name=True)

    kind: Literal["orders", "payments", "refunds", "overage", "wallet"] | None = None
    line: uuid.UUID | None = None
    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")
    status: Status | None = None
    page: int = Field(default=1, ge=1, le=10_000)

    def query(self, **change: object) -> str:
        """These filters as a query string (with `change`), for links that keep them."""
        fields = {
            "kind": self.kind,
            "line": self.line,
            "from": self.start,
            "to": self.end,
            "status": self.status,
            **change,
        }
        return urlencode({k: str(v) for k, v in fields.items() if v not in (None, "", 1)})


@dataclass(frozen=True)
class Row:
    at: datetime
    kind: str
    details: str
    line: str  # the masked number, or ""
    status: str
    amount: int  # minor units, never negative: `direction` says which way
    currency: str
    direction: str  # "out" of the customer's pocket or wallet, "in" to it
    link: str | None


def _period(filters: Filters) -> tuple[datetime | None, datetime | None]:
    """The filter's dates as [start, end) instants: whole days in Hong Kong time."""
    start = datetime.combine(filters.start, time(), web.LOCAL_TIME) if filters.start else None
    end = (
        datetime.combine(filters.end + timedelta(days=1), time(), web.LOCAL_TIME)
        if filters.end
        else None
    )
    return start, end


def _method(method: str, language: str) -> str:
    name = METHOD_NAMES.get(method)
    return gettext(name, language) if name else method


def rows(
    session: Session, account: Account, filters: Filters, language: str, limit: int
) -> list[Row]:
    """The newest `limit` rows that pass the filters. A line that is not the account's is a 404."""
    own = {line.id: line for line in line_service.lines_of(session, account)}
    if filters.line is not None:
        line_service.own_line(session, account, filters.line)
    start, end = _period(filters)
    kinds = [filters.kind] if filters.kind else list(KINDS)
    status = filters.status
    found: list[Row] = []

    def masked(line_id: uuid.UUID | None) -> str:
        line: Line | None = own.get(line_id) if line_id else None
        return mask(line.numbers[0]) if line is not None and line.numbers else ""

    def pack(order: Order | None) -> str:
        return order.pack.name(language) if order is not None else ""

    order_ids = orders.ids_of(account.id, filters.line)
    # A top-up is for no line: filtering by line leaves them out.
    topup_ids = wallets.topup_ids_of(account.id) if filters.line is None else None
    if "orders" in kinds:
        for order in orders.statement(
            session,
            account.id,
            line_id=filters.line,
            start=start,
            end=end,
            status=status,
            limit=limit,
        ):
            found.append(
                Row(
                    order.created_at,
                    "orders",
                    pack(order),
                    masked(order.line_id),
                    order.status,
                    order.amount,
                    order.currency,
                    "out",
                    f"/orders/{order.id}",
                )
            )
    if "payments" in kinds or "refunds" in kinds:
        paid: list[Payment] = []
        refunded = []
        if "payments" in kinds:
            paid = payments.statement(
                session,
                order_ids=order_ids,
                topup_ids=topup_ids,
                start=start,
                end=end,
                status=status,
                limit=limit,
            )
        if "refunds" in kinds:
            refunded = payments.refund_statement(
                session,
                order_ids=order_ids,
                topup_ids=topup_ids,
                start=start,
                end=end,
                status=status,
                limit=limit,
            )
        of = orders.by_ids(
            session,
            {p.order_id for p in paid if p.order_id}
            | {p.order_id for _r, p in refunded if p.order_id},
        )

        def what(payment: Payment) -> tuple[str, str, str]:
            """(details, masked line, link) of what a payment paid for."""
            method = _method(payment.method, language)
            if payment.topup_id is not None:
                topup = gettext(TOPUP, language)
                return f"{topup} · {method}", "", f"/wallet/topups/{payment.topup_id}"
            order = of.get(payment.order_id) if payment.order_id else None
            return (
                f"{pack(order)} · {method}",
                masked(order.line_id if order else None),
                f"/orders/{payment.order_id}",
            )

        for payment in paid:
            details, line, link = what(payment)
            found.append(
                Row(
                    payment.created_at,
                    "payments",
                    details,
                    line,
                    payment.status,
                    payment.amount,
                    payment.currency,
                    "out",
                    link,
                )
            )
        for refund, payment in refunded:
            details, line, link = what(payment)
            found.append(
                Row(
                    refund.created_at,
                    "refunds",
                    details,
                    line,
                    refund.status,
                    refund.amount,
                    refund.currency,
                    "in",
                    link,
                )
            )
    completed = status in (None, "completed")
    if "overage" in kinds and completed:
        for charge in overage.charges_of(
            session, account.id, line_id=filters.line, start=start, end=end, limit=limit
        ):
            found.append(
                Row(
                    charge.at,
                    "overage",
                    gettext(KINDS["overage"], language),
                    masked(charge.line_id),
                    "completed",
                    charge.amount,
                    charge.currency,
                    "out",
                    "/wallet",
                )
            )
    if "wallet" in kinds and completed and filters.line is None:
        for movement in wallets.history(session, account.id, start=start, end=end, limit=limit):
            if movement.reason == "overage" and "overage" in kinds:
                continue  # listed above, with its line
            reason = WALLET_REASONS.get(movement.reason)
            found.append(
                Row(
                    movement.at,
                    "wallet",
                    gettext(reason, language) if reason else movement.reason,
                    "",
                    "completed",
                    abs(movement.amount),
                    movement.currency,
                    "in" if movement.amount > 0 else "out",
                    "/wallet",
                )
            )
    found.sort(key=lambda r: r.at, reverse=True)  # stable: each source's own order kept on a tie
    return found[:limit]


def decimal(amount: int, currency: str) -> str:
    """Minor units as a plain decimal string, `1250` HKD -> `12.50` (no symbol, no grouping)."""
    exponent = EXPONENT[currency]
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{part:0{exponent}d}" if exponent else f"{sign}{whole}"


def csv_rows(found: Iterable[Row], language: str) -> Iterator[tuple[str, ...]]:
    for row in found:
        yield (
            web.when(row.at, language),
            gettext(KINDS[row.kind], language),
            row.details,
            row.line,
            gettext(STATUSES.get(row.status, row.status), language),
            decimal(row.amount, row.currency),
            row.currency,
            gettext(DIRECTIONS[row.direction], language),
        )


def _filters(request: Request, language: str) -> tuple[Filters, dict[str, str]]:
    model, errors = web.parse(Filters, request.query_params, language)
    return (model if model is not None else Filters()), errors


@router.get("/orders", response_class=HTMLResponse)
def bills(request: Request, visitor: web.SubscriberDep, session: SessionDep) -> Response:
    """The signed-in subscriber: their bills (orders, payments, refunds, overage, wallet), filtered, newest first."""
    account = session.get_one(Account, visitor.account_id)
    filters, errors = _filters(request, visitor.language)
    found = rows(session, account, filters, visitor.language, filters.page * PER_PAGE + 1)
    first = (filters.page - 1) * PER_PAGE
    shown = found[first : first + PER_PAGE]
    return web.page(
        request,
        visitor,
        "web/bills.html",
        {
            "filters": filters,
            "errors": errors,
            "rows": shown,
            "kinds": KINDS,
            "kind_filters": KIND_FILTERS,
            "statuses": STATUSES,
            "directions": DIRECTIONS,
            "lines": [
                (line.id, mask(line.numbers[0]) if line.numbers else str(line.id)[:8])
                for line in line_service.lines_of(session, account)
            ],
            "previous": filters.query(page=filters.page - 1) if filters.page > 1 else None,
            "next": filters.query(page=filters.page + 1) if len(found) > first + PER_PAGE else None,
            "csv": "/orders.csv" + (f"?{q}" if (q := filters.query(page=None)) else ""),
        },
        status_code=400 if errors else 200,
    )


@router.get("/orders.csv")
def bills_csv(request: Request, visitor: web.SubscriberDep, session: SessionDep) -> Response:
    """The signed-in subscriber: their bills with the same filters, as CSV for a spreadsheet."""
    account = session.get_one(Account, visitor.account_id)
    filters, _errors = _filters(request, visitor.language)
    found = rows(session, account, filters, visitor.language, CSV_MAX_ROWS)
    today = clock.now().astimezone(web.LOCAL_TIME).date().isoformat()
    return web.csv_download(
        CSV_HEADER, csv_rows(found, visitor.language), f"tongka-bills-{today}.csv", visitor.language
    )
