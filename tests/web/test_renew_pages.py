"""Renewing on the web (renewal/pages.py): choose, confirm, pay at each provider's sandbox page,
follow the order to fulfilled; one order per confirm, a failed payment paid once on retry, the
coupon priced as the API prices it, and nobody else's line or order."""

from __future__ import annotations

import html
import re
import time
import uuid
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.web.helpers import ACCEPT_HTML, csrf
from tongka import clock
from tongka.charging import renew_link
from tongka.demo import DEMO_COUPON
from tongka.ledger.models import Bucket
from tongka.order.models import Order
from tongka.payment.models import Payment


class _Forms(HTMLParser):
    """The forms of a page: action and their fields' values (hidden and checked ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("type") == "hidden":
            self.forms[-1][1][a["name"]] = a.get("value", "")


def forms(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def owner(client: httpx.Client, sessions: Any, language: str = "en") -> tuple[dict[str, str], str]:
    """A new subscriber with the demo's spare line, their browser signed in; (API headers, line id)."""
    headers, line, _ = f.new_subscriber(client, sessions, language=language)
    client.cookies.set("tongka_session", headers["Authorization"].removeprefix("Bearer "))
    return headers, line["id"]


def choose(
    client: httpx.Client, line_id: str, pack: str, currency: str, method: str, coupon: str = ""
) -> httpx.Response:
    page = client.get(f"/renew/{line_id}", headers=ACCEPT_HTML)
    assert page.status_code == 200, page.text
    return client.post(
        f"/renew/{line_id}",
        data={
            "csrf_token": csrf(page.text),
            "pack_id": f.pack_id(client, pack),  # type: ignore[arg-type]
            "currency": currency,
            "payment_method": method,
            "coupon_code": coupon,
        },
        headers=ACCEPT_HTML,
    )


def confirm_form(confirm: httpx.Response) -> tuple[str, dict[str, str]]:
    assert confirm.status_code == 200, confirm.text
    [(action, fields)] = [f for f in forms(confirm.text) if f[0].endswith("/pay")]
    return action, fields


def pay_at_sandbox(client: httpx.Client, location: str, outcome: str = "succeeded") -> None:
    """Open the provider's checkout page and press its button[name=outcome][value=...]."""
    page = client.get(local(location), headers=ACCEPT_HTML)
    assert page.status_code == 200, page.text
    assert re.search(rf'name="outcome" value="{outcome}"', page.text), page.text
    action, fields = next((a, v) for a, v in forms(page.text) if a.startswith("/sandbox/"))
    r = client.post(html.unescape(action), data={**fields, "outcome": outcome})
    assert r.status_code in (200, 303), r.text


def wait_for(client: httpx.Client, headers: dict[str, str], order_id: str, status: str) -> None:
    for _ in range(100):  # some providers call back just after answering the payer
        if client.get(f"/api/v1/orders/{order_id}", headers=headers).json()["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} never became {status}")


