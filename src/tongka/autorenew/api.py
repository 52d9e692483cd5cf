"""App API: a line's auto-renew rule (GET/PUT/DELETE /api/v1/lines/{line_id}/auto-renew).

Who may call: the line's owner (another subscriber's line is 404, as everywhere)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from tongka.account import lines as line_service
from tongka.autorenew import service as rules
from tongka.autorenew.schemas import AutoRenewIn, AutoRenewOut, set_rule, view
from tongka.deps import CurrentAccount, SessionDep

router = APIRouter(prefix="/api/v1", tags=["auto-renew"])

LineId = Annotated[uuid.UUID, Path()]


@router.get("/lines/{line_id}/auto-renew", response_model=AutoRenewOut)
def get_auto_renew(line_id: LineId, account: CurrentAccount, session: SessionDep) -> AutoRenewOut:
    """The line's owner: the line's auto-renew rule and this month's spending (404: none set)."""
    line_service.own_line(session, account, line_id)
    rule = rules.of_line(session, line_id)
    if rule is None:
        raise rules.RuleNotFound()
    return view(session, rule)


@router.put("/lines/{line_id}/auto-renew", response_model=AutoRenewOut)
def put_auto_renew(
    line_id: LineId, body: AutoRenewIn, account: CurrentAccount, session: SessionDep
) -> AutoRenewOut:
    """The line's owner: set the rule (buy `pack_id` when data in `zone` falls below
    `threshold_percent` %, never above `monthly_cap` a month); a paused rule starts again."""
    return view(session, set_rule(session, account, line_id, body))


@router.delete("/lines/{line_id}/auto-renew", status_code=204)
def delete_auto_renew(line_id: LineId, account: CurrentAccount, session: SessionDep) -> Response:
    """The line's owner: auto-renew off for the line (its purchases stay)."""
    line_service.own_line(session, account, line_id)
    rules.delete(session, line_id)
    return Response(status_code=204)
