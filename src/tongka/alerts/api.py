"""App API: which alerts the signed-in subscriber gets, and by which channels."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tongka.alerts import service
from tongka.deps import CurrentAccount, SessionDep

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Channels = Literal["sms", "email", "both", "none"]


class PreferencesOut(BaseModel):
    preferences: dict[str, Channels] = Field(
        description="every alert kind: how it is sent (the subscriber's choice, else its default)"
    )
    defaults: dict[str, Channels]


class PreferencesIn(BaseModel):
    preferences: dict[str, Channels] = Field(
        description="the kinds to change (the others stay as they are)"
    )


def _out(session: SessionDep, account: CurrentAccount) -> PreferencesOut:
    return PreferencesOut(
        preferences=service.preferences(session, account.id),
        defaults={name: kind.default for name, kind in service.KINDS.items()},
    )


@router.get("/alerts/preferences", response_model=PreferencesOut)
def get_preferences(account: CurrentAccount, session: SessionDep) -> PreferencesOut:
    """The signed-in subscriber: how each alert reaches them (SMS, email, both or none)."""
    return _out(session, account)


@router.put("/alerts/preferences", response_model=PreferencesOut)
def put_preferences(
    body: PreferencesIn, account: CurrentAccount, session: SessionDep
) -> PreferencesOut:
    """The signed-in subscriber: choose how some alerts reach them; an unknown alert is a 422, as is
    none for a security notice (password or email address changed)."""
    for kind, channels in body.preferences.items():
        service.choose(session, account.id, kind, channels)
    session.flush()
    return _out(session, account)
