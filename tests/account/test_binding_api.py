"""Binding a line to an account by a one-time SMS code, and seeing only one's own lines."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.account.factories import assert_problem
from tongka.account.models import BindChallenge, Line

BIND = "/api/v1/lines/bind"
CONFIRM = "/api/v1/lines/bind/confirm"
LINES = "/api/v1/lines"

# From src/tongka/demo/lines.csv
DEMO_HK = "+85251011007"  # the demo subscriber's line
TWO_NUMBERS = ("8985200240000000020", "+85251021014", "+8613900022026")
HK_ONLY = ("8985200240000000038", "+85251031021")
CN_ONLY = ("8985200240000000111", "+8613900112143")
NOT_IN_STOCK = "+85269999999"  # a valid Hong Kong mobile number that is no tongka line


def ask_code(client, headers: dict[str, str], number: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(BIND, json={"number": number}, headers=headers)
    assert r.status_code == 202, r.text
    return f.last_code(client, number)


def confirm(client, headers: dict[str, str], number: str, code: str):  # type: ignore[no-untyped-def]
    return client.post(CONFIRM, json={"number": number, "code": code}, headers=headers)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


def sms_to(client, number: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return [
        m for m in client.get("/dev/outbox").json() if m["channel"] == "sms" and m["to"] == number
    ]


def challenges(sessions, number: str) -> list[BindChallenge]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(
            s.scalars(
                select(BindChallenge)
                .where(BindChallenge.number == number)
                .order_by(BindChallenge.created_at)
            )
        )


def line_owner(sessions, iccid: str) -> uuid.UUID | None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalars(select(Line.account_id).where(Line.iccid == iccid)).one()


def account_id(client, headers: dict[str, str]) -> uuid.UUID:  # type: ignore[no-untyped-def]
    return uuid.UUID(client.get("/api/v1/me", headers=headers).json()["id"])


# --- asking for a code ----------------------------------------------------------------------------


@pytest.mark.usefixtures("demo")
def test_bind_sends_an_eight_digit_code_by_sms_to_that_number(
    client, sessions, settings, frozen_clock
) -> None:
    headers = f.subscriber(client)
    iccid, hk, _cn = TWO_NUMBERS
    r = client.post(BIND, json={"number": "5102 1014"}, headers=headers)  # national form
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"number", "code_expires_at", "code_length"}  # the code travels by SMS only
    assert body["number"] == hk and body["code_length"] == 8
    expires = datetime.fromisoformat(body["code_expires_at"].replace("Z", "+00:00"))
    assert expires == frozen_clock.now + timedelta(seconds=settings.bind_code_ttl_seconds)

    [sms] = sms_to(client, hk)
    # English keeps to GSM-7 ([tongka], not 【tongka】) and so to one segment (tests/notify/test_templates.py).
    assert sms["body"].startswith("[tongka] ")
    codes = re.findall(r"\b\d{8}\b", sms["body"])
    assert len(codes) == 1
    assert "10 minutes" in sms["body"]
    [challenge] = challenges(sessions, hk)  # the code is not kept in clear
    assert re.fullmatch(r"[0-9a-f]{64}", challenge.code_hash)
    assert challenge.attempts == 0 and challenge.consumed_at is None
    assert line_owner(sessions, iccid) is None  # asking binds nothing


@pytest.mark.usefixtures("demo")
def test_bind_requires_a_signed_in_subscriber(client) -> None:
    assert_problem(client.post(BIND, json={"number": HK_ONLY[1]}), 401, "not_authenticated")
    assert sms_to(client, HK_ONLY[1]) == []


@pytest.mark.parametrize(
    "number", ["+852 2345 6789", "+44 7700 900123", "12345", "", "+852 5103 10210"]
)
def test_invalid_number_is_422(client, number: str) -> None:
    headers = f.subscriber(client)
    assert_problem(
        client.post(BIND, json={"number": number}, headers=headers), 422, "invalid_number"
    )
    assert_problem(
        client.post(CONFIRM, json={"number": number, "code": "12345678"}, headers=headers),
        422,
        "invalid_number",
    )


@pytest.mark.parametrize("code", ["123456", "1234567", "123456789", "abcdefgh", ""])
def test_malformed_code_is_a_validation_error(client, code: str) -> None:
    headers = f.subscriber(client)
    problem = assert_problem(
        client.post(CONFIRM, json={"number": HK_ONLY[1], "code": code}, headers=headers),
        422,
        "validation_error",
    )
    assert [e["field"] for e in problem["errors"]] == ["code"]


# --- confirming ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("demo")
def test_confirm_binds_the_line_and_returns_it(client, sessions) -> None:
    headers = f.subscriber(client)
    iccid, hk, cn = TWO_NUMBERS
    code = ask_code(client, headers, hk)
    r = confirm(client, headers, "+852 5102-1014", f" {code} ")
    assert r.status_code == 201, r.text
    line = r.json()
    assert set(line) >= {"id", "iccid", "numbers"}
    assert line["iccid"] == iccid and line["numbers"] == [hk, cn]
    assert line["status"] == "active" and line["bound_at"] and line["real_name"] is None
    uuid.UUID(line["id"])

    assert client.get(LINES, headers=headers).json() == [line]
    assert client.get(f"{LINES}/{line['id']}", headers=headers).json() == line
    assert line_owner(sessions, iccid) == account_id(client, headers)
    [challenge] = challenges(sessions, hk)
    assert challenge.consumed_at is not None

    # a code works once
    assert_problem(confirm(client, headers, hk, code), 409, "bind_code_expired")


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("iccid", "number", "typed"),
    [(TWO_NUMBERS[0], TWO_NUMBERS[2], "139 0002 2026"), (*CN_ONLY, "13900112143")],
)
def test_a_line_can_be_bound_by_its_mainland_number(
    client, iccid: str, number: str, typed: str
) -> None:
    headers = f.subscriber(client)
    r = client.post(BIND, json={"number": typed}, headers=headers)
    assert r.status_code == 202, r.text
    line = confirm(client, headers, typed, f.last_code(client, number))
    assert line.status_code == 201, line.text
    assert line.json()["iccid"] == iccid and number in line.json()["numbers"]


@pytest.mark.usefixtures("demo")
def test_a_line_already_yours_is_409(client) -> None:
    headers = f.subscriber(client)
    _iccid, hk, cn = TWO_NUMBERS
    f.bind(client, headers, hk)
    assert_problem(
        client.post(BIND, json={"number": hk}, headers=headers), 409, "line_already_yours"
    )
    assert_problem(
        client.post(BIND, json={"number": cn}, headers=headers), 409, "line_already_yours"
    )
    assert len(client.get(LINES, headers=headers).json()) == 1


@pytest.mark.usefixtures("demo")
def test_wrong_codes_count_even_though_they_are_refused(client, sessions) -> None:
    headers = f.subscriber(client)
    iccid, hk = HK_ONLY
    code = ask_code(client, headers, hk)

    first = assert_problem(confirm(client, headers, hk, wrong(code)), 422, "bind_code_wrong")
    assert first["detail"] == "The code is wrong. 4 tries left."
    second = assert_problem(confirm(client, headers, hk, wrong(code)), 422, "bind_code_wrong")
    assert second["detail"] == "The code is wrong. 3 tries left."
    [challenge] = challenges(sessions, hk)
    assert challenge.attempts == 2  # committed although each request was refused
    assert line_owner(sessions, iccid) is None

    assert confirm(client, headers, hk, code).status_code == 201


@pytest.mark.usefixtures("demo")
def test_after_five_wrong_codes_even_the_right_one_is_refused(client, sessions, settings) -> None:
    assert settings.bind_code_max_attempts == 5
    headers = f.subscriber(client)
    iccid, hk = HK_ONLY
    code = ask_code(client, headers, hk)

    for remaining in (4, 3, 2, 1):
        body = assert_problem(confirm(client, headers, hk, wrong(code)), 422, "bind_code_wrong")
        assert f"{remaining} tries left" in body["detail"]
    assert_problem(confirm(client, headers, hk, wrong(code)), 409, "bind_code_used_up")
    assert_problem(confirm(client, headers, hk, code), 409, "bind_code_expired")

    assert [c.attempts for c in challenges(sessions, hk)] == [5]
    assert line_owner(sessions, iccid) is None
    assert client.get(LINES, headers=headers).json() == []


@pytest.mark.usefixtures("demo")
def test_a_code_is_good_until_just_before_ten_minutes(client, frozen_clock) -> None:
    headers = f.subscriber(client)
    code = ask_code(client, headers, HK_ONLY[1])
    frozen_clock.advance(599)
    assert confirm(client, headers, HK_ONLY[1], code).status_code == 201


@pytest.mark.usefixtures("demo")
def test_a_code_expires_after_ten_minutes(client, sessions, frozen_clock) -> None:
    headers = f.subscriber(client)
    iccid, hk = HK_ONLY
    code = ask_code(client, headers, hk)
    frozen_clock.advance(600)
    assert_problem(confirm(client, headers, hk, code), 409, "bind_code_expired")
    assert line_owner(sessions, iccid) is None
    assert [c.attempts for c in challenges(sessions, hk)] == [
        0
    ]  # an expired code is not even tried

    fresh = ask_code(client, headers, hk)
    assert confirm(client, headers, hk, fresh).status_code == 201


@pytest.mark.usefixtures("demo")
def test_a_new_code_within_a_minute_is_429_for_anyone(client, frozen_clock) -> None:
    headers = f.subscriber(client)
    stranger = f.subscriber(client)
    hk = HK_ONLY[1]
    first = ask_code(client, headers, hk)

    frozen_clock.advance(30)
    for who in (headers, stranger):
        body = assert_problem(
            client.post(BIND, json={"number": hk}, headers=who), 429, "bind_code_too_soon"
        )
        wait = int(re.search(r"in (\d+) seconds", body["detail"]).group(1))  # type: ignore[union-attr]
        assert 30 <= wait <= 31  # never earlier than allowed
    assert len(sms_to(client, hk)) == 1

    frozen_clock.advance(29)
    assert_problem(
        client.post(BIND, json={"number": hk}, headers=headers), 429, "bind_code_too_soon"
    )
    frozen_clock.advance(1)
    second = ask_code(client, headers, hk)
    assert len(sms_to(client, hk)) == 2

    # only the newest code counts
    if second != first:
        assert_problem(confirm(client, headers, hk, first), 422, "bind_code_wrong")
    assert confirm(client, headers, hk, second).status_code == 201


@pytest.mark.usefixtures("demo")
def test_a_code_sent_for_account_a_cannot_be_used_by_account_b(client, sessions) -> None:
    a = f.subscriber(client)
    b = f.subscriber(client)
    iccid, hk = HK_ONLY
    code = ask_code(client, a, hk)

    assert_problem(confirm(client, b, hk, code), 409, "bind_code_expired")
    assert line_owner(sessions, iccid) is None
    assert [c.attempts for c in challenges(sessions, hk)] == [0]  # b's try did not spend a's tries

    assert confirm(client, a, hk, code).status_code == 201
    assert line_owner(sessions, iccid) == account_id(client, a)


@pytest.mark.usefixtures("demo")
def test_of_two_accounts_holding_codes_only_the_first_to_confirm_binds(
    client, sessions, frozen_clock
) -> None:
    a_account = f.register(client, "first-to-confirm")
    a = f.login(client, "first-to-confirm")
    b = f.subscriber(client)
    iccid, hk = HK_ONLY
    a_code = ask_code(client, a, hk)
    frozen_clock.advance(60)
    b_code = ask_code(client, b, hk)

    assert confirm(client, a, hk, a_code).status_code == 201
    r = confirm(client, b, hk, b_code)
    assert_problem(r, 409, "line_bound_elsewhere")
    assert "first-to-confirm" not in r.text and a_account["id"] not in r.text
    assert line_owner(sessions, iccid) == uuid.UUID(a_account["id"])


# --- one's own lines only --------------------------------------------------------------------------


@pytest.mark.usefixtures("demo")
def test_lines_lists_only_ones_own(client) -> None:
    a = f.subscriber(client)
    b = f.subscriber(client)
    a_lines = {f.bind(client, a, TWO_NUMBERS[1])["id"], f.bind(client, a, CN_ONLY[1])["id"]}
    b_lines = {f.bind(client, b, HK_ONLY[1])["id"]}

    assert {line["id"] for line in client.get(LINES, headers=a).json()} == a_lines
    assert {line["id"] for line in client.get(LINES, headers=b).json()} == b_lines
    assert client.get(LINES, headers=f.subscriber(client)).json() == []
    assert_problem(client.get(LINES), 401, "not_authenticated")


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("suffix", ["", "/balance"])
def test_anothers_line_is_404_exactly_like_no_line(client, sessions, suffix: str) -> None:
    owner = f.subscriber(client)
    line_id = f.bind(client, owner, HK_ONLY[1])["id"]
    with sessions() as s:
        demo_line_id = s.scalars(select(Line.id).where(Line.hk_number == DEMO_HK)).one()
    me = f.subscriber(client)

    nobodys = client.get(f"{LINES}/{uuid.uuid4()}{suffix}", headers=me)
    assert_problem(nobodys, 404, "line_not_found")
    for other in (line_id, demo_line_id):
        r = client.get(f"{LINES}/{other}{suffix}", headers=me)
        assert (r.status_code, r.headers["content-type"], r.json()) == (
            404,
            nobodys.headers["content-type"],
            nobodys.json(),
        )

    assert client.get(f"{LINES}/{line_id}{suffix}", headers=owner).status_code == 200


@pytest.mark.usefixtures("demo")
def test_own_line_balance_starts_empty(client) -> None:
    headers = f.subscriber(client)
    line = f.bind(client, headers, HK_ONLY[1])
    r = client.get(f"{LINES}/{line['id']}/balance", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["line_id"] == line["id"] and body["buckets"] == []
    assert {"mainland", "hk"} <= set(body["zones"])
    assert all(z["remaining_bytes"] == 0 and z["bucket_count"] == 0 for z in body["zones"].values())


def test_line_id_must_be_a_uuid(client) -> None:
    headers = f.subscriber(client)
    problem = assert_problem(
        client.get(f"{LINES}/not-a-uuid", headers=headers), 422, "validation_error"
    )
    assert [e["field"] for e in problem["errors"]] == ["path.line_id"]
