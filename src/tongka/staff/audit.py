"""The audit log: every staff action, written in the same transaction as the action itself (an
action rolled back leaves no entry; an entry never exists without its action)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.staff.models import AuditEntry
from tongka.staff.service import Staff

# A command run on the server (`tongka staff add`, the demo loader): no staff member, the machine's operator.
CLI = Staff(uuid.UUID(int=0), "cli", "command line", "admin", None, None)


def record(
    session: Session,
    actor: Staff,
    action: str,
    object_type: str,
    object_id: object | None = None,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Appends one entry. `before` and `after` are the object's fields a reader needs (never a
    password, a secret or a full identity number: the caller passes masked values)."""
    entry = AuditEntry(
        at=clock.now(),
        staff_id=None if actor is CLI else actor.id,
        username=actor.username,
        role=actor.role,
        store_code=actor.store_code,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        before=_plain(before),
        after=_plain(after),
        address=actor.address,
    )
    session.add(entry)
    return entry


def _plain(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """JSON-safe values: ids, dates and other objects as their text."""
    if values is None:
        return None
    return {
        k: v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v)
        for k, v in values.items()
    }


@dataclass(frozen=True)
class Search:
    text: str | None = None  # in the action, object id or username
    username: str | None = None
    store_code: str | None = None
    action: str | None = None  # a prefix: "sale" finds "sale.cash" and "sale.qr"
    since: datetime | None = None
    until: datetime | None = None


def _query(search: Search) -> Select[Any]:
    query = select(AuditEntry)
    if search.text:
        like = f"%{search.text.strip()}%"
        query = query.where(
            or_(
                AuditEntry.action.like(like),
                AuditEntry.object_id.like(like),
                AuditEntry.username.like(like),
            )
        )
    if search.username:
        query = query.where(AuditEntry.username == search.username.strip().lower())
    if search.store_code:
        query = query.where(AuditEntry.store_code == search.store_code)
    if search.action:
        query = query.where(AuditEntry.action.like(f"{search.action}%"))
    if search.since:
        query = query.where(AuditEntry.at >= search.since)
    if search.until:
        query = query.where(AuditEntry.at < search.until)
    return query


def search(
    session: Session, search: Search, *, limit: int = 50, offset: int = 0
) -> tuple[list[AuditEntry], int]:
    """The entries found, newest first, and how many there are in all."""
    query = _query(search)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id).limit(limit).offset(offset)
    ).all()
    return [row for row in rows if isinstance(row, AuditEntry)], total


def last_logins(session: Session) -> dict[uuid.UUID, datetime]:
    """Each staff member's last log-in (on the web, by enrolment, or for an API token), from the log."""
    rows = session.execute(
        select(AuditEntry.staff_id, func.max(AuditEntry.at))
        .where(
            AuditEntry.action.in_(("staff.login", "staff.enrol", "staff.token")),
            AuditEntry.staff_id.is_not(None),
        )
        .group_by(AuditEntry.staff_id)
    ).all()
    return {staff_id: at for staff_id, at in rows if staff_id is not None}
