"""The audit log in the console: every staff action, searched by text, staff member, store, action
and Hong Kong dates, newest first; the same search as CSV.

Who may open it: operator admins. The log is only read here: nothing in tongka updates or
deletes an entry (and the database refuses to, migration 0018_audit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tongka import clock, web
from tongka.deps import SessionDep
from tongka.i18n import _
from tongka.staff import audit
from tongka.staff.models import AuditEntry

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
CSV_MAX_ROWS = 10_000  # one export; a longer log is exported a period at a time
CSV_HEADER = (
    _("When"),
    _("Username"),
    _("Role"),
    _("Store"),
    _("Action"),
    _("Object"),
    _("Object id"),
    _("Before"),
    _("After"),
    _("Address"),
)


class Filters(BaseModel):
    """The search, as GET query fields; dates are Hong Kong days, both included."""

    model_config = ConfigDict(populate_by_name=True)

    text: str | None = Field(default=None, max_length=64)
    username: str | None = Field(default=None, max_length=32)
    store: str | None = Field(default=None, max_length=40)
    action: str | None = Field(default=None, max_length=64)
    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")
    page: int = Field(default=1, ge=1, le=10_000)

    def search(self) -> audit.Search:
        def day(d: date) -> datetime:
            return datetime.combine(d, time(), web.LOCAL_TIME)

        return audit.Search(
            text=self.text or None,
            username=self.username or None,
            store_code=self.store or None,
            action=self.action or None,
            since=day(self.start) if self.start else None,
            until=day(self.end + timedelta(days=1)) if self.end else None,
        )

    def query(self, **change: object) -> str:
        fields = {
            "text": self.text,
            "username": self.username,
            "store": self.store,
            "action": self.action,
            "from": self.start,
            "to": self.end,
            "page": self.page,
            **change,
        }
        return urlencode({k: str(v) for k, v in fields.items() if v not in (None, "", 1)})


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


def _text(value: Any) -> str:
    if value is None:
        return "–"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def changes(entry: AuditEntry) -> list[Change]:
    """The fields that differ between before and after (all of them for an object added or removed)."""
    before, after = entry.before or {}, entry.after or {}
    return [
        Change(field, _text(before.get(field)), _text(after.get(field)))
        for field in [*before, *(k for k in after if k not in before)]
        if before.get(field) != after.get(field) or field not in before or field not in after
    ]


def _filters(request: Request, language: str) -> tuple[Filters, dict[str, str]]:
    model, errors = web.parse(Filters, request.query_params, language)
    return (model if model is not None else Filters()), errors


@router.get("/console/audit", response_class=HTMLResponse)
def audit_page(request: Request, visitor: web.AdminDep, session: SessionDep) -> Response:
    """Operator admins: the audit log, searched, newest first: who, role, store, action, object, before and after, when, from where."""
    filters, errors = _filters(request, visitor.language)
    found, total = audit.search(
        session, filters.search(), limit=PER_PAGE, offset=(filters.page - 1) * PER_PAGE
    )
    query = filters.query(page=None)
    return web.page(
        request,
        visitor,
        "web/console/audit_list.html",
        {
            "filters": filters,
            "errors": errors,
            "entries": [(e, changes(e)) for e in found],
            "total": total,
            "previous": filters.query(page=filters.page - 1) if filters.page > 1 else None,
            "next": filters.query(page=filters.page + 1)
            if filters.page * PER_PAGE < total
            else None,
            "csv": "/console/audit.csv" + (f"?{query}" if query else ""),
        },
        status_code=400 if errors else 200,
    )


def csv_rows(entries: list[AuditEntry]) -> Iterator[tuple[str, ...]]:
    for e in entries:
        yield (
            e.at.astimezone(web.LOCAL_TIME).isoformat(timespec="seconds"),
            e.username,
            e.role,
            e.store_code or "",
            e.action,
            e.object_type,
            e.object_id or "",
            json.dumps(e.before, ensure_ascii=False, sort_keys=True) if e.before else "",
            json.dumps(e.after, ensure_ascii=False, sort_keys=True) if e.after else "",
            e.address or "",
        )


@router.get("/console/audit.csv")
def audit_csv(request: Request, visitor: web.AdminDep, session: SessionDep) -> Response:
    """Operator admins: the audit log with the same search, as CSV for a spreadsheet."""
    filters, _errors = _filters(request, visitor.language)
    found, _total = audit.search(session, filters.search(), limit=CSV_MAX_ROWS)
    today = clock.now().astimezone(web.LOCAL_TIME).date().isoformat()
    return web.csv_download(
        CSV_HEADER, csv_rows(found), f"tongka-audit-{today}.csv", visitor.language
    )
