"""The staff log-in on the web: password and TOTP code; the first time, the authenticator app is
set up from a QR code; log-out. Staff pages then go by role: agents and managers to the counter,
admins to the console.

Between the password and the first code of a new enrolment, the browser carries a signed ticket
(`tongka_staff_enrol`, ten minutes): the password is not asked twice, and no session exists
until the code is confirmed.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka import clock, web
from tongka.deps import SessionDep, SettingsDep, client_address, hashing_policy
from tongka.errors import TongkaError
from tongka.i18n import _, gettext
from tongka.staff import audit, signing_in
from tongka.staff import service as staff
from tongka.staff.models import StaffMember

router = APIRouter(include_in_schema=False)

ENROL_COOKIE = "tongka_staff_enrol"
ENROL_SECONDS = 600
LOGIN = "web/staff/login.html"
ENROL = "web/staff/enrol.html"


class CodeWrong(TongkaError):
    status = 400
    code = "totp_code_wrong"
    message = _("That code is not right. Enter the code the app shows now.")


class StaffLoginForm(BaseModel):
    username: str = Field(min_length=1, max_length=32)
    password: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, pattern=r"^\s*\d{3}\s?\d{3}\s*$")


class CodeForm(BaseModel):
    code: str = Field(pattern=r"^\s*\d{3}\s?\d{3}\s*$")


def _home(member: staff.Staff | StaffMember) -> str:
    return "/console" if member.role == "admin" else "/counter"


def _text(posted: Any, name: str) -> str:
    value = posted.get(name)
    return value if isinstance(value, str) else ""


# --- the enrolment ticket ------------------------------------------------------------------------


def _ticket_mac(secret_key: str, body: str) -> str:
    return hmac.new(
        secret_key.encode(), b"staff-enrol:" + body.encode(), hashlib.sha256
    ).hexdigest()


def _ticket(secret_key: str, staff_id: uuid.UUID) -> str:
    body = f"{staff_id}.{int(clock.now().timestamp()) + ENROL_SECONDS}"
    return f"{body}.{_ticket_mac(secret_key, body)}"


def _ticket_staff(secret_key: str, ticket: str | None) -> uuid.UUID | None:
    if not ticket or ticket.count(".") != 2:
        return None
    staff_id, expires, mac = ticket.split(".")
    body = f"{staff_id}.{expires}"
    if not hmac.compare_digest(mac, _ticket_mac(secret_key, body)):
        return None
    if not expires.isdigit() or int(expires) < clock.now().timestamp():
        return None
    try:
        return uuid.UUID(staff_id)
    except ValueError:
        return None


def _qr_svg(uri: str, title: str) -> str:
    return str(segno.make(uri, error="m").svg_inline(scale=5, title=title, border=2))


# --- pages ---------------------------------------------------------------------------------------


@router.get("/staff/login", response_class=HTMLResponse)
def staff_login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """Anyone: the staff log-in form (password and authenticator code)."""
    visitor = web.Visitor(web.language_of(request))
    return web.page(
        request, visitor, LOGIN, {"next": web.safe_next(next, "/staff"), "values": {}, "errors": {}}
    )


@router.post("/staff/login")
async def staff_login(request: Request, posted: web.FormDep, settings: SettingsDep) -> Response:
    """Anyone: log in as staff with a password and TOTP code; a member not yet enrolled is shown the QR code to scan."""
    visitor = web.Visitor(web.language_of(request))
    target = web.safe_next(_text(posted, "next"), "/staff")
    context: dict[str, Any] = {
        "next": target,
        "values": {"username": _text(posted, "username")},
        "errors": {},
    }
    form, context["errors"] = web.parse(StaffLoginForm, posted, visitor.language)
    if form is None:
        return web.page(request, visitor, LOGIN, context, status_code=400)
    address = client_address(request)
    secret_key = settings.secret_key.get_secret_value()

    def signed_in(session: Session, member: StaffMember) -> Response:
        if not member.enrolled:
            staff.start_enrolment(session, member, secret_key)
            response = web.redirect(request, f"/staff/enrol?next={target}")
            response.set_cookie(
                ENROL_COOKIE,
                _ticket(secret_key, member.id),
                max_age=ENROL_SECONDS,
                httponly=True,
                samesite="strict",
                secure=not settings.dev,
            )
            return response
        token = staff.open_session(session, member, settings.staff_session_ttl_seconds, address)
        audit.record(
            session, staff.as_staff(session, member, address), "staff.login", "staff", member.id
        )
        response = web.redirect(request, target if target != "/staff" else _home(member))
        web.staff_sign_in(request, response, token)
        return response

    try:
        return await signing_in.log_in(
            request.app.state.sessionmaker,
            request.app.state.gate,
            username=form.username,
            password=form.password,
            code=form.code,
            address=address,
            hashing=hashing_policy(settings),
            secret_key=secret_key,
            then=signed_in,
        )
    except (staff.StaffLoginFailed, staff.StaffLoginThrottled) as refusal:
        response = web.page(
            request,
            visitor,
            LOGIN,
            {**context, "error": refusal.detail(visitor.language)},
            status_code=refusal.status,
        )
        response.headers.update(refusal.headers())
        return response


def _enrolling(request: Request, session: Session, secret_key: str) -> StaffMember:
    staff_id = _ticket_staff(secret_key, request.cookies.get(ENROL_COOKIE))
    member = session.get(StaffMember, staff_id) if staff_id else None
    if member is None or member.enrolled or member.totp_pending is None or not member.active:
        raise web.StaffLoginRequired()
    return member


def _enrol_page(
    request: Request,
    visitor: web.Visitor,
    member: StaffMember,
    secret_key: str,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    uri = staff.pending_uri(member, secret_key) or ""
    secret = uri.split("secret=")[1].split("&")[0] if "secret=" in uri else ""
    return web.page(
        request,
        visitor,
        ENROL,
        {
            **context,
            "qr_svg": _qr_svg(
                uri, gettext(_("QR code for your authenticator app"), visitor.language)
            ),
            "secret": secret,
        },
        status_code=status,
    )


@router.get("/staff/enrol", response_class=HTMLResponse)
def staff_enrol_form(
    request: Request, session: SessionDep, settings: SettingsDep, next: str | None = None
) -> HTMLResponse:
    """Anyone with a fresh enrolment ticket (the password just proven): the QR code of their new TOTP secret."""
    visitor = web.Visitor(web.language_of(request))
    member = _enrolling(request, session, settings.secret_key.get_secret_value())
    return _enrol_page(
        request,
        visitor,
        member,
        settings.secret_key.get_secret_value(),
        {"next": web.safe_next(next, "/staff"), "errors": {}},
    )


@router.post("/staff/enrol")
def staff_enrol(
    request: Request, posted: web.FormDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Anyone with a fresh enrolment ticket: confirm the app with its first code; the staff session starts."""
    visitor = web.Visitor(web.language_of(request))
    secret_key = settings.secret_key.get_secret_value()
    member = _enrolling(request, session, secret_key)
    target = web.safe_next(_text(posted, "next"), "/staff")
    form, errors = web.parse(CodeForm, posted, visitor.language)
    if form is None or not staff.confirm_enrolment(session, member, secret_key, form.code):
        errors = errors or {"code": CodeWrong().detail(visitor.language)}
        return _enrol_page(
            request, visitor, member, secret_key, {"next": target, "errors": errors}, 400
        )
    address = client_address(request)
    token = staff.open_session(session, member, settings.staff_session_ttl_seconds, address)
    actor = staff.as_staff(session, member, address)
    audit.record(session, actor, "staff.enrol", "staff", member.id)
    response = web.redirect(request, target if target != "/staff" else _home(member))
    response.delete_cookie(ENROL_COOKIE)
    web.staff_sign_in(request, response, token)
    return response


@router.post("/staff/logout")
def staff_logout(request: Request, posted: web.FormDep, session: SessionDep) -> Response:
    """Anyone: end this browser's staff session (a no-op without one)."""
    token = request.cookies.get(web.STAFF_COOKIE)
    if token:
        staff.close_session(session, token)
    response = web.redirect(request, "/staff/login")
    response.delete_cookie(web.STAFF_COOKIE)
    return response


@router.get("/staff", response_class=HTMLResponse)
def staff_home(request: Request, visitor: web.StaffDep) -> Response:
    """Any staff member: to their own start page (the counter, or the console for an admin)."""
    assert visitor.staff is not None
    return web.redirect(request, _home(visitor.staff))
