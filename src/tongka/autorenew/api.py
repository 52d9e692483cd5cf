"""App API: a line's auto-renew rule (GET/PUT/DELETE /api/v1/lines/{line_id}/auto-renew), and
Alipay's and WeChat Pay's notifications of an agreement signed for auto-renew.

Who may call: the line's owner (another subscriber's line is 404, as everywhere); the
notifications, Alipay (proven by its RSA2 signature) and WeChat Pay (its platform signature,
the resource encrypted under our APIv3 key)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.account import lines as line_service
from tongka.account.models import Account
from tongka.autorenew import service as rules
from tongka.autorenew.schemas import AutoRenewIn, AutoRenewOut, set_rule, view
from tongka.deps import CurrentAccount, ProvidersDep, SessionDep
from tongka.payment.providers.base import (
    Agreement,
    InvalidCallback,
    NotifiesAgreements,
    SignsAgreements,
)

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


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


@router.post("/auto-renew/alipay/agreements")
def alipay_agreement_notified(
    params: Annotated[dict[str, str], Depends(_form)],
    providers: ProvidersDep,
    session: SessionDep,
) -> Response:
    """The payment provider (Alipay, its signature checked): an agreement signed (dut_user_sign), kept for the
    account it was started for; a forged or unknown one is refused (400)."""
    provider = providers.get("alipay")
    if not isinstance(provider, SignsAgreements):
        raise InvalidCallback()
    agreement = provider.parse_agreement(params)
    _keep(session, "alipay", agreement)
    return Response("success", media_type="text/plain")


async def _body(request: Request) -> bytes:
    return await request.body()


@router.post("/auto-renew/wechat/contracts")
def wechat_contract_notified(
    request: Request,
    body: Annotated[bytes, Depends(_body)],
    providers: ProvidersDep,
    session: SessionDep,
) -> Response:
    """The payment provider (WeChat Pay, its signature checked and resource decrypted): a 委托代扣
    contract signed (PAPAY.SIGN), kept for the account it was started for; a forged or unknown
    one is refused (400)."""
    provider = providers.get("wechat")
    if not isinstance(provider, NotifiesAgreements):
        raise InvalidCallback()
    _keep(session, "wechat", provider.parse_agreement_notice(request.headers, body))
    return Response(status_code=204)  # WeChat: 200 or 204 with no body, else it retries


def _keep(session: Session, provider: str, agreement: Agreement) -> None:
    """The agreement, for the account it names (which must exist); one not in force is dropped."""
    try:
        account_id = uuid.UUID(agreement.reference)
    except ValueError:
        raise InvalidCallback() from None
    if session.scalar(select(Account.id).where(Account.id == account_id)) is None:
        raise InvalidCallback()
    if agreement.status == "NORMAL":
        rules.save_agreement(
            session,
            account_id,
            provider=provider,
            agreement_no=agreement.agreement_no,
            label=agreement.label,
        )
