"""The console's stores and staff, and who may open the console at all: operator admins only."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select

from tests import factories as f
from tests.console.catalog_helpers import admin, audit_entries, post
from tests.test_routes import page_routes
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in
from tongka import demo as demo_data
from tongka.account import service as accounts
from tongka.db import transaction
from tongka.staff import audit
from tongka.staff import service as staff_service
from tongka.staff.models import StaffMember, StaffSession
from tongka.stores.models import Store


def _member(sessions, username: str) -> StaffMember:  # type: ignore[no-untyped-def]
    with transaction(sessions, read_only=True) as s:
        member = staff_service.by_username(s, username)
        assert member is not None
        s.expunge_all()
        return member


def _sessions_of(sessions, username: str) -> int:  # type: ignore[no-untyped-def]
    member = _member(sessions, username)
    with transaction(sessions, read_only=True) as s:
        return s.scalar(select(func.count()).where(StaffSession.staff_id == member.id)) or 0


def _store(sessions, code: str) -> Store:  # type: ignore[no-untyped-def]
    with transaction(sessions, read_only=True) as s:
        store = s.scalar(select(Store).where(Store.code == code))
        assert store is not None
        s.expunge_all()
        return store


# --- who may open the console ------------------------------------------------------------------


def _console_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [
        (method, path.replace("{action}", "pause"))
        for method, path, _endpoint in page_routes(app)
        if path.startswith("/console")
    ]


def _url(path: str) -> str:
    """Any id in the path a made-up one: the role is refused before anything is looked up."""
    return re.sub(r"\{[a-z_]+\}", lambda _m: str(uuid.uuid4()), path)


def test_agents_and_managers_are_refused_every_console_page(
    client, app, sessions, settings
) -> None:
    routes = _console_routes(app)
    assert len(routes) >= 20
    for role in ("agent", "manager"):
        f.staff(client, sessions, settings, role=role)
        token = form_token(client, "/staff/login")
        for method, path in routes:
            r = client.request(
                method,
                _url(path),
                data={"csrf_token": token} if method == "POST" else None,
                headers=ACCEPT_HTML,
                follow_redirects=False,
            )
            assert r.status_code == 403, (role, method, path, r.status_code)
            assert "Your role does not allow this." in r.text


def test_a_subscriber_or_nobody_is_sent_to_the_staff_log_in(client, app, sessions) -> None:
    routes = _console_routes(app)
    for who in ("nobody", "subscriber"):
        if who == "subscriber":
            signed_in(client)
        for method, path in routes:
            r = client.request(method, _url(path), headers=ACCEPT_HTML, follow_redirects=False)
            if method == "GET":
                assert r.status_code == 303, (who, path, r.status_code)
                assert r.headers["location"].startswith("/staff/login?next="), (who, path)
            else:  # without a CSRF token a form goes nowhere
                assert r.status_code in (303, 403), (who, method, path, r.status_code)


# --- stores ------------------------------------------------------------------------------------


def test_the_admin_imports_stores_all_or_nothing(client, sessions, settings) -> None:
    who = admin(client, sessions, settings)
    text = demo_data.STORES_CSV.read_text(encoding="utf-8")
    r = post(
        client, "/console/stores", {}, files={"file": ("stores.csv", text.encode(), "text/csv")}
    )
    assert r.status_code == 200, r.text
    assert "Added: 11" in r.text and "Rejected: 0" in r.text and "tongka Harbour City" in r.text
    [entry] = audit_entries(sessions, "store.import")
    assert entry.username == who.username and entry.after == {
        "added": 11,
        "updated": 0,
        "unchanged": 0,
    }
    # One wrong row: nothing written, the row and its reason shown.
    header, first, *rest = text.splitlines()
    changed = first.replace("tongka Harbour City", "tongka Harbour City 2")
    broken = rest[0].replace("daily 11:00-23:00", "sometimes")
    r = post(
        client,
        "/console/stores",
        {},
        files={
            "file": ("s.csv", "\n".join([header, changed, broken, *rest[1:]]).encode(), "text/csv")
        },
    )
    assert r.status_code == 400 and "Nothing was imported" in r.text
    assert '<td class="num">3</td>' in r.text
    assert _store(sessions, "harbour-city").names["en"] == "tongka Harbour City"
    assert len(audit_entries(sessions, "store.import")) == 1
    r = post(client, "/console/stores", {}, files={"file": ("s.bin", b"\xff\xfe", "x")})
    assert r.status_code == 400 and "Choose a CSV file (UTF-8 text)." in r.text


def test_the_admin_closes_and_reopens_a_store(client, sessions, settings) -> None:
    admin(client, sessions, settings)
    f.stores(sessions)
    store = _store(sessions, "lo-wu")
    r = post(client, f"/console/stores/{store.id}/active", {}, page="/console/stores")
    assert r.status_code == 303 and not _store(sessions, "lo-wu").active
    assert "lo-wu" not in client.get("/stores", headers=ACCEPT_HTML).text
    [entry] = audit_entries(sessions, "store.deactivate")
    assert entry.before == {"code": "lo-wu", "active": True}
    assert entry.after == {"code": "lo-wu", "active": False}
    r = post(client, f"/console/stores/{store.id}/active", {"active": "on"}, page="/console/stores")
    assert r.status_code == 303 and _store(sessions, "lo-wu").active
    assert len(audit_entries(sessions, "store.activate")) == 1
    # Twice the same: nothing more in the log.
    post(client, f"/console/stores/{store.id}/active", {"active": "on"}, page="/console/stores")
    assert len(audit_entries(sessions, "store.activate")) == 1


# --- staff -------------------------------------------------------------------------------------


def test_the_admin_adds_a_staff_member(client, sessions, settings) -> None:
    f.stores(sessions)
    who = admin(client, sessions, settings)
    r = client.get("/console/staff", headers=ACCEPT_HTML)
    assert r.status_code == 200 and who.username in r.text
    with transaction(sessions, read_only=True) as s:  # their log-in (for a token) is the last
        assert list(audit.last_logins(s)) == [_member(sessions, who.username).id]
    r = post(
        client,
        "/console/staff",
        {
            "username": "Mei.Chan",
            "display_name": "Chan Mei",
            "role": "agent",
            "store": "lo-wu",
            "password": "a long first password",
        },
        page="/console/staff",
    )
    assert r.status_code == 303, r.text
    member = _member(sessions, "mei.chan")
    assert r.headers["location"] == f"/console/staff/{member.id}?saved=added"
    assert (member.role, member.display_name, member.enrolled, member.active) == (
        "agent",
        "Chan Mei",
        False,
        True,
    )
    assert member.store_id == _store(sessions, "lo-wu").id
    [entry] = audit_entries(sessions, "staff.add")
    assert entry.after == {
        "username": "mei.chan",
        "role": "agent",
        "store": "lo-wu",
        "totp": False,
        "active": True,
    }
    assert "password" not in str(entry.after)
    page = client.get(r.headers["location"], headers=ACCEPT_HTML).text
    assert "Authenticator app not set up yet" in page
    # Their first log-in asks them to set up the app.
    other = client.__class__(client.app)  # type: ignore[attr-defined]
    r = other.post(
        "/staff/login",
        data={
            "csrf_token": form_token(other, "/staff/login"),
            "username": "mei.chan",
            "password": "a long first password",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/enrol")


def test_a_new_staff_member_is_refused_with_reasons(client, sessions, settings) -> None:
    f.stores(sessions)
    who = admin(client, sessions, settings)
    good = {
        "username": "kenwong",
        "display_name": "Ken",
        "role": "manager",
        "store": "lo-wu",
        "password": "a long first password",
    }
    for change, message in (
        ({"password": "short"}, "Use at least 10 characters."),
        ({"password": "kenwong123", "username": "kenwong123"}, "not your username"),
        ({"store": ""}, "An agent or a manager works at one store; an admin at none."),
        ({"store": "nowhere"}, "There is no store with the code nowhere."),
        ({"username": who.username}, "That username is taken."),
        ({"role": "boss"}, "This is not in the expected form."),
    ):
        r = post(client, "/console/staff", {**good, **change}, page="/console/staff")
        assert r.status_code == 400 and message in r.text, (change, r.text[-3000:])
    assert audit_entries(sessions, "staff.add") == []
    # An admin works at no store: the store chosen is left out.
    r = post(client, "/console/staff", {**good, "role": "admin"}, page="/console/staff")
    assert r.status_code == 303 and _member(sessions, "kenwong").store_id is None


def test_a_role_change_totp_reset_password_or_deactivation_ends_their_sessions(
    client, sessions, settings
) -> None:
    agent = f.staff(client, sessions, settings, role="agent")
    admin(client, sessions, settings)  # the browser is the admin's from here on
    member = _member(sessions, agent.username)
    page = f"/console/staff/{member.id}"

    def log_in_again() -> None:  # a new session of the agent's, as a log-in opens
        with transaction(sessions) as s:
            staff_service.open_session(s, staff_service.get(s, member.id), 3600, None)

    assert _sessions_of(sessions, agent.username) == 1
    r = post(client, f"{page}/role", {"role": "manager", "store": "harbour-city"}, page=page)
    assert (r.status_code, r.headers["location"]) == (303, f"{page}?saved=role")
    changed = _member(sessions, agent.username)
    assert changed.role == "manager" and changed.store_id == _store(sessions, "harbour-city").id
    assert _sessions_of(sessions, agent.username) == 0
    [entry] = audit_entries(sessions, "staff.role")
    assert entry.before is not None and entry.after is not None
    assert (entry.before["role"], entry.before["store"]) == ("agent", "lo-wu")
    assert (entry.after["role"], entry.after["store"]) == ("manager", "harbour-city")
    r = post(client, f"{page}/role", {"role": "agent", "store": ""}, page=page)
    assert r.status_code == 400 and "works at one store" in r.text

    log_in_again()
    r = post(client, f"{page}/password", {"password": "another long password"}, page=page)
    assert r.status_code == 303 and _sessions_of(sessions, agent.username) == 0
    assert audit_entries(sessions, "staff.password_reset")[0].after is None
    assert accounts.verify_password(
        _member(sessions, agent.username).password_hash, "another long password", None
    )
    r = post(client, f"{page}/password", {"password": "short"}, page=page)
    assert r.status_code == 400 and "Use at least 10 characters." in r.text

    log_in_again()
    r = post(client, f"{page}/totp", {}, page=page)
    assert r.status_code == 303
    reset = _member(sessions, agent.username)
    assert not reset.enrolled and reset.totp_sealed is None
    [entry] = audit_entries(sessions, "staff.totp_reset")
    assert entry.before is not None and entry.before["totp"] is True
    assert entry.after is not None and entry.after["totp"] is False

    enrolled = _member(sessions, agent.username)
    assert _sessions_of(sessions, agent.username) == 0 and enrolled.totp_pending is None
    with transaction(sessions) as s:  # they enrol again (tests play the phone)
        staff_service.enrol_directly(staff_service.get(s, member.id), "x" * 32)
    log_in_again()
    r = post(client, f"{page}/active", {}, page=page)
    assert r.status_code == 303 and not _member(sessions, agent.username).active
    assert _sessions_of(sessions, agent.username) == 0
    assert len(audit_entries(sessions, "staff.deactivate")) == 1
    r = post(client, f"{page}/active", {"active": "on"}, page=page)
    assert r.status_code == 303 and _member(sessions, agent.username).active
    assert len(audit_entries(sessions, "staff.activate")) == 1


def test_an_admin_cannot_deactivate_themselves(client, sessions, settings) -> None:
    who = admin(client, sessions, settings)
    me = _member(sessions, who.username)
    page = f"/console/staff/{me.id}"
    r = post(client, f"{page}/active", {}, page=page)
    assert r.status_code == 400 and "You cannot deactivate yourself" in r.text
    r = post(client, f"{page}/role", {"role": "agent", "store": ""}, page=page)
    assert r.status_code == 400
    assert _member(sessions, who.username).active and _sessions_of(sessions, who.username) == 1
    assert audit_entries(sessions, "staff.deactivate") == []
    assert client.get(f"/console/staff/{uuid.uuid4()}", headers=ACCEPT_HTML).status_code == 404
