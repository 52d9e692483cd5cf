"""Operator API for outgoing messages: what was sent, what failed, and sending a failed one again.

Who may call: operator staff (role `operator`); anyone else is 403, no token 401. Addresses are
masked in the list (enough to tell messages apart); the text is there, for staff only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tongka.deps import CurrentOperator, SessionDep
from tongka.notify import service
from tongka.notify.models import OutboxMessage

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Status = Literal["pending", "sent", "delivered", "undeliverable", "failed"]


class MessageOut(BaseModel):
    id: uuid.UUID
    channel: str
    template: str | None
    to: str = Field(description="masked: +852****1014, a***@example.com")
    language: str
    subject: str
    body: str = Field(description="the SMS, or the email's plain-text part")
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    provider_message_id: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, m: OutboxMessage) -> MessageOut:
        return cls(
            id=m.id,
            channel=m.channel,
            template=m.template,
            to=service.mask(m.channel, m.to),
            language=m.language,
            subject=m.subject,
            body=m.body,
            status=m.status,
            attempts=m.attempts,
            next_attempt_at=m.next_attempt_at,
            last_error=m.last_error,
            provider_message_id=m.provider_message_id,
            created_at=m.created_at,
            sent_at=m.sent_at,
            delivered_at=m.delivered_at,
        )


@router.get("/messages", response_model=list[MessageOut])
def list_messages(
    operator: CurrentOperator,
    session: SessionDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MessageOut]:
    """Operator admins: outgoing SMS and email, newest first (`status=failed`: those given up)."""
    return [MessageOut.of(m) for m in service.listed(session, status, limit)]


@router.post("/messages/{message_id}/retry", response_model=MessageOut)
def retry_message(
    message_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> MessageOut:
    """Operator admins: send a failed or undeliverable message again (the same message, tries counted
    afresh); any other status is 409 `message_not_failed`."""
    return MessageOut.of(service.retry(session, message_id))
