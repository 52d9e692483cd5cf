"""The console's stores and staff. Stores: the list, the stores CSV import (all or nothing) and
closing or reopening one. Staff: the list, a new member, role and store, a new TOTP set-up, a new
password, deactivating. A change to how someone logs in or what they may do ends their sessions.
Every change is in the audit log (never a password)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka import web
from tongka.account import service as accounts
from tongka.console.inventory import uploaded_text
from tongka.db import transaction
from tongka.deps import SessionDep, SettingsDep, hashing_policy
from tongka.errors import TongkaError
from tongka.i18n import _
from tongka.staff import audit
from tongka.staff import service as staff
from tongka.staff.models import ROLES, StaffMember
from tongka.stores import service as stores

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

STORES = "web/console/stores.html"
STAFF = "web/console/staff_list.html"
MEMBER = "web/console/staff_member.html"


# --- stores --------------------------------------------------------------------------------------


def _stores_page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        STORES,
        {
            "stores": stores.all_stores(session),
            "columns": stores.COLUMNS,
            "report": None,
            "error": None,
            **(context or {}),
        },
        status_code=status,
    )


@router.get("/console/stores", response_class=HTMLResponse)
def console_stores(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: every store, open or closed, and the stores CSV import form."""
    return _stores_page(request, visitor, session)