def api_quote(
    client: httpx.Client, headers: dict[str, str], line_id: str, currency: str, **extra: str
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/quotes",
        json={
            "line_id": line_id,
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": currency,
            **extra,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def place(client: httpx.Client, confirm: httpx.Response) -> httpx.Response:
    action, fields = confirm_form(confirm)
    return client.post(action, data=fields, headers=ACCEPT_HTML, follow_redirects=False)


def statuses(s: Any, line_id: str) -> list[str]:
    """The statuses of the payments for the line's orders (order_id_of checks there is one order)."""
    return list(
        s.scalars(
            select(Payment.status).join(Order).where(Order.line_id == uuid.UUID(line_id))
        ).all()
    )


def order_id_of(sessions: Any, line_id: str) -> str:
    with sessions() as s:
        [order] = s.scalars(select(Order.id).where(Order.line_id == uuid.UUID(line_id))).all()
    return str(order)


@pytest.mark.parametrize(
    ("method", "currency", "provider"),
    [
        ("alipay", "HKD", "alipay"),
        ("wechat_pay", "CNY", "wechat"),
        ("card", "HKD", "stripe"),
        ("paypal", "HKD", "paypal"),
    ],
)
def test_a_subscriber_renews_on_the_web_with_each_method(
    client, sessions, demo, method, currency, provider
) -> None:
    headers, line_id = owner(client, sessions)
    quote = api_quote(client, headers, line_id, currency)  # first: the web's quote replaces it
    confirm = choose(client, line_id, "hk-5gb-30d", currency, method)
    assert quote["lines"][-1] in html.unescape(confirm.text)  # the API's total, word for word

    paid = place(client, confirm)
    assert paid.status_code == 303
    order_id = order_id_of(sessions, line_id)
    location = paid.headers["location"]
    if (
        method == "wechat_pay"
    ):  # Native: our page shows the QR code, and in dev the simulator's link
        assert location == f"/orders/{order_id}"
        page = client.get(location, headers=ACCEPT_HTML)
        assert 'data-testid="pay-qr"' in page.text and "<svg" in page.text
        assert 'hx-trigger="every 2s"' in page.text  # it follows the order
        location = html.unescape(
            re.search(r'href="([^"]+)"[^>]*data-testid="checkout"', page.text)[1]
        )  # type: ignore[index]
    else:  # through our checkout link: Alipay's web cashier is signed afresh there
        assert location == f"/orders/{order_id}/checkout"
        location = client.get(location, headers=ACCEPT_HTML, follow_redirects=False).headers[
            "location"
        ]
        assert urlsplit(location).path.startswith(f"/sandbox/{provider}/")
    pay_at_sandbox(client, location)
    wait_for(client, headers, order_id, "fulfilled")

    page = client.get(f"/orders/{order_id}", headers=ACCEPT_HTML)
    assert 'data-status="fulfilled"' in page.text and "hx-trigger" not in page.text
    assert re.search(r"Hong Kong: [\d.,]+ GB left on this line", page.text)
    receipt = re.search(r'href="(/receipts/[^"]+)"', page.text)
    assert receipt and client.get(receipt[1]).status_code == 200
    with sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(Bucket).where(Bucket.line_id == uuid.UUID(line_id))
            )
            >= 1
        )
        assert statuses(s, line_id) == ["succeeded"]
        assert s.scalar(select(Order.channel).where(Order.line_id == uuid.UUID(line_id))) == "web"
        bucket_refs = s.scalars(
            select(Bucket.id).where(Bucket.line_id == uuid.UUID(line_id), Bucket.zone == "hk")
        ).all()
    assert len(bucket_refs) == 1  # credited once


def test_a_double_click_or_a_reload_of_pay_places_one_order(client, sessions, demo) -> None:
    _headers, line_id = owner(client, sessions)
    confirm = choose(client, line_id, "hk-5gb-30d", "HKD", "alipay")
    first = place(client, confirm)
    second = place(client, confirm)  # the same form again: the browser's reload
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    with sessions() as s:
        assert len(statuses(s, line_id)) == 1  # one order, one payment


def test_a_failed_payment_is_said_plainly_and_trying_again_pays_once(
    client, sessions, demo
) -> None:
    headers, line_id = owner(client, sessions)
    paid = place(client, choose(client, line_id, "hk-5gb-30d", "HKD", "card"))
    order_id = order_id_of(sessions, line_id)
    page = client.get(local(paid.headers["location"]))
    action, fields = forms(page.text)[0]
    declined = client.post(
        html.unescape(action),
        data={**fields, "card_number": "4000 0000 0000 0002", "expiry": "12 / 49", "cvc": "123"},
    )
    assert declined.status_code == 402
    with sessions() as s:  # Stripe's webhook for the decline
        assert statuses(s, line_id) == ["failed"]

    page = client.get(f"/orders/{order_id}", headers=ACCEPT_HTML)
    assert "did not go through" in page.text and "Try again" in page.text
    retry = next(f for f in forms(page.text) if f[0].endswith("/retry"))
    again = client.post(retry[0], data=retry[1], headers=ACCEPT_HTML, follow_redirects=False)
    twice = client.post(
        retry[0], data=retry[1], headers=ACCEPT_HTML, follow_redirects=False
    )  # a double click
    assert again.status_code == twice.status_code == 303
    assert again.headers["location"] == twice.headers["location"]
    pay_at_sandbox(client, again.headers["location"])
    wait_for(client, headers, order_id, "fulfilled")
    with sessions() as s:
        assert sorted(statuses(s, line_id)) == ["failed", "succeeded"]  # of the one order
    # The declined attempt was closed at Stripe: a late success there cannot charge again.
    assert "Payment succeeded" not in client.get(local(paid.headers["location"])).text


