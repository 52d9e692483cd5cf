"""Alerts from the renewal flow and the account: renewal confirmed, payment failed, password and
email changed; the preferences API and the settings page; the dev outbox shows them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in
from tongka.account.models import Account
from tongka.alerts import service
from tongka.alerts.models import AlertEvent
from tongka.i18n import gettext


def _outbox(client: TestClient, to: set[str]) -> list[dict[str, Any]]:
    r = client.get("/dev/outbox")
    assert r.status_code == 200, r.text
    return [m for m in r.json() if m["to"] in to]


def _events(sessions: sessionmaker[Session], username: str) -> list[tuple[str, str]]:
    with sessions() as session:
        account = session.scalars(select(Account).where(Account.username == username)).one()
        return sorted(
            (kind, key)
            for kind, key in session.execute(
                select(AlertEvent.kind, AlertEvent.key).where(AlertEvent.account_id == account.id)
            )
        )


def _put(client: TestClient, headers: dict[str, str], **chosen: str) -> Any:
    return client.put("/api/v1/alerts/preferences", json={"preferences": chosen}, headers=headers)


def test_a_renewal_is_told_by_the_receipt_email_and_an_sms_if_chosen(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions)
    addresses = {f"{owner.username}@example.com", *owner.line["numbers"]}
    before = {m["id"] for m in _outbox(client, addresses)}
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"])
    # By default (email): the receipt's email is the only message, the event recorded.
    new = [m for m in _outbox(client, addresses) if m["id"] not in before]
    assert [m["template"] for m in new] == ["receipt"]
    assert ("renewal_confirmed", f"order:{order['id']}") in _events(sessions, owner.username)

    assert _put(client, owner.headers, renewal_confirmed="both").status_code == 200
    before |= {m["id"] for m in new}
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"])
    f.pay(client, order["payment"]["id"])  # the provider's retry: nothing more
    new = [m for m in _outbox(client, addresses) if m["id"] not in before]
    assert sorted(m["template"] for m in new) == ["alert_renewal_confirmed", "receipt"]
    sms = next(m for m in new if m["channel"] == "sms")
    tail = owner.line["numbers"][0][-4:]
    assert sms["body"].startswith(
        f"[tongka] Line ...{tail}: 5 GB of HK data arrived, valid 30 days."
    )


def test_a_failed_payment_is_told_once_by_sms_and_email(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions, language="zh-Hant")
    addresses = {f"{owner.username}@example.com", *owner.line["numbers"]}
    before = {m["id"] for m in _outbox(client, addresses)}
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"], outcome="failed")
    f.pay(client, order["payment"]["id"], outcome="failed")
    new = [m for m in _outbox(client, addresses) if m["id"] not in before]
    assert sorted((m["template"], m["channel"]) for m in new) == [
        ("alert_payment_failed", "email"),
        ("alert_payment_failed", "sms"),
    ]
    email = next(m for m in new if m["channel"] == "email")
    assert email["subject"] == "您的付款未能完成"
    sms = next(m for m in new if m["channel"] == "sms")
    assert "付款未能完成，數據未增值" in sms["body"] and "絕不會" in sms["body"]
    assert ("payment_failed", f"payment:{order['payment']['id']}") in _events(
        sessions, owner.username
    )


def test_a_password_change_goes_by_the_chosen_channels(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions)
    addresses = {f"{owner.username}@example.com", *owner.line["numbers"]}
    before = {m["id"] for m in _outbox(client, addresses)}
    r = client.post(
        "/api/v1/account/password",
        json={"current_password": f.PASSWORD, "new_password": "another-password-1"},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    new = [m for m in _outbox(client, addresses) if m["id"] not in before]
    assert [(m["template"], m["channel"]) for m in new] == [("password_changed", "email")]
    assert new[0]["subject"] == "Your tongka password was changed"  # the notice it always was

    assert _put(client, headers, password_changed="sms").status_code == 200
    before |= {m["id"] for m in new}
    r = client.post(
        "/api/v1/account/password",
        json={"current_password": "another-password-1", "new_password": "a-third-password"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    new = [m for m in _outbox(client, addresses) if m["id"] not in before]
    assert [(m["template"], m["channel"], m["to"]) for m in new] == [
        ("password_changed", "sms", owner.line["numbers"][0])
    ]
    assert new[0]["body"].startswith("[tongka] Your tongka password was changed. Not you?")
    assert [k for k, _ in _events(sessions, owner.username)].count("password_changed") == 2


def test_preferences_api_reads_and_changes_choices(client: TestClient) -> None:
    headers = f.subscriber(client)
    r = client.get("/api/v1/alerts/preferences", headers=headers)
    assert r.status_code == 200
    defaults = {name: kind.default for name, kind in service.KINDS.items()}
    assert r.json() == {"preferences": defaults, "defaults": defaults}
    r = _put(client, headers, data_used_80="none", payment_failed="email")
    assert r.status_code == 200
    assert r.json()["preferences"] == {
        **defaults,
        "data_used_80": "none",
        "payment_failed": "email",
    }
    assert client.get("/api/v1/alerts/preferences", headers=headers).json() == r.json()
    r = _put(client, headers, no_such_alert="sms")
    assert r.status_code == 422 and r.json()["code"] == "alert_unknown"
    assert _put(client, headers, data_used_80="fax").status_code == 422
    # A security notice may move to SMS, never be silenced (a stolen session would do that first).
    r = _put(client, headers, email_changed="none")
    assert r.status_code == 422 and r.json()["code"] == "alert_required"
    assert (
        _put(client, headers, email_changed="sms").json()["preferences"]["email_changed"] == "sms"
    )
    assert client.get("/api/v1/alerts/preferences").status_code == 401
    other = f.subscriber(client)  # one subscriber's choices are not another's
    assert client.get("/api/v1/alerts/preferences", headers=other).json()["preferences"] == defaults


def test_the_settings_page_shows_and_saves_the_choices_in_the_readers_language(
    client: TestClient,
) -> None:
    headers = signed_in(client, language="zh-Hans")
    page = client.get("/settings", headers=ACCEPT_HTML)
    assert page.status_code == 200
    assert 'id="alert-settings"' in page.text and "流量已用 80%" in page.text
    assert '<option value="both" selected>短信和邮件</option>' in page.text  # data used up
    token = form_token(client, "/settings")
    r = client.post(
        "/settings/alerts",
        data={"csrf_token": token, "data_used_100": "none", "overage_started": "sms"},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert gettext("Your alert choices are saved.", "zh-Hans") in page.text
    chosen = client.get("/api/v1/alerts/preferences", headers=headers).json()["preferences"]
    assert chosen["data_used_100"] == "none" and chosen["overage_started"] == "sms"
    assert chosen["data_used_80"] == "sms"  # unchanged
    r = client.post(
        "/settings/alerts",
        data={"csrf_token": token, "data_used_100": "pigeon"},
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 400 and "请选择短信、邮件、两者或都不要。" in r.text
    # Neither is not offered for a security notice, and refused if sent all the same; the other
    # choices of that form are not saved either.
    assert 'id="alert-password_changed"' in page.text
    offered = page.text.split('id="alert-password_changed"')[1].split("</select>")[0]
    assert 'value="none"' not in offered and 'value="sms"' in offered
    r = client.post(
        "/settings/alerts",
        data={"csrf_token": token, "data_used_80": "email", "password_changed": "none"},
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 400 and "此提醒用于保护您的账户" in r.text
    chosen = client.get("/api/v1/alerts/preferences", headers=headers).json()["preferences"]
    assert chosen["data_used_80"] == "sms" and chosen["password_changed"] == "email"
    r = client.post("/settings/alerts", data={"data_used_100": "sms"}, headers=ACCEPT_HTML)
    assert r.status_code in (400, 403)  # no CSRF token: refused
