"""The wallet's pages: balance and history, and a top-up paid through a provider that credits the wallet once."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.helpers import FrozenClock
from tests.wallet.factories import available
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in
from tongka.account.models import Account
from tongka.db import transaction
from tongka.ledger.models import Transfer
from tongka.payment.models import Payment
from tongka.renewal import flow, jobs
from tongka.wallet import service as wallets
from tongka.wallet.models import WalletTopup


def _account_id(client: TestClient, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(client.get("/api/v1/me", headers=headers).json()["id"])


def _top_up(client: TestClient, **fields: str) -> object:
    token = form_token(client, "/wallet")
    return client.post(
        "/wallet",
        data={"csrf_token": token, **fields},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


def _topup_payment(
    sessions: sessionmaker[Session], account_id: uuid.UUID, amount: int | None = None
) -> tuple[str, str]:
    """(top-up id, its payment's id) of the account's newest top-up (of `amount`, if given: a
    frozen clock gives two top-ups the same time)."""
    with sessions() as s:
        query = select(WalletTopup).where(WalletTopup.account_id == account_id)
        if amount is not None:
            query = query.where(WalletTopup.amount == amount)
        topup = s.scalars(query.order_by(WalletTopup.created_at.desc())).first()
        assert topup is not None
        payment = s.scalars(select(Payment).where(Payment.topup_id == topup.id)).one()
        return str(topup.id), str(payment.id)


def _credits(sessions: sessionmaker[Session], topup_id: str) -> int:
    with sessions() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Transfer)
                .where(Transfer.reference == f"wallet_topup:topup:{topup_id}")
            )
            or 0
        )


@pytest.mark.parametrize(
    ("method", "currency", "provider"), [("alipay", "HKD", "alipay"), ("card", "HKD", "stripe")]
)
def test_a_top_up_through_the_provider_credits_the_wallet_once(
    client: TestClient, sessions: sessionmaker[Session], method: str, currency: str, provider: str
) -> None:
    headers = signed_in(client)
    account_id = _account_id(client, headers)
    r = _top_up(client, amount="50.5", currency=currency, payment_method=method)
    assert r.status_code == 303, r.text  # to the provider's checkout page
    topup_id, payment_id = _topup_payment(sessions, account_id)
    with sessions() as s:
        payment = s.get_one(Payment, uuid.UUID(payment_id))
        assert (payment.provider, payment.amount, payment.order_id) == (provider, 5050, None)
        assert r.headers["location"] == payment.checkout_url

    waiting = client.get(f"/wallet/topups/{topup_id}", headers=ACCEPT_HTML)
    assert 'data-state="waiting"' in waiting.text and 'hx-trigger="every 2s"' in waiting.text

    f.pay(client, payment_id)
    f.pay(client, payment_id)  # the provider sends its notification again
    with transaction(sessions) as s:  # and the sync job, and a second worker, find it paid too
        jobs.sync(s, client.app.state.providers, older_than=timedelta(0))
        payment = s.get_one(Payment, uuid.UUID(payment_id))
        assert flow.confirm(s, payment, "succeeded", 5050, currency) == "ignored"
    assert _credits(sessions, topup_id) == 1
    with sessions() as s:
        assert available(s, account_id) == 5050
        assert s.get_one(WalletTopup, uuid.UUID(topup_id)).status == "credited"

    # The provider sends the payer back here; the page says so and stops polling.
    back = urlsplit(f"http://testserver/wallet/topups/{topup_id}")
    done = client.get(back.path, headers=ACCEPT_HTML)
    assert 'data-state="credited"' in done.text and "hx-trigger" not in done.text
    assert "HK$50.50" in done.text
    wallet = client.get("/wallet", headers=ACCEPT_HTML)
    assert "HK$50.50" in wallet.text and "Top-up" in wallet.text


def test_a_failed_top_up_credits_nothing(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    headers = signed_in(client)
    account_id = _account_id(client, headers)
    assert _top_up(client, amount="20", currency="HKD", payment_method="alipay").status_code == 303
    topup_id, payment_id = _topup_payment(sessions, account_id)
    f.pay(client, payment_id, outcome="failed")
    page = client.get(f"/wallet/topups/{topup_id}", headers=ACCEPT_HTML)
    assert 'data-state="failed"' in page.text and "did not go through" in page.text
    assert _credits(sessions, topup_id) == 0
    with sessions() as s:
        assert s.get_one(WalletTopup, uuid.UUID(topup_id)).status == "awaiting_payment"
        assert available(s, account_id) == 0  # the wallet opened, empty


def test_an_unpaid_top_up_expires_its_payment_is_closed_and_late_money_still_credits(
    client: TestClient, sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    headers = signed_in(client)
    account_id = _account_id(client, headers)
    assert _top_up(client, amount="30", currency="HKD", payment_method="alipay").status_code == 303
    late_id, late_payment = _topup_payment(sessions, account_id, 3000)
    assert _top_up(client, amount="40", currency="HKD", payment_method="alipay").status_code == 303
    topup_id, _payment = _topup_payment(sessions, account_id, 4000)
    frozen_clock.advance(minutes=31)
    with transaction(sessions) as s:
        flow.expire_unpaid(s)
    # Paid at the last moment, before the provider heard it was closed: the money is the customer's.
    f.pay(client, late_payment)
    assert _credits(sessions, late_id) == 1
    with transaction(sessions) as s:
        report = jobs.close_unpaid(s, client.app.state.providers)
        assert report.closed == 1  # the other: closed at the provider, it can no longer be paid
    page = client.get(f"/wallet/topups/{topup_id}", headers=ACCEPT_HTML)
    assert 'data-state="expired"' in page.text and "hx-trigger" not in page.text
    assert _credits(sessions, topup_id) == 0
    with sessions() as s:
        assert available(s, account_id) == 3000
        assert s.get_one(WalletTopup, uuid.UUID(late_id)).status == "credited"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("5", "Between"),  # below the minimum (HK$10)
        ("5000.01", "Between"),
        ("10.005", "to the cent"),
        ("abc", "Enter an amount"),
        ("-3", "Enter more than"),
    ],
)
def test_amounts_outside_the_limits_are_shown_on_the_form(
    client: TestClient, sessions: sessionmaker[Session], amount: str, message: str
) -> None:
    headers = signed_in(client)
    r = _top_up(client, amount=amount, currency="HKD", payment_method="alipay")
    assert r.status_code == 400
    assert 'id="amount-error"' in r.text and message in r.text
    assert 'aria-invalid="true"' in r.text
    with sessions() as s:
        assert not s.scalars(
            select(WalletTopup).where(WalletTopup.account_id == _account_id(client, headers))
        ).all()


def test_one_currency_per_wallet_and_methods_of_that_currency(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    headers = signed_in(client)
    with transaction(sessions) as s:
        account = s.get_one(Account, _account_id(client, headers))
        wallets.credit(s, account, 1000, "HKD", reference="test-1")
    r = _top_up(client, amount="50", currency="CNY", payment_method="alipay")
    assert r.status_code == 400 and 'id="currency-error"' in r.text
    assert "Your wallet is in HKD" in r.text
    # PayPal takes no CNY: not offered for it, refused if sent anyway.
    cny = client.get("/wallet?currency=CNY", headers=ACCEPT_HTML)
    assert 'value="paypal"' not in cny.text and 'value="wechat_pay"' in cny.text
    hkd = client.get("/wallet", headers=ACCEPT_HTML)
    assert 'value="paypal"' in hkd.text and 'value="wechat_pay"' not in hkd.text
    assert "HK$10.00" in hkd.text


def test_a_visitor_is_sent_to_log_in_and_another_subscribers_top_up_is_a_404(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    r = client.get("/wallet", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fwallet"
    headers = signed_in(client)
    assert _top_up(client, amount="20", currency="HKD", payment_method="card").status_code == 303
    topup_id, _payment = _topup_payment(sessions, _account_id(client, headers))
    signed_in(client)  # someone else, in the same browser
    assert client.get(f"/wallet/topups/{topup_id}", headers=ACCEPT_HTML).status_code == 404
    assert client.get(f"/wallet/topups/{uuid.uuid4()}", headers=ACCEPT_HTML).status_code == 404


@pytest.mark.parametrize(
    ("language", "words"),
    [("en", "Top up"), ("zh-Hans", "充值"), ("zh-Hant", "增值")],
)
def test_the_wallet_page_speaks_three_languages(
    client: TestClient, language: str, words: str
) -> None:
    signed_in(client, language=language)
    page = client.get("/wallet", headers=ACCEPT_HTML)
    assert page.status_code == 200
    assert re.search(f'<html lang="{language}"', page.text) and words in page.text


def test_staff_cannot_refund_a_top_up_through_tongka_yet(
    client: TestClient, sessions: sessionmaker[Session], operator: dict[str, str]
) -> None:
    headers = signed_in(client)
    account_id = _account_id(client, headers)
    assert _top_up(client, amount="20", currency="HKD", payment_method="alipay").status_code == 303
    _topup, payment_id = _topup_payment(sessions, account_id)
    f.pay(client, payment_id)
    shown = client.get(f"/api/v1/admin/payments/{payment_id}", headers=operator).json()
    assert (shown["order_id"], shown["refundable_amount"]) == (None, 0)
    r = f.refund(client, operator, payment_id, 500)
    assert (r.status_code, r.json()["code"]) == (409, "topup_not_refundable")
    with sessions() as s:
        assert available(s, account_id) == 2000  # the money stays in the wallet
