"""`GET /api/v1/official/check`: whether a number, link, address or account is tongka's (Anyone).

Throttled per client address, as the page /official is (`service.CHECKS_BY_ADDRESS`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tongka.deps import LanguageDep, SessionDep, client_address
from tongka.trust import service

router = APIRouter(prefix="/api/v1", tags=["official channels"])


async def _counted(request: Request) -> None:
    """A check is counted against the client's address (in a write turn of its own) before it runs."""
    if request.query_params.get("value", "").strip():
        async with request.app.state.gate.enter(True):
            await run_in_threadpool(
                service.count_check, request.app.state.sessionmaker, client_address(request)
            )


CountedCheck = Depends(_counted)


class CheckOut(BaseModel):
    official: bool
    kind: str  # phone | web | email | social | store
    kind_name: str
    normalised: str
    platform: str | None
    what: str | None  # what it is, when official, in the reader's language
    message: str
    looks_like_ours: bool
    warning: str | None


@router.get("/official/check", response_model=CheckOut, dependencies=[CountedCheck])
def check(
    session: SessionDep,
    language: LanguageDep,
    value: Annotated[str, Query(min_length=1, max_length=service.MAX_INPUT)],
) -> CheckOut:
    """Anyone: is `value` (a phone number, web address, email address, social-media account or
    store code) one of tongka's channels? In the Accept-Language's language."""
    answer = service.check(session, value)
    return CheckOut(**service.answer_view(answer, language))