def test_a_coupon_is_priced_as_the_api_prices_it_and_a_bad_one_is_shown_on_the_form(
    client, sessions, demo
) -> None:
    headers, line_id = owner(client, sessions)
    bad = choose(client, line_id, "hk-5gb-30d", "HKD", "alipay", coupon="NOPE-NOPE-NOPE")
    assert bad.status_code == 400
    assert 'aria-invalid="true" aria-describedby="coupon_code-error"' in bad.text
    assert "This coupon code is not valid." in bad.text

    quote = api_quote(client, headers, line_id, "HKD", coupon_code=DEMO_COUPON)
    assert quote["coupon_applied"] is True
    confirm = choose(client, line_id, "hk-5gb-30d", "HKD", "alipay", coupon=DEMO_COUPON)
    text = html.unescape(confirm.text)
    assert all(line in text for line in quote["lines"]), (quote["lines"], text)
    place(client, confirm)
    with sessions() as s:
        assert (
            s.scalar(select(Order.amount).where(Order.line_id == uuid.UUID(line_id)))
            == quote["amount"]
        )


def test_a_method_not_offered_in_a_currency_is_explained_on_the_form(
    client, sessions, demo
) -> None:
    _, line_id = owner(client, sessions)
    page = client.get(f"/renew/{line_id}", headers=ACCEPT_HTML)
    for method in ("alipay", "wechat_pay", "card", "paypal"):
        assert f'name="payment_method" value="{method}"' in page.text
    refused = choose(client, line_id, "hk-5gb-30d", "CNY", "paypal")
    assert refused.status_code == 400
    assert "PayPal cannot be paid in CNY" in refused.text


def test_an_awaiting_order_can_be_cancelled(client, sessions, demo) -> None:
    _headers, line_id = owner(client, sessions)
    place(client, choose(client, line_id, "hk-5gb-30d", "HKD", "alipay"))
    order_id = order_id_of(sessions, line_id)
    page = client.get(f"/orders/{order_id}", headers=ACCEPT_HTML)
    cancel = next(f for f in forms(page.text) if f[0].endswith("/cancel"))
    r = client.post(cancel[0], data=cancel[1], headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/orders/{order_id}", headers=ACCEPT_HTML)
    assert 'data-status="cancelled"' in page.text and "Nothing was charged" in page.text
    # Trying again after a cancel: a new order, the same pack chosen on the renewal page.
    retry = next(f for f in forms(page.text) if f[0].endswith("/retry"))
    r = client.post(retry[0], data=retry[1], headers=ACCEPT_HTML, follow_redirects=False)
    pack = f.pack_id(client, "hk-5gb-30d")
    assert r.status_code == 303 and r.headers["location"] == f"/renew/{line_id}?pack_id={pack}"
    assert f'value="{pack}" required checked' in client.get(r.headers["location"]).text


def test_another_subscribers_line_and_order_are_404_pages_and_a_visitor_logs_in(
    client, sessions, demo
) -> None:
    _, line_id = owner(client, sessions)
    place(client, choose(client, line_id, "hk-5gb-30d", "HKD", "alipay"))
    order_id = order_id_of(sessions, line_id)
    f_headers = f.subscriber(client)  # someone else, signed in
    client.cookies.set("tongka_session", f_headers["Authorization"].removeprefix("Bearer "))
    for path in (f"/renew/{line_id}", f"/orders/{order_id}", f"/orders/{order_id}/status"):
        r = client.get(path, headers=ACCEPT_HTML)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    client.cookies.delete("tongka_session")
    for path in (f"/renew/{line_id}", f"/orders/{order_id}"):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("language", "words"),
    [("zh-Hans", "确认并付款"), ("zh-Hant", "確認並付款"), ("en", "Confirm and pay")],
)
def test_the_renewal_speaks_three_languages(client, sessions, demo, language, words) -> None:
    _, line_id = owner(client, sessions, language=language)
    currency = "CNY" if language == "zh-Hans" else "HKD"
    confirm = choose(client, line_id, "hk-5gb-30d", currency, "alipay")
    assert f'<html lang="{language}">' in confirm.text and words in confirm.text


