"""Who may open each of the till's routes: agent, manager, admin, another store's staff, a
subscriber (their session is no staff session: to /staff/login) and nobody."""

from __future__ import annotations

import html
import re
import uuid

from tests.counter import factories as cf
from tests.counter.test_shifts import close, open_shift
from tests.e2e.site import english_left
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in

# role -> expected status, for (method, path); {shift} is the lo-wu agent's closed, short shift.
MATRIX = {
    ("GET", "/counter/shifts"): dict(
        agent=200, manager=200, admin=200, other_agent=200, other_manager=200
    ),
    ("POST", "/counter/shifts/open"): dict(
        agent=303, manager=303, admin=403, other_agent=303, other_manager=303
    ),
    ("GET", "/counter/shifts/{shift}"): dict(
        agent=200, manager=200, admin=200, other_agent=404, other_manager=404
    ),
    ("POST", "/counter/shifts/{shift}/close"): dict(
        agent=409, manager=409, admin=409, other_agent=404, other_manager=404
    ),
    ("POST", "/counter/shifts/{shift}/acknowledge"): dict(
        agent=403, manager=303, admin=409, other_agent=403, other_manager=404
    ),
    ("GET", "/counter/reports?store=lo-wu"): dict(
        agent=403, manager=200, admin=200, other_agent=403, other_manager=403
    ),
    ("GET", "/counter/reports.csv?store=lo-wu"): dict(
        agent=403, manager=200, admin=200, other_agent=403, other_manager=403
    ),
    ("GET", "/counter/commission/rates"): dict(
        agent=403, manager=403, admin=200, other_agent=403, other_manager=403
    ),
    ("POST", "/counter/commission/rates"): dict(
        agent=403, manager=403, admin=303, other_agent=403, other_manager=403
    ),
    ("GET", "/counter/commission?store=lo-wu"): dict(
        agent=200, manager=200, admin=200, other_agent=403, other_manager=403
    ),
    ("GET", "/counter/commission.csv?store=lo-wu"): dict(
        agent=200, manager=200, admin=200, other_agent=403, other_manager=403
    ),
}
ORDER = (
    "other_agent",
    "other_manager",
    "agent",
    "manager",
    "admin",
)  # the manager acknowledges first


def test_every_route_by_role(client, cast) -> None:  # type: ignore[no-untyped-def]
    shift_id = open_shift(client, cast.agent)
    assert close(client, cast.agent, shift_id, {10000: 1}).status_code == 303
    form = {
        "/counter/commission/rates": {"store": "lo-wu", "rate": "1", "valid_from": "2026-01-01"},
        "/counter/shifts/open": {"float_amount": "100"},
        "/counter/shifts/{shift}/acknowledge": {"note": "checked"},
    }
    for (method, path), expected in MATRIX.items():
        for role in ORDER:
            who = getattr(cast, role)
            cf.as_staff(client, who)
            url = path.replace("{shift}", str(shift_id))
            if method == "GET":
                r = client.get(url, headers=ACCEPT_HTML, follow_redirects=False)
            else:
                token = form_token(client, "/counter/commission")
                r = client.post(
                    url,
                    data={"csrf_token": token, **form.get(path, {})},
                    headers=ACCEPT_HTML,
                    follow_redirects=False,
                )
            assert r.status_code == expected[role], (method, path, role, r.status_code)


def test_a_subscriber_or_nobody_is_sent_to_the_staff_log_in(client, demo) -> None:  # type: ignore[no-untyped-def]
    signed_in(client)
    token = form_token(client, "/account")
    shift = str(uuid.uuid4())
    for cookie in (True, False):
        if not cookie:
            client.cookies.delete("tongka_session")
        for method, path in MATRIX:
            url = path.replace("{shift}", shift)
            r = client.request(
                method,
                url,
                data={"csrf_token": token} if method == "POST" else None,
                headers=ACCEPT_HTML,
                follow_redirects=False,
            )
            assert r.status_code == 303, (method, path, r.status_code)
            assert r.headers["location"].startswith("/staff/login?next="), (method, path)


def test_every_till_page_speaks_chinese(client, sessions, operator, cast, line_id) -> None:  # type: ignore[no-untyped-def]
    open_id = open_shift(client, cast.agent2)
    short_id = open_shift(client, cast.agent)
    cf.sale(client, sessions, operator, line_id, cast.agent, shift_id=short_id)
    assert close(client, cast.agent, short_id, {10000: 1}).status_code == 303
    cf.as_staff(client, cast.admin)
    token = form_token(client, "/counter/commission/rates")
    client.post(
        "/counter/commission/rates",
        data={"csrf_token": token, "store": "lo-wu", "rate": "2", "valid_from": "2026-01-01"},
    )
    pages = (
        (cast.agent2, "/counter/shifts"),
        (cast.agent2, f"/counter/shifts/{open_id}"),  # the close form
        (cast.agent, "/counter/commission"),
        (cast.manager, f"/counter/shifts/{short_id}"),  # the acknowledgement form
        (cast.manager, "/counter/reports"),
        (cast.admin, "/counter/shifts"),
        (cast.admin, "/counter/reports"),  # the store picker
        (cast.admin, "/counter/commission/rates"),
        (cast.admin, "/counter/commission"),
    )
    for language in ("zh-Hans", "zh-Hant"):
        for who, path in pages:
            cf.as_staff(client, who)
            r = client.get(f"{path}?lang={language}", headers=ACCEPT_HTML)
            assert r.status_code == 200, (path, r.status_code)
            main = r.text.split("<main", 1)[1].split("</main>", 1)[0]
            # Staff's names in the pickers are names, not English left untranslated.
            main = re.sub(r"<[^>]+>", " ", re.sub(r"<option[^>]*>[^<]*</option>", "", main))
            assert english_left(html.unescape(main), language) == [], (language, path)
