"""Staff log-in (password and TOTP), enrolment, sessions that end when idle, and who reaches what."""

from __future__ import annotations

import re

import pyotp
from sqlalchemy import select, text

from tests import factories as f
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka.staff import service as staff
from tongka.staff.models import AuditEntry, StaffMember

TOKEN = "/api/v1/staff/token"


def add_member(cli, username: str, role: str = "agent", store: str | None = "lo-wu"):  # type: ignore[no-untyped-def]
    args = ["staff", "add", username, "--role", role, "--password", f.PASSWORD]
    if store:
        args += ["--store", store]
    return cli(*args)


def web_login(client, username: str, code: str = "", next_: str = "/staff"):  # type: ignore[no-untyped-def]
    token = form_token(client, "/staff/login")
    return client.post(
        "/staff/login",
        data={
            "csrf_token": token,
            "username": username,
            "password": f.PASSWORD,
            "code": code,
            "next": next_,
        },
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


def test_a_new_member_sets_up_totp_at_the_first_log_in_then_needs_a_code(
    client, sessions, settings, cli
) -> None:
    f.stores(sessions)
    assert add_member(cli, "wong").exit_code == 0
    # Not enrolled: the API gives no token, whatever the code.
    r = client.post(TOKEN, json={"username": "wong", "password": f.PASSWORD, "code": "123456"})
    assert (r.status_code, r.json()["code"]) == (403, "totp_not_enrolled")

    r = web_login(client, "wong")
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/enrol")
    assert "tongka_staff" not in client.cookies  # no session before the app is set up
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert page.status_code == 200 and "<svg" in page.text
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page.text).group(1)  # type: ignore[union-attr]
    token = form_token(client, r.headers["location"])
    wrong = client.post(
        "/staff/enrol", data={"csrf_token": token, "code": "000000"}, headers=ACCEPT_HTML
    )
    assert wrong.status_code == 400 and "That code is not right" in wrong.text
    ok = client.post(
        "/staff/enrol",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).now()},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/counter"
    assert "tongka_staff" in client.cookies
    # The secret is kept sealed: the database alone makes no codes.
    with sessions() as s:
        member = s.scalars(select(StaffMember).where(StaffMember.username == "wong")).one()
        assert member.totp_sealed and secret not in member.totp_sealed
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.staff_id == member.id)).all()
    assert "staff.enrol" in actions

    # From now on a password alone is not enough, on the web or the API.
    client.cookies.clear()
    r = web_login(client, "wong")
    assert r.status_code == 401 and "tongka_staff" not in client.cookies
    r = client.post(TOKEN, json={"username": "wong", "password": f.PASSWORD, "code": "000000"})
    assert (r.status_code, r.json()["code"]) == (401, "staff_login_failed")


def test_a_code_works_once(client, sessions, settings, frozen_clock) -> None:
    member = f.staff(client, sessions, settings, role="agent")  # used one code already
    again = client.post(
        TOKEN,
        json={
            "username": member.username,
            "password": f.PASSWORD,
            "code": f.staff_code(member.secret),
        },
    )
    assert (again.status_code, again.json()["code"]) == (401, "staff_login_failed")
    frozen_clock.advance(30)
    later = client.post(
        TOKEN,
        json={
            "username": member.username,
            "password": f.PASSWORD,
            "code": f.staff_code(member.secret),
        },
    )
    assert later.status_code == 200
    me = client.get(
        "/api/v1/staff/me", headers={"Authorization": f"Bearer {later.json()['access_token']}"}
    )
    assert me.json() == {
        "username": member.username,
        "display_name": member.username,
        "role": "agent",
        "store_code": "lo-wu",
    }


def test_failed_log_ins_are_throttled(client, sessions, settings) -> None:
    member = f.staff(client, sessions, settings, role="manager")
    for _ in range(5):
        r = client.post(
            TOKEN,
            json={"username": member.username, "password": "wrong password", "code": "123456"},
        )
        assert r.status_code in (401, 429)
    r = client.post(
        TOKEN,
        json={
            "username": member.username,
            "password": f.PASSWORD,
            "code": f.staff_code(member.secret),
        },
    )
    assert (r.status_code, r.json()["code"]) == (429, "login_throttled")


