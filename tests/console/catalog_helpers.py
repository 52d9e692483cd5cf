"""What the console's catalog, offers, inventory and people tests share: an admin's browser,
posting a console form, the audit entries of an action."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka.db import transaction
from tongka.staff.models import AuditEntry


def admin(client: httpx.Client, sessions: sessionmaker[Session], settings: Any) -> f.StaffLogin:
    """An operator admin whose browser is `client`."""
    return f.staff(client, sessions, settings, role="admin")


def post(
    client: httpx.Client,
    path: str,
    data: dict[str, Any],
    *,
    page: str | None = None,
    files: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST a console form as the browser does, with the CSRF token of `page` (default: `path`)."""
    token = form_token(client, page or path)
    return client.post(
        path,
        data={"csrf_token": token, **data},
        files=files,
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


def audit_entries(sessions: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with transaction(sessions, read_only=True) as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        s.expunge_all()
        return rows