def signed_link(settings: Any, line_id: str, ttl: int = 24 * 3600) -> str:
    """The address the network sends the phone to (as charging/nchf.py makes it), as a path."""
    key = renew_link.link_key(settings.secret_key.get_secret_value())
    return local(
        renew_link.RenewLinks("http://testserver", key, ttl).url(uuid.UUID(line_id), clock.now())
    )


def test_the_networks_signed_link_offers_the_packs_without_a_log_in_and_only_the_masked_number(
    client, sessions, demo, settings
) -> None:
    _, line = f.new_subscriber(client, sessions)[:2]
    number = line["numbers"][0]
    phone = client  # the phone's browser: no session
    page = phone.get(signed_link(settings, line["id"]), headers=ACCEPT_HTML)
    assert page.status_code == 200, page.text
    assert 'data-signed="true"' in page.text and 'data-testid="packs"' in page.text
    assert number not in page.text and number[-2:] in page.text  # masked
    assert "left on this line" not in page.text and "/login?next=/renew/" in page.text
    offered = re.findall(r'name="payment_method" value="([a-z_0-9]+)"', page.text)
    assert offered == ["wechat_pay_h5", "alipay_wap"]

    good = signed_link(settings, line["id"])
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    unknown = signed_link(settings, str(uuid.uuid4()))  # signed by tongka, but no such line
    answers = [phone.get(path, headers=ACCEPT_HTML) for path in (tampered, unknown)]
    assert [r.status_code for r in answers] == [404, 404]
    said = [re.search(r"<main.*</main>", r.text, re.S)[0] for r in answers]  # type: ignore[index]
    assert said[0] == said[1] and number[-2:] not in said[0]

    for path in (signed_link(settings, line["id"], ttl=-1), f"/renew/{line['id']}"):
        r = phone.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("method", "currency"), [("wechat_pay_h5", "CNY"), ("alipay_wap", "HKD")])
def test_a_phone_renews_through_the_signed_link_and_pays_in_its_browser(
    client, sessions, demo, settings, method, currency
) -> None:
    headers, line, _ = f.new_subscriber(client, sessions)
    phone = client  # no session: the phone whose data ran out
    link = signed_link(settings, line["id"])
    page = phone.get(link, headers=ACCEPT_HTML)
    exp_sig = dict(re.findall(r'name="(exp|sig)" value="([^"]+)"', page.text))
    confirm = phone.post(
        f"/renew/{line['id']}",
        data={
            "csrf_token": csrf(page.text),
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": currency,
            "payment_method": method,
            **exp_sig,
        },
        headers=ACCEPT_HTML,
    )
    paid = place(phone, confirm)
    assert paid.status_code == 303
    place(phone, confirm)  # a reload: the same order
    order_id = order_id_of(sessions, line["id"])
    pay_at_sandbox(phone, paid.headers["location"])
    wait_for(client, headers, order_id, "fulfilled")  # the owner's order, seen through the API

    page = phone.get(f"/orders/{order_id}", headers=ACCEPT_HTML)
    assert page.status_code == 200 and 'data-status="fulfilled"' in page.text
    assert "left on this line" not in page.text and "/receipts/" not in page.text
    with sessions() as s:
        assert statuses(s, line["id"]) == ["succeeded"]
        assert (
            s.scalar(
                select(Payment.method).join(Order).where(Order.line_id == uuid.UUID(line["id"]))
            )
            == method
        )
    phone.cookies.delete("tongka_order")  # another browser: not this order's
    r = phone.get(f"/orders/{order_id}", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
