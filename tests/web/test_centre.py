"""The personal centre (/account) and binding a line (/lines/bind): account/centre.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.charging import calls
from tests.charging import factories as charging_f
from tests.helpers import FrozenClock
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in
from tongka import clock, web
from tongka.account.identity import mask
from tongka.account.models import Account, BindChallenge, Line
from tongka.catalog.models import Pack
from tongka.db import transaction
from tongka.i18n import gettext
from tongka.money import GB, MB
from tongka.wallet import service as wallets

HK_PLMN = charging_f.HK_PLMN  # HKT/csl
INTERNET = 10  # the demo's charged rating group


def bought(client: TestClient, headers: dict[str, str], line_id: str, code: str) -> None:
    """`code` ordered through the app API and paid in the sandbox: a bucket on the line."""
    order = f.order(client, headers, line_id, code=code)
    f.pay(client, order["payment"]["id"])


def used(sessions: sessionmaker[Session], line_id: str, plmn: str, volume: int) -> None:
    """`volume` used on the network `plmn` and reported, as the packet core does over Nchf."""
    with transaction(sessions) as session:
        charging_f.ensure_networks(session)
        line = session.get_one(Line, uuid.UUID(line_id))
        charging = charging_f.open_session(session, line, plmn)
        grant = calls.request_quota(session, charging, INTERNET, volume, 600, clock.now()).grant
        assert grant is not None
        calls.report_usage(session, grant, volume)


def text(html: str) -> str:
    """A page's words, tags gone and spaces folded (to look for a sentence across markup)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def send_code(client: TestClient, number: str, **extra: str) -> Any:
    token = form_token(client, "/lines/bind")
    return client.post(
        "/lines/bind", data={"number": number, "csrf_token": token, **extra}, headers=ACCEPT_HTML
    )