@router.post("/console/stores")
def console_stores_import(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: import stores from a CSV file: every row checked first; any wrong row and nothing is written."""
    assert visitor.staff is not None
    text = uploaded_text(posted)
    if not text:
        error = web.translator(visitor.language)(_("Choose a CSV file (UTF-8 text)."))
        return _stores_page(request, visitor, session, {"error": error}, 400)
    report = stores.import_stores(session, io.StringIO(text, newline=""))
    if report.errors:
        return _stores_page(request, visitor, session, {"report": report}, 400)
    audit.record(
        session,
        visitor.staff,
        "store.import",
        "store",
        None,
        after={"added": report.added, "updated": report.updated, "unchanged": report.unchanged},
    )
    return _stores_page(request, visitor, session, {"report": report})


@router.post("/console/stores/{store_id}/active")
def console_store_active(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    store_id: uuid.UUID,
) -> Response:
    """Operator admins: close a store (it leaves the store finder) or open it again."""
    assert visitor.staff is not None
    store = stores.get(session, store_id)
    active = posted.get("active") == "on"
    if store.active != active:
        audit.record(
            session,
            visitor.staff,
            "store.activate" if active else "store.deactivate",
            "store",
            store.id,
            before={"code": store.code, "active": store.active},
            after={"code": store.code, "active": active},
        )
        store.active = active
    return web.redirect(request, "/console/stores")


# --- staff ---------------------------------------------------------------------------------------


class NewStaffForm(BaseModel):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    display_name: str = Field(min_length=1, max_length=64)
    role: str = Field(pattern="^(agent|manager|admin)$")
    store: str | None = Field(default=None, max_length=40)
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=200)


class RoleForm(BaseModel):
    role: str = Field(pattern="^(agent|manager|admin)$")
    store: str | None = Field(default=None, max_length=40)


class PasswordForm(BaseModel):
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=200)


def _text(posted: Any, name: str) -> str:
    value = posted.get(name)
    return value.strip() if isinstance(value, str) else ""


def _staff_page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    every_store = stores.all_stores(session)
    return web.page(
        request,
        visitor,
        STAFF,
        {
            "members": staff.members(session),
            "store_codes": {s.id: s.code for s in every_store},
            "stores": every_store,
            "last_logins": audit.last_logins(session),
            "roles": ROLES,
            "min_password": accounts.MIN_PASSWORD,
            "values": {},
            "errors": {},
            **(context or {}),
        },
        status_code=status,
    )


@router.get("/console/staff", response_class=HTMLResponse)
def console_staff(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: every staff member (role, store, TOTP set up, active, last log-in) and the form for a new one."""
    return _staff_page(request, visitor, session)


def _facts(session: SessionDep, member: StaffMember) -> dict[str, Any]:
    """What the audit log keeps of a member (never the password or TOTP secret)."""
    return {
        "username": member.username,
        "role": member.role,
        "store": staff.as_staff(session, member).store_code,
        "totp": member.enrolled,
        "active": member.active,
    }


def _refusal(error: TongkaError) -> str:
    """The form field a staff refusal belongs to."""
    if isinstance(error, staff.StaffUsernameTaken):
        return "username"
    if isinstance(error, accounts.WeakPassword):
        return "password"
    if isinstance(error, staff.StoreUnknown | staff.StaffInvalid):
        return "store"
    return "form"


async def _in_transaction(
    request: Request, work: Callable[[Session], T], *, write: bool = True
) -> T:
    """`work` in a transaction of its own, in a worker thread, in its turn at the gate: for the
    routes that hash a password first, with no transaction open."""

    def run() -> T:
        with transaction(request.app.state.sessionmaker, read_only=not write) as session:
            return work(session)

    async with request.app.state.gate.enter(write):
        return await run_in_threadpool(run)


@router.post("/console/staff")
async def console_staff_add(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, settings: SettingsDep
) -> Response:
    """Operator admins: add a staff member with a first password; they set up TOTP at their first log-in."""
    assert visitor.staff is not None
    actor, language = visitor.staff, visitor.language
    values = {k: _text(posted, k) for k in ("username", "display_name", "role", "store")}
    form, errors = web.parse(
        NewStaffForm, {**values, "password": posted.get("password") or ""}, language
    )

    def refused(errors: dict[str, str]) -> Callable[[Session], Response]:
        return lambda session: _staff_page(
            request, visitor, session, {"values": values, "errors": errors}, 400
        )

    if form is None:
        return await _in_transaction(request, refused(errors), write=False)
    try:
        # The slow Argon2 hash before the transaction opens.
        password_hash = await run_in_threadpool(
            accounts.new_password_hash, form.username, form.password, hashing_policy(settings)
        )
    except TongkaError as e:
        return await _in_transaction(
            request, refused({"password": e.detail(language)}), write=False
        )

    def add(session: Session) -> Response:
        try:
            member = staff.add(
                session,
                username=form.username,
                display_name=form.display_name,
                role=form.role,
                store_code=None if form.role == "admin" else (form.store or None),
                password_hash=password_hash,
            )
            session.flush()
        except TongkaError as e:
            return refused({_refusal(e): e.detail(language)})(session)
        audit.record(session, actor, "staff.add", "staff", member.id, after=_facts(session, member))
        return web.redirect(request, f"/console/staff/{member.id}?saved=added")

    return await _in_transaction(request, add)


def _member_page(
    request: Request,
    visitor: web.Visitor,
    session: Any,
    member: StaffMember,
    *,
    errors: dict[str, str] | None = None,
    saved: str | None = None,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        MEMBER,
        {
            "member": member,
            "store_code": staff.as_staff(session, member).store_code,
            "stores": stores.all_stores(session),
            "roles": ROLES,
            "min_password": accounts.MIN_PASSWORD,
            "last_login": audit.last_logins(session).get(member.id),
            "errors": errors or {},
            "saved": saved,
            "is_self": visitor.staff is not None and visitor.staff.id == member.id,
        },
        status_code=400 if errors else 200,
    )


@router.get("/console/staff/{staff_id}", response_class=HTMLResponse)
def console_staff_member(
    request: Request,
    visitor: web.AdminDep,
    session: SessionDep,
    staff_id: uuid.UUID,
    saved: str | None = None,
) -> HTMLResponse:
    """Operator admins: one staff member: role and store, TOTP, password, active."""
    return _member_page(request, visitor, session, staff.get(session, staff_id), saved=saved)


@router.post("/console/staff/{staff_id}/role")
def console_staff_role(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    staff_id: uuid.UUID,
) -> Response:
    """Operator admins: change a member's role and store; their sessions end."""
    assert visitor.staff is not None
    member = staff.get(session, staff_id, lock=True)
    form, errors = web.parse(
        RoleForm, {"role": _text(posted, "role"), "store": _text(posted, "store")}, visitor.language
    )
    if form is None:
        return _member_page(request, visitor, session, member, errors=errors)
    before = _facts(session, member)
    try:
        changed = staff.change_role(
            session,
            visitor.staff,
            member,
            form.role,
            None if form.role == "admin" else (form.store or None),
        )
    except TongkaError as e:
        return _member_page(
            request, visitor, session, member, errors={_refusal(e): e.detail(visitor.language)}
        )
    if changed:
        audit.record(
            session,
            visitor.staff,
            "staff.role",
            "staff",
            member.id,
            before=before,
            after=_facts(session, member),
        )
    return web.redirect(request, f"/console/staff/{member.id}?saved=role")


@router.post("/console/staff/{staff_id}/totp")
def console_staff_totp(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    staff_id: uuid.UUID,
) -> Response:
    """Operator admins: reset a member's TOTP: they set up their app again at their next log-in; their sessions end."""
    assert visitor.staff is not None
    member = staff.get(session, staff_id, lock=True)
    before = _facts(session, member)
    staff.reset_totp(session, member)
    audit.record(
        session,
        visitor.staff,
        "staff.totp_reset",
        "staff",
        member.id,
        before=before,
        after=_facts(session, member),
    )
    return web.redirect(request, f"/console/staff/{member.id}?saved=totp")


@router.post("/console/staff/{staff_id}/password")
async def console_staff_password(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    settings: SettingsDep,
    staff_id: uuid.UUID,
) -> Response:
    """Operator admins: set a new password for a member (10 characters or more); their sessions end."""
    assert visitor.staff is not None
    actor, language = visitor.staff, visitor.language
    form, errors = web.parse(PasswordForm, {"password": posted.get("password") or ""}, language)

    def refused(errors: dict[str, str]) -> Callable[[Session], Response]:
        return lambda session: _member_page(
            request, visitor, session, staff.get(session, staff_id), errors=errors
        )

    if form is None:
        return await _in_transaction(request, refused(errors), write=False)
    username = await _in_transaction(
        request, lambda session: staff.get(session, staff_id).username, write=False
    )
    try:
        password_hash = await run_in_threadpool(
            accounts.new_password_hash, username, form.password, hashing_policy(settings)
        )
    except TongkaError as e:
        return await _in_transaction(
            request, refused({"password": e.detail(language)}), write=False
        )

    def save(session: Session) -> Response:
        member = staff.get(session, staff_id, lock=True)
        staff.set_password(session, member, password_hash)
        audit.record(session, actor, "staff.password_reset", "staff", member.id)
        return web.redirect(request, f"/console/staff/{staff_id}?saved=password")

    return await _in_transaction(request, save)


@router.post("/console/staff/{staff_id}/active")
def console_staff_active(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    staff_id: uuid.UUID,
) -> Response:
    """Operator admins: deactivate a member (their sessions end, they cannot log in) or activate them again; not themselves."""
    assert visitor.staff is not None
    member = staff.get(session, staff_id, lock=True)
    active = posted.get("active") == "on"
    before = _facts(session, member)
    try:
        changed = staff.set_active(session, visitor.staff, member, active)
    except TongkaError as e:
        return _member_page(
            request, visitor, session, member, errors={"form": e.detail(visitor.language)}
        )
    if changed:
        audit.record(
            session,
            visitor.staff,
            "staff.activate" if active else "staff.deactivate",
            "staff",
            member.id,
            before=before,
            after=_facts(session, member),
        )
    return web.redirect(request, f"/console/staff/{member.id}?saved=active")
