"""Dev mode only: the outbox, so a demo user can read the SMS code that was "sent". Absent in production."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from tongka.deps import SessionDep
from tongka.notify import service

router = APIRouter(prefix="/dev", tags=["dev"])


class OutboxOut(BaseModel):
    id: str
    channel: str
    template: str  # which message it is (alert_data_used_80, receipt, ...)
    to: str
    subject: str
    body: str
    created_at: datetime
    status: str


@router.get("/outbox", response_model=list[OutboxOut])
def outbox(session: SessionDep) -> list[OutboxOut]:
    """Anyone, in dev mode: outgoing messages, newest first."""
    return [
        OutboxOut(
            id=str(m.id),
            channel=m.channel,
            template=m.template,
            to=m.to,
            subject=m.subject,
            body=m.body,
            created_at=m.created_at,
            status=m.status,
        )
        for m in service.recent(session)
    ]
