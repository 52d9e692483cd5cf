"""SMS bind codes cannot be used to enumerate numbers, to flood a number, or to guess a line away."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests import factories as f
from tests.account.factories import assert_problem
from tests.account.test_binding_api import (
    BIND,
    CN_ONLY,
    HK_ONLY,
    NOT_IN_STOCK,
    TWO_NUMBERS,
    ask_code,
    confirm,
    line_owner,
    sms_to,
    wrong,
)
from tongka import i18n
from tongka.account import lines

HK = timedelta(hours=8)


pytestmark = pytest.mark.usefixtures("demo")


@pytest.fixture
def frozen_clock(frozen_clock):  # type: ignore[no-untyped-def]
    """At 10:00 in Hong Kong: 14 hours before the caps' day ends."""
    frozen_clock.now = frozen_clock.now.replace(hour=2, minute=0, second=0)
    return frozen_clock


def seconds_to_hk_midnight(now: datetime) -> int:
    local = (now + HK).replace(tzinfo=None)
    end = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
    return int((end - local).total_seconds())


def ask(client, headers: dict[str, str], number: str):  # type: ignore[no-untyped-def]
    return client.post(BIND, json={"number": number}, headers=headers)


def shape(r) -> tuple[int, str, tuple[str, ...], str]:  # type: ignore[no-untyped-def]
    body = r.json()
    return (
        r.status_code,
        r.headers["content-type"],
        tuple(sorted(body)),
        str(body.get("code_length", body.get("code"))),
    )


# --- one answer for every number ----------------------------------------------------------------


def test_no_answer_tells_a_line_from_no_line_or_anothers(client, frozen_clock) -> None:
    f.bind(client, f.subscriber(client), TWO_NUMBERS[1])  # someone else's line (its +86 number too)
    me = f.subscriber(client)
    bindable, unknown, taken = HK_ONLY[1], NOT_IN_STOCK, TWO_NUMBERS[2]

    asked = {n: ask(client, me, n) for n in (bindable, unknown, taken)}
    assert {shape(r) for r in asked.values()} == {
        (202, "application/json", ("code_expires_at", "code_length", "number"), "8")
    }
    assert {r.json()["code_expires_at"] for r in asked.values()} == {
        asked[bindable].json()["code_expires_at"]
    }
    assert (
        len(sms_to(client, bindable)) == 1
        and sms_to(client, unknown) == sms_to(client, taken) == []
    )

    real_code = f.last_code(client, bindable)
    for attempt in range(4):
        answers = [confirm(client, me, n, wrong(real_code)) for n in (bindable, unknown, taken)]
        details = {(r.status_code, r.json()["code"], r.json()["detail"]) for r in answers}
        assert details == {
            (422, "bind_code_wrong", f"The code is wrong. {4 - attempt} tries left.")
        }
    answers = [confirm(client, me, n, wrong(real_code)) for n in (bindable, unknown, taken)]
    assert {(r.status_code, r.json()["code"]) for r in answers} == {(409, "bind_code_used_up")}


def test_a_decoy_takes_no_code_not_even_the_one_sent_to_the_line(
    client, sessions, frozen_clock
) -> None:
    me = f.subscriber(client)
    code = ask_code(client, me, HK_ONLY[1])
    assert ask(client, me, NOT_IN_STOCK).status_code == 202
    assert_problem(confirm(client, me, NOT_IN_STOCK, code), 422, "bind_code_wrong")
    assert confirm(client, me, HK_ONLY[1], code).status_code == 201


def test_ones_own_line_is_still_told(client) -> None:
    me = f.subscriber(client)
    f.bind(client, me, CN_ONLY[1])
    assert_problem(ask(client, me, CN_ONLY[1]), 409, "line_already_yours")


# --- daily caps ----------------------------------------------------------------------------------


def test_five_codes_a_day_per_number_whoever_asks_and_whatever_the_number(
    client, frozen_clock
) -> None:
    for number in (HK_ONLY[1], NOT_IN_STOCK):
        for _ in range(5):
            assert ask(client, f.subscriber(client), number).status_code == 202
            frozen_clock.advance(60)
        r = ask(client, f.subscriber(client), number)
        body = assert_problem(r, 429, "bind_codes_used_up_today")
        assert int(r.headers["Retry-After"]) == seconds_to_hk_midnight(frozen_clock.now)
        assert i18n.wait(int(r.headers["Retry-After"]), "en") in body["detail"]
    assert len(sms_to(client, HK_ONLY[1])) == 5

    frozen_clock.now = (frozen_clock.now + timedelta(days=1)).replace(
        hour=16, minute=0
    )  # 00:00 in Hong Kong
    assert ask(client, f.subscriber(client), HK_ONLY[1]).status_code == 202


