"""The till's pages: shifts (open with a float, close with the cash counted, a manager's
acknowledgement of a difference), the store's end-of-day report, and commission (rates, the
monthly statement). Route module: parses, calls `counter.shifts`, `counter.reports` and
`counter.commission`, renders.

Who sees what: an agent their own shifts and commission; a manager their store's; an admin
every store's. Another store's shift is a 404; another store's report or statement a 403.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import clock, web
from tongka.counter import commission, reports, shifts
from tongka.counter.models import SALE_METHODS
from tongka.deps import SessionDep
from tongka.errors import Forbidden, NotFound, TongkaError
from tongka.i18n import _, gettext
from tongka.staff import service as staff_service
from tongka.staff.models import StaffMember
from tongka.staff.service import Staff
from tongka.stores import service as stores_service
from tongka.stores.models import Store

router = APIRouter(include_in_schema=False)

METHOD_NAMES = {
    "cash": _("Cash"),
    "card_terminal": _("Card terminal"),
    "store_qr": _("Store QR code"),
    "wechat_pay_qr": _("WeChat Pay QR code"),
    "alipay_qr": _("Alipay QR code"),
}
assert set(METHOD_NAMES) == set(SALE_METHODS)
STATUS_NAMES = {
    "open": _("Open"),
    "closed": _("Closed"),
    "acknowledged": _("Acknowledged"),
    "pending": _("Pending"),
    "succeeded": _("Succeeded"),
    "failed": _("Failed"),
}


class StoreRefused(Forbidden):
    code = "store_refused"
    message = _("You may see your own store's figures only.")


class StoreNotFound(NotFound):
    code = "store_not_found"
    message = _("There is no such store.")


class DateInvalid(TongkaError):
    status = 422
    code = "date_invalid"
    message = _("Enter a date as YYYY-MM-DD.")


class OpenForm(BaseModel):
    float_amount: str = Field(min_length=1, max_length=20)


class AcknowledgeForm(BaseModel):
    note: str = Field(min_length=1, max_length=200)


class RateForm(BaseModel):
    rate: str = Field(min_length=1, max_length=10)
    valid_from: date
    pack: str | None = Field(default=None, max_length=40)
    store: str | None = Field(default=None, max_length=40)
    agent: str | None = Field(default=None, max_length=32)


def _staff(visitor: web.Visitor) -> Staff:
    assert visitor.staff is not None
    return visitor.staff


def _today() -> date:
    return clock.now().astimezone(web.LOCAL_TIME).date()


def _store(session: Session, code: str) -> Store:
    store = session.scalar(select(Store).where(Store.code == code.strip()))
    if store is None:
        raise StoreNotFound()
    return store


def _decimal(cents: int | None) -> Decimal | str:
    """Minor units as a decimal for CSV (-100.00): spreadsheets read it as a number."""
    return "" if cents is None else Decimal(cents).scaleb(-2)


# --- shifts -------------------------------------------------------------------------------------


def _shift_list(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    store: str | None = None,
    *,
    error: str | None = None,
    float_text: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    staff = _staff(visitor)
    store_id = _store(session, store).id if store and staff.is_admin else None
    return web.page(
        request,
        visitor,
        "web/counter/shift_list.html",
        {
            "own_open": shifts.open_shift_of(session, staff.id),
            "shifts": shifts.visible(session, staff, store_id),
            "stores": stores_service.active_stores(session) if staff.is_admin else [],
            "store": store or "",
            "statuses": STATUS_NAMES,
            "error": error,
            "float_text": float_text,
        },
        status_code=status_code,
    )


@router.get("/counter/shifts", response_class=HTMLResponse)
def shift_list(
    request: Request, visitor: web.StaffDep, session: SessionDep, store: str | None = None
) -> HTMLResponse:
    """Store staff (their own shifts; a manager the store's) and operator admins (every store's,
    filtered by `store`): open a shift, recent shifts."""
    return _shift_list(request, visitor, session, store)


@router.post("/counter/shifts/open", response_class=HTMLResponse)
def shift_open(
    request: Request, visitor: web.CounterDep, session: SessionDep, form: web.FormDep
) -> Response:
    """Store staff: opens their own till with a cash float in HK$."""
    data, errors = web.parse(OpenForm, form, visitor.language)
    if data is None:
        return _shift_list(
            request, visitor, session, error=errors.get("float_amount"), status_code=422
        )
    try:
        shift = shifts.open_shift(session, _staff(visitor), shifts.parse_amount(data.float_amount))
    except TongkaError as refused:
        return _shift_list(
            request,
            visitor,
            session,
            error=refused.detail(visitor.language),
            float_text=data.float_amount,
            status_code=refused.status,
        )
    return web.redirect(request, f"/counter/shifts/{shift.id}")


def _shift_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    shift_id: uuid.UUID,
    *,
    error: str | None = None,
    counts: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    staff = _staff(visitor)
    view = shifts.get(session, staff, shift_id)
    shift = view.shift
    return web.page(
        request,
        visitor,
        "web/counter/shift_detail.html",
        {
            "view": view,
            "shift": shift,
            "statuses": STATUS_NAMES,
            "denominations": shifts.DENOMINATIONS,
            "counts": counts or {},
            "counted": {int(k): v for k, v in (shift.counted_denominations or {}).items()},
            "may_close": shift.status == "open"
            and (shift.staff_id == staff.id or staff.is_manager),
            "may_acknowledge": shift.status == "closed"
            and shift.difference != 0
            and staff.is_manager
            and staff.may_see_store(shift.store_id),
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/counter/shifts/{shift_id}", response_class=HTMLResponse)
def shift_detail(
    request: Request, visitor: web.StaffDep, session: SessionDep, shift_id: uuid.UUID
) -> HTMLResponse:
    """Store staff (their own shift; a manager any of the store's) and operator admins: one
    shift, its close form while open, its acknowledgement form when its cash did not match."""
    return _shift_page(request, visitor, session, shift_id)


@router.post("/counter/shifts/{shift_id}/close", response_class=HTMLResponse)
def shift_close(
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    form: web.FormDep,
    shift_id: uuid.UUID,
) -> Response:
    """Store staff (the shift's own agent, or a manager of its store; admins too): closes the
    shift with the cash counted by denomination."""
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        counts = shifts.parse_counts(fields)
        shifts.close(session, _staff(visitor), shift_id, counts, fields.get("note"))
    except (shifts.CountInvalid, shifts.ShiftNotOpen) as refused:
        return _shift_page(
            request,
            visitor,
            session,
            shift_id,
            error=refused.detail(visitor.language),
            counts=fields,
            status_code=refused.status,
        )
    return web.redirect(request, f"/counter/shifts/{shift_id}")


@router.post("/counter/shifts/{shift_id}/acknowledge", response_class=HTMLResponse)
def shift_acknowledge(
    request: Request,
    visitor: web.ManagerDep,
    session: SessionDep,
    form: web.FormDep,
    shift_id: uuid.UUID,
) -> Response:
    """Store managers (of the shift's store, and admins): accept a closed shift's cash
    difference, with a note."""
    data, errors = web.parse(AcknowledgeForm, form, visitor.language)
    try:
        if data is None:
            shifts.get(session, _staff(visitor), shift_id)  # another store's: 404 first
            return _shift_page(
                request, visitor, session, shift_id, error=errors.get("note"), status_code=422
            )
        shifts.acknowledge(session, _staff(visitor), shift_id, data.note)
    except shifts.NothingToAcknowledge as refused:
        return _shift_page(
            request,
            visitor,
            session,
            shift_id,
            error=refused.detail(visitor.language),
            status_code=refused.status,
        )
    return web.redirect(request, f"/counter/shifts/{shift_id}")


# --- the day report -----------------------------------------------------------------------------


def _report_store(session: Session, staff: Staff, code: str | None) -> Store | None:
    """The store a report is for: a manager's own (another is refused); an admin's choice."""
    if not staff.is_admin:
        if code and code.strip() != staff.store_code:
            raise StoreRefused()
        assert staff.store_id is not None
        return session.get_one(Store, staff.store_id)
    return _store(session, code) if code else None


def _day(text: str | None) -> date:
    if not text:
        return _today()
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DateInvalid() from None


@router.get("/counter/reports", response_class=HTMLResponse)
def day_report(
    request: Request,
    visitor: web.ManagerDep,
    session: SessionDep,
    store: str | None = None,
    date: str | None = None,
) -> HTMLResponse:
    """Store managers (their store; admins any store): a store's end-of-day report for a Hong
    Kong date, printable."""
    staff = _staff(visitor)
    chosen = _report_store(session, staff, store)
    day = _day(date)
    return web.page(
        request,
        visitor,
        "web/counter/report_day.html",
        {
            "store": chosen,
            "day": day,
            "report": reports.day_report(session, chosen.id, day) if chosen else None,
            "stores": stores_service.active_stores(session) if staff.is_admin else [],
            "methods": METHOD_NAMES,
            "statuses": STATUS_NAMES,
        },
    )


REPORT_HEADER = (
    _("Type"),
    _("Time"),
    _("Reference"),
    _("Method"),
    _("Pack"),
    _("Agent"),
    _("Currency"),
    _("Amount"),
    _("Status"),
    _("Float"),
    _("Expected"),
    _("Counted"),
    _("Difference"),
)


@router.get("/counter/reports.csv")
def day_report_csv(
    request: Request,
    visitor: web.ManagerDep,
    session: SessionDep,
    store: str | None = None,
    date: str | None = None,
) -> Response:
    """Store managers (their store; admins any store): the end-of-day report as CSV."""
    staff = _staff(visitor)
    chosen = _report_store(session, staff, store)
    if chosen is None:
        raise StoreNotFound()
    day = _day(date)
    report = reports.day_report(session, chosen.id, day)
    lang = visitor.language

    def local(moment: datetime | None) -> str:
        return moment.astimezone(web.LOCAL_TIME).strftime("%Y-%m-%d %H:%M") if moment else ""

    rows: list[list[object]] = []
    for s in report.sales:
        rows.append(
            [
                gettext(_("Sale"), lang),
                local(s.at),
                str(s.order_id),
                gettext(METHOD_NAMES[s.method], lang),
                s.pack_code,
                s.agent,
                s.currency,
                _decimal(s.amount),
                "",
                "",
                "",
                "",
                "",
            ]
        )
    for r in report.refunds:
        rows.append(
            [
                gettext(_("Refund"), lang),
                local(r.at),
                str(r.order_id),
                gettext(METHOD_NAMES[r.method], lang),
                "",
                r.agent,
                r.currency,
                _decimal(-r.amount),
                gettext(STATUS_NAMES[r.status], lang),
                "",
                "",
                "",
                "",
            ]
        )
    for v in report.shifts:
        x = v.shift
        rows.append(
            [
                gettext(_("Shift"), lang),
                local(x.opened_at),
                str(x.id),
                "",
                "",
                v.staff_name,
                x.currency,
                "",
                gettext(STATUS_NAMES[x.status], lang),
                _decimal(x.float_amount),
                _decimal(x.expected_amount),
                _decimal(x.counted_amount),
                _decimal(x.difference),
            ]
        )
    return web.csv_download(
        REPORT_HEADER, rows, f"tongka-day-{chosen.code}-{day.isoformat()}.csv", lang
    )


# --- commission ---------------------------------------------------------------------------------


def _rates_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        "web/counter/commission_rates.html",
        {
            "rates": commission.rate_views(session),
            "levels": commission.LEVELS,
            "errors": errors or {},
            "values": values or {"valid_from": _today().isoformat()},
        },
        status_code=status_code,
    )


@router.get("/counter/commission/rates", response_class=HTMLResponse)
def commission_rates(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: the commission rates, past and present, and a form for a new one."""
    return _rates_page(request, visitor, session)


@router.post("/counter/commission/rates", response_class=HTMLResponse)
def commission_rate_set(
    request: Request, visitor: web.AdminDep, session: SessionDep, form: web.FormDep
) -> Response:
    """Operator admins: a new commission rate from a date (earlier rates stay, for history)."""
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != web.CSRF_FIELD}
    data, errors = web.parse(RateForm, form, visitor.language)
    if data is None:
        return _rates_page(request, visitor, session, errors=errors, values=values, status_code=422)
    try:
        commission.set_rate(
            session,
            _staff(visitor),
            rate_bp=commission.parse_percent(data.rate),
            valid_from=datetime.combine(data.valid_from, time(), web.LOCAL_TIME),
            pack_code=data.pack,
            store_code=data.store,
            agent_username=data.agent,
        )
    except (commission.RateInvalid, commission.RateScopeInvalid) as refused:
        field = "rate" if isinstance(refused, commission.RateInvalid) else "form"
        return _rates_page(
            request,
            visitor,
            session,
            errors={field: refused.detail(visitor.language)},
            values=values,
            status_code=refused.status,
        )
    return web.redirect(request, "/counter/commission/rates")


def _statement_scope(
    session: Session, staff: Staff, store: str | None, agent: str | None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(store_id, staff_id) the viewer may see: an agent only themself; a manager their store's
    agents; an admin anyone. Asking for more is refused."""
    store_id = _store(session, store).id if store else None
    staff_id = None
    if agent:
        member = session.scalar(
            select(StaffMember).where(StaffMember.username == agent.strip().lower())
        )
        if member is None:
            raise StoreRefused() if not staff.is_admin else StoreNotFound()
        staff_id = member.id
        if not staff.is_admin and member.store_id != staff.store_id:
            raise StoreRefused()
    if staff.role == "agent":
        if staff_id not in (None, staff.id):
            raise StoreRefused()
        staff_id = staff.id
    if not staff.is_admin:
        if store_id not in (None, staff.store_id):
            raise StoreRefused()
        store_id = staff.store_id
    return store_id, staff_id


STATEMENT_HEADER = (
    _("Time"),
    _("Type"),
    _("Reference"),
    _("Store"),
    _("Agent"),
    _("Pack"),
    _("Currency"),
    _("Amount"),
    _("Rate (%)"),
    _("Commission"),
)


def _percent(bp: int | None) -> Decimal | str:
    return "" if bp is None else Decimal(bp).scaleb(-2)


@router.get("/counter/commission", response_class=HTMLResponse)
def commission_statement(
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    month: str | None = None,
    store: str | None = None,
    agent: str | None = None,
) -> HTMLResponse:
    """Any staff member (an agent their own; a manager their store's agents; an admin all): the
    monthly commission statement."""
    staff = _staff(visitor)
    first = commission.parse_month(month)
    store_id, staff_id = _statement_scope(session, staff, store, agent)
    found = commission.statement(session, first, store_id=store_id, staff_id=staff_id)
    query = {"month": first.strftime("%Y-%m"), "store": store or "", "agent": agent or ""}
    return web.page(
        request,
        visitor,
        "web/counter/commission_statement.html",
        {
            "statement": found,
            "month": first.strftime("%Y-%m"),
            "store": store or "",
            "agent": agent or "",
            "stores": stores_service.active_stores(session) if staff.is_admin else [],
            "agents": [
                m
                for m in staff_service.members(session, None if staff.is_admin else staff.store_id)
                if m.role != "admin"
            ]
            if staff.is_manager
            else [],
            "levels": commission.LEVELS,
            "csv_query": "&".join(f"{k}={v}" for k, v in query.items() if v),
        },
    )


@router.get("/counter/commission.csv")
def commission_statement_csv(
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    month: str | None = None,
    store: str | None = None,
    agent: str | None = None,
) -> Response:
    """Any staff member (an agent their own; a manager their store's agents; an admin all): the
    monthly commission statement as CSV."""
    staff = _staff(visitor)
    first = commission.parse_month(month)
    store_id, staff_id = _statement_scope(session, staff, store, agent)
    found = commission.statement(session, first, store_id=store_id, staff_id=staff_id)
    lang = visitor.language
    rows = [
        [
            x.at.astimezone(web.LOCAL_TIME).strftime("%Y-%m-%d %H:%M"),
            gettext(_("Sale") if x.kind == "sale" else _("Refund"), lang),
            str(x.order_id),
            x.store_code,
            x.agent,
            x.pack_code,
            x.currency,
            _decimal(x.amount),
            _percent(x.rate_bp),
            _decimal(x.commission),
        ]
        for x in found.lines
    ]
    return web.csv_download(STATEMENT_HEADER, rows, f"tongka-commission-{first:%Y-%m}.csv", lang)
