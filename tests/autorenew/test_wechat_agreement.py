"""A WeChat Pay 委托代扣 (papay) contract signed on the sandbox's signing page, then charged by
auto-renew under its contract_id; the signing notification's signature and encryption checked.

The genuine notification is signed with the wechatpayv3 SDK's own `rsa_sign` and encrypted by
`cryptography` (tests/payment/wechat_helpers.py), so the provider is checked independently."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select

from tests.autorenew import factories as af
from tests.payment import wechat_helpers as w
from tests.web.helpers import ACCEPT_HTML, csrf
from tongka.autorenew import service as rules
from tongka.money import GB
from tongka.payment import providers as payment_providers
from tongka.payment.models import Payment
from tongka.payment.providers.base import PaymentRequest, SignsAgreements
from tongka.renewal import autorenew

NOTIFY = "/api/v1/auto-renew/wechat/contracts"


def _start(client, who) -> str:  # type: ignore[no-untyped-def]
    """From the line's auto-renew page to WeChat's signing page; its URL."""
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    page = f"/settings/auto-renew/{who.line_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert r.status_code == 200 and "Sign a WeChat Pay contract" in r.text, r.text
    r = client.post(
        f"{page}/wechat",
        data={"csrf_token": csrf(r.text)},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    signing = r.headers["location"]
    assert signing.startswith("http://testserver/sandbox/wechat/papay/entrust/"), signing
    return signing


def sign(client, who, choice: str = "agree") -> str:  # type: ignore[no-untyped-def]
    """Sign a contract on the sandbox's page; the auto-renew page after."""
    signing = client.get(_start(client, who))
    assert signing.status_code == 200 and "同意并签约" in signing.text
    action = re.search(r'action="([^"]+)"', signing.text)
    assert action
    r = client.post(action.group(1), data={"choice": choice}, follow_redirects=False)
    assert r.status_code == 303, r.text
    back = r.headers["location"]
    assert back == f"http://testserver/settings/auto-renew/{who.line_id}/wechat", back
    r = client.get(back, headers=ACCEPT_HTML)
    assert r.status_code == 200 and str(r.url).endswith("?saved=wechat"), r.text
    return r.text


def run(client, sessions, settings) -> autorenew.Report:  # type: ignore[no-untyped-def]
    return autorenew.run(sessions, payment_providers.build(settings, http=client), settings)


def contract_id(sessions, who) -> str | None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        found = rules.agreement_of(s, who.account_id, "wechat")
        return found.agreement_no if found else None


def cny_rule(client, who, expect: int = 200) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return af.rule(client, who, expect=expect, source="wechat_agreement", currency="CNY")


def test_a_contract_signed_on_wechats_page_pays_auto_renew(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0, currency="CNY")
    cny_rule(client, who, expect=422)  # nothing signed yet
    page = sign(client, who)
    assert "Contract signed with WeChat Pay (tongka)" in page
    assert (contract_id(sessions, who) or "").isdigit()
    assert cny_rule(client, who)["agreement"] == "tongka"
    af.use(sessions, who, 9 * GB)
    report = run(client, sessions, settings)
    assert (report.bought, report.failed) == (1, 0)
    assert [(o[0], o[1]) for o in af.orders(sessions, who)] == [("auto", "fulfilled")]
    with sessions() as s:
        payment = s.get_one(Payment, af.attempts(sessions, who)[0].payment_id)
        assert (payment.provider, payment.method, payment.status, payment.currency) == (
            "wechat",
            "wechat_agreement",
            "succeeded",
            "CNY",
        )
        assert payment.provider_reference and payment.provider_reference.startswith("4200")
    assert [k for k, _p in af.alerts(sessions, who)] == ["auto_renew_done"]


