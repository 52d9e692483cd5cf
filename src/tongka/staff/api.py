"""The staff API's tokens: a password and a TOTP code give a bearer token for `/api/v1/admin`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tongka.deps import (
    BearerToken,
    SessionDep,
    SettingsDep,
    StaffCaller,
    client_address,
    hashing_policy,
)
from tongka.staff import audit, signing_in
from tongka.staff import service as staff
from tongka.staff.models import StaffMember

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])


class StaffTokenIn(BaseModel):
    username: str = Field(min_length=1, max_length=32)
    password: str = Field(min_length=1, max_length=200)
    code: str = Field(pattern=r"^\d{6}$", description="the authenticator app's current code")


class StaffTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class StaffOut(BaseModel):
    username: str
    display_name: str
    role: str
    store_code: str | None


@router.post("/token", response_model=StaffTokenOut)
async def staff_token(request: Request, body: StaffTokenIn, settings: SettingsDep) -> Any:
    """Anyone: a staff member's password and TOTP code for a bearer token (throttled like a log-in).

    A staff member who has not set up TOTP is refused (403 `totp_not_enrolled`) until they
    do, on the web's staff log-in.
    """
    address = client_address(request)

    def answer(session: Session, member: StaffMember) -> StaffTokenOut:
        token = staff.open_session(session, member, settings.staff_session_ttl_seconds, address)
        audit.record(
            session, staff.as_staff(session, member, address), "staff.token", "staff", member.id
        )
        return StaffTokenOut(access_token=token, expires_in=settings.staff_session_ttl_seconds)

    return await signing_in.log_in(
        request.app.state.sessionmaker,
        request.app.state.gate,
        username=body.username,
        password=body.password,
        code=body.code,
        address=address,
        hashing=hashing_policy(settings),
        secret_key=settings.secret_key.get_secret_value(),
        then=answer,
    )


@router.get("/me", response_model=StaffOut)
def staff_me(caller: StaffCaller) -> StaffOut:
    """Any staff member: who the token is, their role and store."""
    return StaffOut(
        username=caller.username,
        display_name=caller.display_name,
        role=caller.role,
        store_code=caller.store_code,
    )


@router.post("/logout", status_code=204)
def staff_logout(caller: StaffCaller, token: BearerToken, session: SessionDep) -> None:
    """Any staff member: end this token's session now."""
    assert token is not None  # StaffCaller refused a request without one
    staff.close_session(session, token)
