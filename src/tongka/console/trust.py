"""The console's trust pages: the list of official channels that /official checks against, and the
scam reports people sent, grouped by the value reported.

Who may open them: operator admins. Every change is written to the audit log in its transaction.
"""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka import web
from tongka.deps import SessionDep
from tongka.errors import TongkaError, Unprocessable
from tongka.i18n import _, gettext
from tongka.staff.service import Staff
from tongka.trust import service
from tongka.trust.models import CAMPAIGN_STATUSES, SEEN_IN

router = APIRouter(include_in_schema=False)

STATUS_NAMES = {
    "new": _("New"),
    "reviewed": _("Reviewed"),
    "reported_to_police": _("Reported to the police"),
}
SEEN_IN_SHORT = {
    "sms": _("SMS"),
    "call": _("Phone call"),
    "messaging": _("Chat app"),
    "email": _("Email"),
    "web": _("Web site"),
    "other": _("Somewhere else"),
}


class ChannelForm(BaseModel):
    kind: Literal["phone", "web", "email", "social"]
    value: str = Field(min_length=1, max_length=255)
    platform: str = Field(default="", max_length=32)
    label_en: str = Field(min_length=1, max_length=120)
    label_zh_hans: str = Field(default="", max_length=120)
    label_zh_hant: str = Field(default="", max_length=120)


class ReviewForm(BaseModel):
    status: Literal["new", "reviewed", "reported_to_police"]
    note: str = Field(default="", max_length=2000)


def _staff(visitor: web.Visitor) -> Staff:
    assert visitor.staff is not None  # AdminDep let only staff through
    return visitor.staff


def _channels_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    values: dict[str, str] | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    language = visitor.language
    return web.page(
        request,
        visitor,
        "web/console/official_list.html",
        {
            "channels": service.channels(session),
            "kinds": [
                (k, gettext(service.KIND_NAMES[k], language))
                for k in ("phone", "web", "email", "social")
            ],
            "platforms": service.PLATFORMS,
            "errors": errors or {},
            "error": error,
            "values": values or {},
            "done": done,
        },
        status_code=status_code,
    )


@router.get("/console/official", response_class=HTMLResponse)
def official_list(
    request: Request, visitor: web.AdminDep, session: SessionDep, done: str | None = None
) -> Response:
    """Operator admins: tongka's official channels (numbers, sites, senders, accounts), and adding one."""
    return _channels_page(request, visitor, session, done=done)


@router.post("/console/official", response_class=HTMLResponse)
def official_add(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: put a channel on the official list."""
    values = {k: v for k, v in posted.items() if isinstance(v, str) and k != web.CSRF_FIELD}
    form, errors = web.parse(ChannelForm, posted, visitor.language)
    if form is None:
        return _channels_page(
            request, visitor, session, errors=errors, values=values, status_code=400
        )
    try:
        channel = service.add_channel(
            session,
            _staff(visitor),
            kind=form.kind,
            value=form.value,
            platform=form.platform,
            labels={
                "en": form.label_en,
                "zh-Hans": form.label_zh_hans,
                "zh-Hant": form.label_zh_hant,
            },
        )
    except TongkaError as refusal:
        session.rollback()
        return _channels_page(
            request,
            visitor,
            session,
            error=refusal.detail(visitor.language),
            values=values,
            status_code=refusal.status,
        )
    return web.redirect(request, f"/console/official?done={channel.value}")


@router.post("/console/official/{channel_id}/remove", response_class=HTMLResponse)
def official_remove(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    channel_id: uuid.UUID,
) -> Response:
    """Operator admins: take a channel off the official list (it then checks as not official)."""
    channel = service.remove_channel(session, _staff(visitor), channel_id)
    return web.redirect(request, f"/console/official?done={channel.value}")


@router.get("/console/scam-reports", response_class=HTMLResponse)
def scam_reports(
    request: Request,
    visitor: web.AdminDep,
    session: SessionDep,
    status: Literal["new", "reviewed", "reported_to_police"] | None = None,
) -> Response:
    """Operator admins: reported values, the most recently reported first: how often, when, where seen."""
    language = visitor.language
    return web.page(
        request,
        visitor,
        "web/console/scam_reports.html",
        {
            "campaigns": service.campaigns(session, status),
            "status": status,
            "statuses": [(s, gettext(STATUS_NAMES[s], language)) for s in CAMPAIGN_STATUSES],
            "status_names": {s: gettext(STATUS_NAMES[s], language) for s in CAMPAIGN_STATUSES},
            "seen_names": {s: gettext(SEEN_IN_SHORT[s], language) for s in SEEN_IN},
        },
    )


@router.get("/console/scam-reports/{campaign_id}", response_class=HTMLResponse)
def scam_report(
    request: Request, visitor: web.AdminDep, session: SessionDep, campaign_id: uuid.UUID
) -> Response:
    """Operator admins: every report of one value, with what it said and its screenshot."""
    language = visitor.language
    return web.page(
        request,
        visitor,
        "web/console/scam_report.html",
        {
            "campaign": service.campaign(session, campaign_id),
            "reports": service.reports(session, campaign_id),
            "statuses": [(s, gettext(STATUS_NAMES[s], language)) for s in CAMPAIGN_STATUSES],
            "status_names": {s: gettext(STATUS_NAMES[s], language) for s in CAMPAIGN_STATUSES},
            "seen_names": {s: gettext(SEEN_IN_SHORT[s], language) for s in SEEN_IN},
        },
    )


@router.post("/console/scam-reports/{campaign_id}", response_class=HTMLResponse)
def scam_review(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    campaign_id: uuid.UUID,
) -> Response:
    """Operator admins: mark a reported value reviewed or reported to the police, with a note."""
    form, errors = web.parse(ReviewForm, posted, visitor.language)
    if form is None:
        raise Unprocessable(next(iter(errors.values())))
    service.review(session, _staff(visitor), campaign_id, status=form.status, note=form.note)
    back = posted.get("back")
    to = back if back == f"/console/scam-reports/{campaign_id}" else "/console/scam-reports"
    return web.redirect(request, to)


@router.get("/console/scam-reports/screenshots/{report_id}")
def scam_screenshot(visitor: web.AdminDep, session: SessionDep, report_id: uuid.UUID) -> Response:
    """Operator admins: a report's screenshot, as the PNG or JPEG its bytes are."""
    found = service.screenshot(session, report_id)
    assert found.screenshot is not None and found.screenshot_type is not None
    return Response(
        found.screenshot,
        media_type=found.screenshot_type,
        headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": "inline",
        },
    )
