"""The console's SIM inventory: upload a CSV of SIMs (iccid, hk_number, cn_number, imsi) and read
the row report; how many lines nobody has bound yet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from tongka import web
from tongka.account import lines
from tongka.deps import SessionDep, SettingsDep
from tongka.i18n import _
from tongka.staff import audit

router = APIRouter(include_in_schema=False)

PAGE = "web/console/inventory.html"


def uploaded_text(posted: Any, name: str = "file") -> str | None:
    """The uploaded file's text (UTF-8, a spreadsheet's byte-order mark allowed); None if there is
    none or it is not text."""
    upload = posted.get(name)
    if not isinstance(upload, UploadFile):
        return None
    try:
        return upload.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    settings: SettingsDep,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        PAGE,
        {
            "unbound": lines.unbound_count(session),
            "max_kb": settings.max_body_bytes // 1024,
            "report": None,
            "error": None,
            **context,
        },
        status_code=status,
    )


@router.get("/console/inventory", response_class=HTMLResponse)
def console_inventory(
    request: Request, visitor: web.AdminDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Operator admins: the SIM inventory: lines not yet bound, and the CSV import form."""
    return _page(request, visitor, session, settings, {})


@router.post("/console/inventory")
def console_inventory_import(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Operator admins: import SIMs from a CSV file: each good row added, each bad one reported by line."""
    assert visitor.staff is not None
    text = uploaded_text(posted)
    if not text:
        error = web.translator(visitor.language)(_("Choose a CSV file (UTF-8 text)."))
        return _page(request, visitor, session, settings, {"error": error}, 400)
    report = lines.import_csv_text(session, text)
    audit.record(
        session,
        visitor.staff,
        "inventory.import",
        "inventory",
        None,
        after={
            "added": report.added,
            "unchanged": report.unchanged,
            "rejected": len(report.errors),
        },
    )
    return _page(request, visitor, session, settings, {"report": report})