def test_a_new_code_within_a_minute_says_when_in_retry_after(client, frozen_clock) -> None:
    me = f.subscriber(client)
    assert ask(client, me, NOT_IN_STOCK).status_code == 202
    frozen_clock.advance(45)
    r = ask(client, me, NOT_IN_STOCK)  # a number that is no line waits alike
    assert_problem(r, 429, "bind_code_too_soon")
    assert r.headers["Retry-After"] == "15"


def test_ten_codes_a_day_per_account(client, frozen_clock) -> None:
    me = f.subscriber(client)
    numbers = [f"+8526999{n:04d}" for n in range(11)]
    for number in numbers[:10]:
        assert ask(client, me, number).status_code == 202
    assert_problem(ask(client, me, numbers[10]), 429, "bind_codes_used_up_today")
    assert ask(client, f.subscriber(client), numbers[10]).status_code == 202  # another account may


def test_twenty_codes_a_day_per_client_address(client, app, frozen_clock) -> None:
    office = TestClientAt(app, "198.51.100.4")
    accounts = [f.subscriber(client) for _ in range(3)]
    for n in range(20):
        assert ask(office, accounts[n % 3], f"+8526998{n:04d}").status_code == 202
    r = ask(office, accounts[0], "+85269970000")
    assert_problem(r, 429, "bind_codes_used_up_today")
    assert ask(client, accounts[0], "+85269970000").status_code == 202  # from another address


def test_the_daily_caps_are_settings(settings, frozen_clock) -> None:
    from fastapi.testclient import TestClient

    from tongka.app import create_app

    tighter = settings.model_copy(
        update={
            "bind_codes_per_number_per_day": 2,
            "bind_codes_per_account_per_day": 3,
            "bind_codes_per_address_per_day": 4,
        }
    )
    app = create_app(tighter)
    try:
        with TestClient(app) as client:
            me = f.subscriber(client)
            for _ in range(2):  # per number
                assert ask(client, me, NOT_IN_STOCK).status_code == 202
                frozen_clock.advance(60)
            r = ask(client, me, NOT_IN_STOCK)
            assert_problem(r, 429, "bind_codes_used_up_today")
            assert int(r.headers["Retry-After"]) == seconds_to_hk_midnight(frozen_clock.now)
            assert ask(client, me, "+85269960000").status_code == 202  # the account's third
            assert_problem(ask(client, me, "+85269960001"), 429, "bind_codes_used_up_today")
            office = TestClientAt(app, "198.51.100.7")  # per address: its fifth is refused
            for n in range(4):
                assert ask(office, f.subscriber(client), f"+8526995{n:04d}").status_code == 202
            r = ask(office, f.subscriber(client), "+85269959999")
            assert_problem(r, 429, "bind_codes_used_up_today")
            assert "Retry-After" in r.headers
    finally:
        app.state.engine.dispose()


def TestClientAt(app, host: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    return TestClient(app, client=(host, 40000))


# --- guessing odds ------------------------------------------------------------------------------


def test_twenty_wrong_codes_a_day_per_number_across_accounts_then_even_the_right_one_waits(
    client, sessions, frozen_clock
) -> None:
    # 8 digits and at most 20 wrong guesses a number a day: at most 20 / 10^8 = 2e-7 a day.
    assert (
        lines.CODE_DIGITS == 8
        and lines.BIND_WRONG_PER_NUMBER.allowed / 10**lines.CODE_DIGITS <= 1e-6
    )
    iccid, hk = HK_ONLY
    for _ in range(4):  # four accounts spend their code's five tries
        guesser = f.subscriber(client)
        code = ask_code(client, guesser, hk)
        for _ in range(4):
            assert_problem(confirm(client, guesser, hk, wrong(code)), 422, "bind_code_wrong")
        assert_problem(confirm(client, guesser, hk, wrong(code)), 409, "bind_code_used_up")
        frozen_clock.advance(60)

    holder = f.subscriber(client)
    code = ask_code(client, holder, hk)
    r = confirm(client, holder, hk, code)
    assert_problem(r, 429, "bind_guesses_used_up_today")
    assert int(r.headers["Retry-After"]) == seconds_to_hk_midnight(frozen_clock.now)
    assert line_owner(sessions, iccid) is None

    frozen_clock.now = (frozen_clock.now + timedelta(days=1)).replace(hour=0)
    code = ask_code(client, holder, hk)
    assert confirm(client, holder, hk, code).status_code == 201


def test_the_day_is_hong_kongs(client, frozen_clock) -> None:
    frozen_clock.now = datetime(2026, 3, 2, 15, 59, tzinfo=UTC)  # 23:59 in Hong Kong
    me = f.subscriber(client)
    for n in range(10):
        assert ask(client, me, f"+8526996{n:04d}").status_code == 202
    r = ask(client, me, "+85269960010")
    assert r.headers["Retry-After"] == "60"
    frozen_clock.advance(60)
    assert ask(client, me, "+85269960010").status_code == 202
    assert uuid.UUID(client.get("/api/v1/me", headers=me).json()["id"])