def test_a_declined_contract_fails_and_pauses_the_rule_after_three(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0, currency="CNY")
    sign(client, who, "agree_no_balance")  # signed; every charge under it declined (NOTENOUGH)
    cny_rule(client, who)
    af.use(sessions, who, 9 * GB)
    for minutes in (0, 11, 11):
        frozen_clock.advance(minutes=minutes)
        assert run(client, sessions, settings).failed == 1
    assert [o[1] for o in af.orders(sessions, who)] == ["cancelled"] * 3
    assert [x.reason for x in af.attempts(sessions, who)] == ["agreement_declined"] * 3
    assert not af.the_rule(sessions, who).active
    with sessions() as s:
        methods = {
            (p.method, p.status)
            for p in s.scalars(
                select(Payment).where(
                    Payment.id.in_([x.payment_id for x in af.attempts(sessions, who)])
                )
            )
        }
    assert methods == {("wechat_agreement", "failed")}
    told = [p for kind, p in af.alerts(sessions, who) if kind == "auto_renew_failed"]
    assert {p["reason"] for p in told} == {"wechat_agreement"}
    assert sorted(p["paused"] for p in told) == [False, False, True]


def _contract(settings, account_id: uuid.UUID, number: str, **changes: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A decrypted PAPAY.SIGN resource for a contract of the account."""
    return {
        "mchid": settings.wechat_mch_id,
        "appid": settings.wechat_appid,
        "plan_id": 1,
        "out_contract_code": uuid.uuid4().hex,
        "out_user_code": account_id.hex,
        "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "contract_id": number,
        "contract_display_account": "tongka",
        "contract_state": "SIGNED",
        "contract_signed_time": "2026-12-07T14:59:00+08:00",
        **changes,
    }


def test_the_signing_notification_is_verified_and_a_forged_one_refused(
    client, sessions, settings, demo
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    contract = _contract(settings, who.account_id, "202000000000000001")

    def notify(resource: dict[str, Any], **how: Any) -> int:
        body, headers = w.callback(
            settings, resource, event_type="PAPAY.SIGN", original_type="papay", **how
        )
        return client.post(NOTIFY, content=body, headers=headers).status_code

    assert notify(contract, signing_key=w.other_private_key()) == 400  # not WeChat's signature
    assert notify(contract, apiv3_key="0" * 32) == 400  # not encrypted with our APIv3 key
    assert notify(_contract(settings, who.account_id, "2", appid="wx0000000000000000")) == 400
    assert notify(_contract(settings, uuid.uuid4(), "3")) == 400  # no such account
    # Genuine, but the body changed after signing.
    body, headers = w.callback(settings, contract, event_type="PAPAY.SIGN", original_type="papay")
    tampered = body.replace(b'"PAPAY.SIGN"', b'"PAPAY.SIGN" ')
    assert client.post(NOTIFY, content=tampered, headers=headers).status_code == 400
    assert contract_id(sessions, who) is None
    assert client.post(NOTIFY, content=body, headers=headers).status_code == 204
    assert contract_id(sessions, who) == "202000000000000001"
    # A return to the page proves nothing by itself: the kept contract is shown, no other.
    assert notify(_contract(settings, who.account_id, "4", contract_state="TERMINATED")) == 204
    assert contract_id(sessions, who) == "202000000000000001"


def test_a_cancelled_signing_keeps_nothing_and_an_unknown_contract_is_declined(
    client, sessions, settings, demo
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    signing = _start(client, who)
    r = client.post(f"{signing}/sign", data={"choice": "cancel"}, follow_redirects=False)
    assert r.headers["location"] == signing.removeprefix("http://testserver")  # not sent back
    assert "已取消" in client.get(signing).text
    assert contract_id(sessions, who) is None
    r = client.get(f"/settings/auto-renew/{who.line_id}/wechat", headers=ACCEPT_HTML)
    assert r.status_code == 400 and "was not signed" in r.text
    provider = payment_providers.build(settings, http=client)["wechat"]
    request = PaymentRequest(
        payment_id=str(uuid.uuid4()),
        amount=50_00,
        currency="CNY",
        method="wechat_agreement",
        description="tongka hk-5gb-30d",
        notify_url="http://testserver/api/v1/payments/callbacks/wechat",
        return_url="http://testserver/",
    )
    assert isinstance(provider, SignsAgreements)
    assert provider.charge_agreement(request, "209999999999999999").status == "failed"