def test_a_session_ends_when_idle_and_at_its_end(client, sessions, settings, frozen_clock) -> None:
    member = f.staff(client, sessions, settings, role="admin")
    me = "/api/v1/staff/me"
    idle = settings.staff_session_idle_seconds
    for _ in range(4):  # used every few minutes: kept alive past the idle limit
        frozen_clock.advance(idle - 60)
        assert client.get(me, headers=member.headers).status_code == 200
    frozen_clock.advance(idle + 1)
    r = client.get(me, headers=member.headers)
    assert (r.status_code, r.json()["code"]) == (401, "staff_session_invalid")
    # The web page sends an idle member back to the staff log-in.
    page = client.get("/console", headers=ACCEPT_HTML, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/staff/login?next=%2Fconsole"

    fresh = f.staff(client, sessions, settings, role="admin")
    end = settings.staff_session_ttl_seconds
    steps = end // (idle - 60)
    for _ in range(steps):
        frozen_clock.advance(idle - 60)
        client.get(me, headers=fresh.headers)
    frozen_clock.advance(end - steps * (idle - 60) + 1)
    assert client.get(me, headers=fresh.headers).status_code == 401


def test_subscribers_reach_no_staff_route_and_staff_only_their_role(
    client, sessions, settings
) -> None:
    subscriber = f.subscriber(client)
    token = subscriber["Authorization"].removeprefix("Bearer ")
    client.cookies.set("tongka_session", token)
    for path in ("/staff", "/console"):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/staff/login?next=")
    # A subscriber's token as the staff cookie or the staff API's bearer token is no staff session.
    client.cookies.set("tongka_staff", token)
    r = client.get("/console", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/api/v1/staff/me", headers=subscriber)
    assert (r.status_code, r.json()["code"]) == (401, "staff_session_invalid")

    f.staff(client, sessions, settings, role="agent")  # this browser is now an agent's
    r = client.get("/console", headers=ACCEPT_HTML)
    assert r.status_code == 403 and "Your role does not allow this." in r.text
    admin = f.staff(client, sessions, settings, role="admin")
    assert client.get("/console", headers=ACCEPT_HTML).status_code == 200
    assert client.get("/api/v1/staff/me", headers=admin.headers).json()["role"] == "admin"


def test_log_out_and_deactivation_end_sessions(client, sessions, settings, cli) -> None:
    agent = f.staff(client, sessions, settings, role="agent")
    assert client.post("/api/v1/staff/logout", headers=agent.headers).status_code == 204
    assert client.get("/api/v1/staff/me", headers=agent.headers).status_code == 401

    other = f.staff(client, sessions, settings, role="agent")
    assert cli("staff", "deactivate", other.username).exit_code == 0
    assert client.get("/api/v1/staff/me", headers=other.headers).status_code == 401
    r = client.post(
        TOKEN,
        json={
            "username": other.username,
            "password": f.PASSWORD,
            "code": f.staff_code(other.secret),
        },
    )
    assert r.status_code == 401


def test_the_cli_refuses_bad_members_and_shows_codes_only_in_dev(
    client, sessions, settings, cli, monkeypatch
) -> None:
    f.stores(sessions)
    assert add_member(cli, "nostore", role="agent", store=None).exit_code == 2
    assert add_member(cli, "adminstore", role="admin", store="lo-wu").exit_code == 2
    result = add_member(cli, "ghost", store="no-such-store")
    assert result.exit_code == 2 and "no-such-store" in result.output
    assert add_member(cli, "ops", role="admin", store=None).exit_code == 0
    assert add_member(cli, "ops", role="admin", store=None).exit_code == 2  # taken
    member = f.staff(client, sessions, settings, role="agent")
    shown = cli("staff", "code", member.username)
    assert shown.exit_code == 0 and shown.output.strip() == f.staff_code(member.secret)
    monkeypatch.setenv("TONGKA_ENV", "production")
    from tongka import config

    config.get_settings.cache_clear()
    assert cli("staff", "code", member.username).exit_code == 2


def test_the_audit_log_is_append_only_in_the_code(sessions) -> None:
    """Nothing in tongka updates or deletes an audit entry."""
    from pathlib import Path

    import tongka

    root = Path(tongka.__file__).parent
    for path in root.rglob("*.py"):
        source = path.read_text()
        assert not re.search(r"(update|delete)\(AuditEntry", source), path
    with sessions() as s:
        assert s.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0


def test_unsealing_needs_the_secret_key() -> None:
    sealed = staff.seal("key one", "JBSWY3DPEHPK3PXP")
    assert staff.unseal("key one", sealed) == "JBSWY3DPEHPK3PXP"
    import pytest
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        staff.unseal("key two", sealed)
