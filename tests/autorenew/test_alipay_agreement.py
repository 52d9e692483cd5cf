"""An Alipay password-free agreement (商家扣款) signed on the sandbox's signing page, then charged
by auto-renew with alipay.trade.pay (GENERAL_WITHHOLDING); its notifications' signatures checked.

The genuine notification is signed with python-alipay-sdk's own `sign_data` (as in
tests/payment/alipay_helpers.py), so the provider's verification is checked independently."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select

from tests.autorenew import factories as af
from tests.payment import alipay_helpers as a
from tests.web.helpers import ACCEPT_HTML, csrf
from tongka.autorenew import service as rules
from tongka.money import GB
from tongka.payment import providers as payment_providers
from tongka.payment.models import Payment
from tongka.payment.providers.alipay import beijing_now
from tongka.payment.providers.base import PaymentRequest, SignsAgreements
from tongka.renewal import autorenew

NOTIFY = "/api/v1/auto-renew/alipay/agreements"


def sign(client, who, choice: str = "agree") -> str:  # type: ignore[no-untyped-def]
    """Sign an agreement from the line's auto-renew page on the sandbox's page; the page after."""
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    page = f"/settings/auto-renew/{who.line_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert r.status_code == 200 and "Sign an Alipay agreement" in r.text, r.text
    r = client.post(
        f"{page}/alipay",
        data={"csrf_token": csrf(r.text)},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    gateway = urlsplit(r.headers["location"])
    assert gateway.path == "/sandbox/alipay/gateway.do"
    assert dict(parse_qsl(gateway.query))["method"] == "alipay.user.agreement.page.sign"
    r = client.get(r.headers["location"], follow_redirects=False)
    assert r.status_code == 303, r.text
    signing = client.get(r.headers["location"])
    assert signing.status_code == 200 and "同意并签约" in signing.text
    action = re.search(r'action="([^"]+)"', signing.text)
    assert action
    r = client.post(action.group(1), data={"choice": choice}, follow_redirects=False)
    assert r.status_code == 303, r.text
    back = r.headers["location"]
    assert back.startswith(f"http://testserver{page}/alipay?"), back
    r = client.get(back, headers=ACCEPT_HTML)
    assert r.status_code == 200 and str(r.url).endswith("?saved=alipay"), r.text
    return r.text


def run(client, sessions, settings) -> autorenew.Report:  # type: ignore[no-untyped-def]
    return autorenew.run(sessions, payment_providers.build(settings, http=client), settings)


def agreement_no(sessions, who) -> str | None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        found = rules.agreement_of(s, who.account_id, "alipay")
        return found.agreement_no if found else None


def test_an_agreement_signed_on_alipays_page_pays_auto_renew(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0)  # the wallet could not pay
    af.rule(client, who, expect=422, source="alipay_agreement")  # nothing signed yet
    page = sign(client, who)
    assert "Signed with Alipay account tes***@sandbox.com" in page
    assert agreement_no(sessions, who)
    body = af.rule(client, who, source="alipay_agreement")
    assert body["agreement"] == "tes***@sandbox.com"
    af.use(sessions, who, 9 * GB)
    report = run(client, sessions, settings)
    assert (report.bought, report.failed) == (1, 0)
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]
    with sessions() as s:
        payment = s.get_one(Payment, af.attempts(sessions, who)[0].payment_id)
        assert (payment.provider, payment.method, payment.status) == (
            "alipay",
            "alipay_agreement",
            "succeeded",
        )
        assert payment.provider_reference and payment.provider_reference.isdigit()
    assert [k for k, _p in af.alerts(sessions, who)] == ["auto_renew_done"]


def test_a_declined_agreement_fails_and_pauses_the_rule_after_three(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0)
    sign(client, who, "agree_no_balance")  # signed; every charge under it declined
    af.rule(client, who, source="alipay_agreement")
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
    assert methods == {("alipay_agreement", "failed")}
    told = [p for kind, p in af.alerts(sessions, who) if kind == "auto_renew_failed"]
    assert {p["reason"] for p in told} == {"alipay_agreement"}
    assert sorted(p["paused"] for p in told) == [False, False, True]


def _notice(settings, account_id: uuid.UUID, number: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "notify_type": "dut_user_sign",
        "notify_id": uuid.uuid4().hex,
        "notify_time": beijing_now(),
        "app_id": settings.alipay_app_id or "",
        "charset": "utf-8",
        "version": "1.0",
        "agreement_no": number,
        "external_agreement_no": account_id.hex,
        "status": "NORMAL",
        "sign_time": beijing_now(),
        "personal_product_code": "GENERAL_WITHHOLDING_P",
        "sign_scene": "INDUSTRY|DIGITAL_MEDIA",
        "alipay_user_id": "2088102177296610",
        "alipay_logon_id": "tes***@sandbox.com",
    }


def test_the_signing_notification_is_verified_and_a_forged_one_refused(
    client, sessions, settings, demo
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    form = {"content-type": "application/x-www-form-urlencoded"}
    notice = _notice(settings, who.account_id, "20261207600000000001")
    forged = a.signed(a.alipay_side(settings, a.other_private_key()), notice)
    assert client.post(NOTIFY, content=forged, headers=form).status_code == 400
    # Genuine, but the number changed after signing.
    genuine = a.signed(a.alipay_side(settings), notice)
    tampered = genuine.replace(b"20261207600000000001", b"20261207600000000002")
    assert client.post(NOTIFY, content=tampered, headers=form).status_code == 400
    assert agreement_no(sessions, who) is None
    r = client.post(NOTIFY, content=genuine, headers=form)
    assert (r.status_code, r.text) == (200, "success")
    assert agreement_no(sessions, who) == "20261207600000000001"
    # A forged return to the page keeps nothing either.
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    other = _notice(settings, who.account_id, "20261207600000000003")
    r = client.get(
        f"/settings/auto-renew/{who.line_id}/alipay?"
        + a.signed(a.alipay_side(settings, a.other_private_key()), other).decode(),
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 400 and "was not signed" in r.text
    assert agreement_no(sessions, who) == "20261207600000000001"


def test_a_cancelled_signing_keeps_nothing_and_an_unknown_agreement_is_declined(
    client, sessions, settings, demo
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    page = f"/settings/auto-renew/{who.line_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    r = client.post(f"{page}/alipay", data={"csrf_token": csrf(r.text)}, follow_redirects=False)
    r = client.get(r.headers["location"], follow_redirects=False)
    signing = r.headers["location"]
    r = client.post(f"{signing}/sign", data={"choice": "cancel"}, follow_redirects=False)
    assert r.headers["location"] == signing  # not sent back: nothing was signed
    assert "已取消" in client.get(signing).text
    assert agreement_no(sessions, who) is None
    provider = payment_providers.build(settings, http=client)["alipay"]
    request = PaymentRequest(
        payment_id=str(uuid.uuid4()),
        amount=58_00,
        currency="HKD",
        method="alipay_agreement",
        description="tongka hk-5gb-30d",
        notify_url="http://testserver/api/v1/payments/callbacks/alipay",
        return_url="http://testserver/",
    )
    assert isinstance(provider, SignsAgreements)
    assert provider.charge_agreement(request, "20261207609999999999").status == "failed"