def enter_code(client: TestClient, number: str, code: str) -> Any:
    token = form_token(client, "/lines/bind")
    return client.post(
        "/lines/bind",
        data={"number": number, "code": code, "csrf_token": token},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


@pytest.mark.parametrize("language", ["en", "zh-Hans", "zh-Hant"])
def test_the_centre_shows_what_each_zone_has_left_after_a_purchase_and_usage(
    client: TestClient,
    sessions: sessionmaker[Session],
    demo: None,
    language: str,
    frozen_clock: FrozenClock,  # the usage and the chart on one Hong Kong day, even at midnight
) -> None:
    headers = signed_in(client, language)
    number = f.spare_numbers(sessions)[0]
    line_id = f.bind(client, headers, number)["id"]
    bought(client, headers, line_id, "hk-5gb-30d")
    bought(client, headers, line_id, "both-1gb-7d")
    # In Hong Kong, drawn from the pack that expires first: the one for both zones.
    used(sessions, line_id, HK_PLMN, 512 * MB)

    r = client.get("/account", headers=ACCEPT_HTML)
    assert r.status_code == 200 and r.headers["content-language"] == language
    page = text(r.text)

    def left(remaining: int, total: int) -> str:
        return gettext(
            "{left} of {total} left",
            language,
            left=web.data(remaining, language),
            total=web.data(total, language),
        )

    hk, mainland = 6 * GB - 512 * MB, GB - 512 * MB
    assert left(hk, 6 * GB) in page  # "5.5 GB of 6 GB left"
    assert left(mainland, GB) in page  # "512 MB of 1 GB left": the both-zone pack
    assert f'max="{6 * GB}"' in r.text and f'value="{hk}"' in r.text  # the gauges
    assert f'max="{GB}"' in r.text and f'value="{mainland}"' in r.text
    # The packs in force, each with what it has left and its expiry.
    assert left(5 * GB, 5 * GB) in page and left(GB - 512 * MB, GB) in page
    with sessions() as session:
        for code in ("hk-5gb-30d", "both-1gb-7d"):
            assert (
                session.scalars(select(Pack).where(Pack.code == code)).one().name(language) in page
            )
    # The same numbers as the app's balance.
    balance = client.get(f"/api/v1/lines/{line_id}/balance", headers=headers).json()
    assert balance["zones"]["hk"]["remaining_bytes"] == hk
    assert balance["zones"]["mainland"]["remaining_bytes"] == mainland

    # The number masked, a way to renew, the usage as a table (and a chart fed by JSON).
    assert mask(number) in page and number not in r.text
    assert f'href="/renew/{line_id}"' in r.text
    assert gettext("Usage as a table", language) in page
    assert "HKT/csl" in page and web.data(512 * MB, language) in page
    assert f'data-usage="/account/usage/{line_id}.json"' in r.text
    assert '<script src="/static/centre.js"></script>' in r.text
    assert "<script>" not in r.text  # no inline script (the CSP forbids it)

    usage = client.get(f"/account/usage/{line_id}.json")
    assert usage.status_code == 200 and usage.headers["cache-control"] == "private, no-store"
    body = usage.json()
    assert len(body["labels"]) == 30 and body["line_id"] == line_id
    zones = {z["zone"]: z for z in body["zones"]}
    assert zones["mainland"]["networks"] == []
    assert zones["hk"]["title"] == gettext("Hong Kong", language)
    (network,) = zones["hk"]["networks"]
    assert network["operator"] == "HKT/csl"
    assert network["bytes"][-1] == 512 * MB and sum(network["bytes"]) == 512 * MB  # today


def test_a_line_without_packs_or_usage_says_so(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    headers = signed_in(client)
    f.bind(client, headers, f.spare_numbers(sessions)[0])
    r = client.get("/account", headers=ACCEPT_HTML)
    page = text(r.text)
    assert "No data" in page and "No pack in force. Renew to get data." in page
    assert "No data used in the last 30 days." in page and "centre.js" not in r.text
    assert "Your wallet is empty." in page and "Wallet and top-up" in page


def test_with_no_line_yet_the_centre_leads_to_binding_one(client: TestClient) -> None:
    signed_in(client, "zh-Hant")
    r = client.get("/account", headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert "還沒有線路" in r.text and 'href="/lines/bind" role="button"' in r.text
    assert "centre.js" not in r.text  # nothing to chart


def test_another_subscribers_line_never_appears_and_its_usage_is_a_404(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    theirs, mine = f.spare_numbers(sessions)[:2]
    other = f.subscriber(client)
    their_line = f.bind(client, other, theirs)["id"]
    bought(client, other, their_line, "hk-1gb-7d")
    used(sessions, their_line, HK_PLMN, 10 * MB)

    headers = signed_in(client)
    my_line = f.bind(client, headers, mine)["id"]
    r = client.get("/account", headers=ACCEPT_HTML)
    assert mask(mine) in r.text
    assert their_line not in r.text and mask(theirs) not in r.text
    # Not theirs by id either, nor nobody's: the same 404.
    for line_id in (their_line, str(uuid.uuid4())):
        assert client.get(f"/account/usage/{line_id}.json").status_code == 404
        page = client.get(f"/account/usage/{line_id}.json", headers=ACCEPT_HTML)
        assert page.status_code == 404 and "No such line." in page.text
    assert client.get(f"/account/usage/{my_line}.json").status_code == 200
    # Nor with the bound= notice of someone else's line.
    assert "now bound" not in client.get(f"/account?bound={their_line}", headers=ACCEPT_HTML).text


def test_a_visitor_is_sent_to_log_in(client: TestClient) -> None:
    for path in ("/account", "/lines/bind", f"/account/usage/{uuid.uuid4()}.json"):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2F")
    assert client.get(f"/account/usage/{uuid.uuid4()}.json").status_code == 401  # a script: no page
    r = client.post(
        "/lines/bind",
        data={"number": "+85251011007"},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code in (303, 403)


@pytest.mark.parametrize("typed", ["national", "e164"])
def test_binding_a_line_by_its_number_and_the_sms_code(
    client: TestClient, sessions: sessionmaker[Session], demo: None, typed: str
) -> None:
    signed_in(client)
    number = next(n for n in f.spare_numbers(sessions) if n.startswith("+852"))
    written = f"{number[4:8]} {number[8:]}" if typed == "national" else f"+852 {number[4:]}"
    r = send_code(client, written)
    assert r.status_code == 200
    assert f'name="number" value="{number}"' in r.text  # carried to step 2, as E.164
    assert 'autocomplete="one-time-code"' in r.text and "valid for 10 minutes" in text(r.text)

    r = enter_code(client, number, f.last_code(client, number))
    assert r.status_code == 303
    location = r.headers["location"]
    with sessions() as session:
        line = session.scalars(select(Line).where(Line.hk_number == number)).one()
        assert line.account_id is not None and location == f"/account?bound={line.id}"
    page = text(client.get(location, headers=ACCEPT_HTML).text)
    assert f"Line {mask(number)}" in page and "is now bound to your account." in page


def test_a_wrong_code_says_how_many_tries_are_left_and_counts(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    signed_in(client, "zh-Hans")
    number = f.spare_numbers(sessions)[0]
    assert send_code(client, number).status_code == 200
    code = f.last_code(client, number)
    wrong = f"{(int(code) + 1) % 10**8:08d}"

    r = enter_code(client, number, wrong)
    assert r.status_code == 422
    assert "验证码错误，还可以尝试 4 次。" in r.text
    assert 'aria-invalid="true"' in r.text and 'aria-describedby="code-help code-error"' in r.text
    assert f'name="number" value="{number}"' in r.text  # still on step 2
    with sessions() as session:  # the try counts, though the request was refused
        assert session.scalars(select(BindChallenge.attempts)).one() == 1

    r = enter_code(client, number, "12ab")
    assert r.status_code == 400 and "请输入短信中的 8 位验证码。" in r.text
    assert enter_code(client, number, code).status_code == 303


def test_a_new_code_too_soon_and_a_number_that_is_not_one_are_said_on_the_form(
    client: TestClient, sessions: sessionmaker[Session], demo: None, frozen_clock: FrozenClock
) -> None:
    signed_in(client, "zh-Hant")
    number = f.spare_numbers(sessions)[0]
    assert send_code(client, number).status_code == 200
    frozen_clock.advance(20)
    r = send_code(client, number, resend="1")
    assert r.status_code == 429 and r.headers["retry-after"] == "40"
    assert 'role="alert"' in r.text and "驗證碼剛剛已發送到該號碼。40 秒後可再次獲取。" in r.text
    assert 'name="code"' in r.text  # the first code can still be entered
    r = send_code(client, number)  # the first step's form sent again (a reload)
    assert r.status_code == 429 and 'name="code"' in r.text
    # Refused before a code was sent: nothing else counted against today's limits.
    assert len([m for m in client.get("/dev/outbox").json() if m["to"] == number]) == 1

    r = send_code(client, "12345")
    assert r.status_code == 422 and "12345" in r.text
    assert 'aria-invalid="true"' in r.text and 'name="code"' not in r.text
    r = send_code(client, "")
    assert r.status_code == 400 and 'id="number-error"' in r.text


def test_a_days_codes_used_up_is_a_429_on_the_form(
    client: TestClient, sessions: sessionmaker[Session], demo: None, frozen_clock: FrozenClock
) -> None:
    signed_in(client)
    numbers = f.spare_numbers(sessions)
    for number in numbers[:10]:  # ten codes a day per account
        assert send_code(client, number).status_code == 200
    r = send_code(client, numbers[10])
    assert r.status_code == 429 and "Too many codes were asked for today." in text(r.text)
    assert 'name="number"' in r.text and 'name="code"' not in r.text


def test_a_bonus_is_named_by_its_offer_and_the_wallet_shows_its_balance(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    headers = signed_in(client)
    line_id = f.bind(client, headers, f.spare_numbers(sessions)[0])["id"]
    bought(client, headers, line_id, "hk-10gb-30d")  # the demo's offer: 1 GB more, both zones
    me = client.get("/api/v1/me", headers=headers).json()
    with transaction(sessions) as session:
        account = session.get_one(Account, uuid.UUID(me["id"]))
        wallets.credit(session, account, 5000, "HKD", reference="test")

    page = text(client.get("/account", headers=ACCEPT_HTML).text)
    assert "Bonus: 1 GB free with any 10 GB pack" in page
    assert "11 GB of 11 GB left" in page and "1 GB of 1 GB left" in page  # Hong Kong; mainland
    assert f"Balance: {web.money(5000, 'HKD', 'en')}" in page
