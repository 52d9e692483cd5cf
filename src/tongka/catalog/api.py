"""Catalog API. Who may call: anyone may list packs; with `line_id`, only that line's owner."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer

from tongka.account import lines
from tongka.account import service as accounts
from tongka.catalog import service
from tongka.catalog.schemas import PackOut
from tongka.deps import LanguageDep, SessionDep
from tongka.errors import Unauthorized

router = APIRouter(prefix="/api/v1", tags=["catalog"])
_optional_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@router.get("/packs", response_model=list[PackOut])
def packs(
    request: Request,
    session: SessionDep,
    language: LanguageDep,
    token: Annotated[str | None, Depends(_optional_bearer)],
    channel: Annotated[str, Query(pattern="^(app|web|store)$")] = "app",
    line_id: uuid.UUID | None = None,
) -> list[PackOut]:
    """Anyone: packs on sale on a channel now. With `line_id`, only that line's owner: the packs that line can buy."""
    if line_id is not None:
        if not token:
            raise Unauthorized()
        account = accounts.account_for_token(session, token)
        lines.own_line(session, account, line_id)
        language = account.language
    return [PackOut.of(p, language) for p in service.packs_on_sale(session, channel)]
