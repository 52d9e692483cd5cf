"""/official: "Is this official?" Anyone types a number, link, address or account and is told
whether it is one of tongka's; and anyone may report a suspected scam (with a screenshot).

Who may call: anyone. Checks are throttled per client address, reports per address and per value.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from tongka import web
from tongka.deps import SessionDep, client_address
from tongka.errors import TongkaError, TooManyRequests
from tongka.i18n import _, gettext
from tongka.trust import service
from tongka.trust.models import SEEN_IN

router = APIRouter(include_in_schema=False)


async def _counted(request: Request) -> None:
    """A check is counted against the client's address (in a write turn of its own) before it runs."""
    if request.query_params.get("value", "").strip():
        async with request.app.state.gate.enter(True):
            await run_in_threadpool(
                service.count_check, request.app.state.sessionmaker, client_address(request)
            )


CountedCheck = Depends(_counted)

SEEN_IN_NAMES = {
    "sms": _("SMS"),
    "call": _("Phone call"),
    "messaging": _("WhatsApp, WeChat or another chat app"),
    "email": _("Email"),
    "web": _("Web site"),
    "other": _("Somewhere else"),
}


class ReportForm(BaseModel):
    value: str = Field(min_length=1, max_length=service.MAX_INPUT)
    seen_in: Literal["sms", "call", "messaging", "email", "web", "other"]
    text: str = Field(default="", max_length=2000)


def _page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    *,
    value: str = "",
    result: dict[str, Any] | None = None,
    error: str | None = None,
    report: dict[str, str] | None = None,
    report_errors: dict[str, str] | None = None,
    report_error: str | None = None,
    reported: bool = False,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    language = visitor.language
    channels = [
        {
            "kind": gettext(service.KIND_NAMES[c.kind], language),
            "value": c.value,
            "platform": c.platform,
            "label": c.label(language),
        }
        for c in service.channels(session, active_only=True)
    ]
    response = web.page(
        request,
        visitor,
        "web/official.html",
        {
            "value": value,
            "result": result,
            "error": error,
            "channels": channels,
            "seen_in": [(s, gettext(SEEN_IN_NAMES[s], language)) for s in SEEN_IN],
            "report": report or {},
            "report_errors": report_errors or {},
            "report_error": report_error,
            "reported": reported,
            "max_mb": service.SCREENSHOT_MAX_BYTES // (1024 * 1024),
        },
        status_code=status_code,
    )
    response.headers.update(headers or {})
    return response


@router.get("/official", response_class=HTMLResponse, dependencies=[CountedCheck])
def official_page(
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    value: str = "",
    reported: bool = False,
) -> HTMLResponse:
    """Anyone: type a number, link, email address or account and see whether it is tongka's."""
    value = value.strip()[: service.MAX_INPUT]
    if not value:
        return _page(request, visitor, session, reported=reported)
    try:
        answer = service.check(session, value)
    except TongkaError as refusal:
        return _page(
            request,
            visitor,
            session,
            value=value,
            error=refusal.detail(visitor.language),
            status_code=refusal.status,
            headers=refusal.headers(),
        )
    return _page(
        request,
        visitor,
        session,
        value=value,
        result=service.answer_view(answer, visitor.language),
        report={"value": value} if not answer.official else None,
    )


@router.post("/official/report", response_model=None)
def report_scam(
    request: Request, visitor: web.VisitorDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Anyone: report a suspected scam: the number or link, where it was seen, what it said, a screenshot."""
    values = {k: v for k in ("value", "seen_in", "text") if isinstance(v := posted.get(k), str)}
    form, errors = web.parse(ReportForm, values, visitor.language)

    def refused(
        errors: dict[str, str] | None = None, error: str | None = None, status: int = 400
    ) -> HTMLResponse:
        return _page(
            request,
            visitor,
            session,
            report=values,
            report_errors=errors,
            report_error=error,
            status_code=status,
        )

    if form is None:
        return refused(errors)
    upload = posted.get("screenshot")
    picture = None
    if isinstance(upload, UploadFile) and upload.filename:
        picture = upload.file.read(service.SCREENSHOT_MAX_BYTES + 1)
    try:
        service.report(
            session,
            value=form.value,
            seen_in=form.seen_in,
            text=form.text,
            screenshot=picture or None,
            address=client_address(request),
        )
    except service.NotReadable as refusal:
        return refused({"value": refusal.detail(visitor.language)}, status=refusal.status)
    except service.ScreenshotRefused as refusal:
        return refused({"screenshot": refusal.detail(visitor.language)}, status=refusal.status)
    except TooManyRequests as refusal:
        session.rollback()
        response = refused(error=refusal.detail(visitor.language), status=refusal.status)
        response.headers.update(refusal.headers())
        return response
    return web.redirect(request, "/official?reported=1#report")
