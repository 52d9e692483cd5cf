"""Shifts: a till opened with a float, closed with the cash counted by denomination (expected and
difference in cents), and a manager's acknowledgement of a difference; who may do which."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from tests.counter import factories as cf
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka.counter import shifts
from tongka.counter.models import Shift
from tongka.staff.models import AuditEntry


def open_shift(client, who, float_amount="500") -> uuid.UUID:  # type: ignore[no-untyped-def]
    cf.as_staff(client, who)
    token = form_token(client, "/counter/shifts")
    r = client.post(
        "/counter/shifts/open",
        data={"csrf_token": token, "float_amount": float_amount},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return uuid.UUID(r.headers["location"].rsplit("/", 1)[1])


def close(client, who, shift_id, counts, note=""):  # type: ignore[no-untyped-def]
    cf.as_staff(client, who)
    token = form_token(client, "/counter/shifts")
    data = {"csrf_token": token, "note": note}
    data.update({f"count_{cents}": str(n) for cents, n in counts.items()})
    return client.post(
        f"/counter/shifts/{shift_id}/close", data=data, headers=ACCEPT_HTML, follow_redirects=False
    )


def acknowledge(client, who, shift_id, note="counted twice; a note is missing"):  # type: ignore[no-untyped-def]
    cf.as_staff(client, who)
    token = form_token(client, "/counter/shifts")
    return client.post(
        f"/counter/shifts/{shift_id}/acknowledge",
        data={"csrf_token": token, "note": note},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


def stored(sessions, shift_id) -> Shift:  # type: ignore[no-untyped-def]
    with sessions() as s:
        found = s.get_one(Shift, shift_id)
        s.expunge(found)
        return found


@pytest.mark.parametrize(
    ("typed", "cents"),
    [("500", 50000), ("500.00", 50000), ("500.5", 50050), ("HK$1,200.25", 120025), (" 0 ", 0)],
)
def test_a_float_is_read_in_dollars_and_kept_in_cents(typed: str, cents: int) -> None:
    assert shifts.parse_amount(typed) == cents


@pytest.mark.parametrize("typed", ["", "-5", "5.001", "five", "1e3", "100000.01"])
def test_a_float_that_is_not_an_amount_is_refused(typed: str) -> None:
    with pytest.raises(shifts.AmountInvalid):
        shifts.parse_amount(typed)


def test_denominations_are_counted_in_cents() -> None:
    counts = shifts.parse_counts({"count_100000": "1", "count_50": "3", "count_10": "", "x": "9"})
    assert counts[100000] == 1 and counts[50] == 3 and counts[10] == 0
    assert shifts.counted_total(counts) == 100150
    assert len(counts) == len(shifts.DENOMINATIONS) == 12
    for bad in ("-1", "1.5", "two"):
        with pytest.raises(shifts.CountInvalid):
            shifts.parse_counts({"count_100": bad})


def test_open_and_close_with_exact_expected_and_difference(
    client, sessions, operator, cast, line_id
) -> None:  # type: ignore[no-untyped-def]
    shift_id = open_shift(client, cast.agent, "500.00")
    # Cash: HK$100 tendered for 58.00, 42.00 back; a second paid exactly; a card sale: not cash.
    first = cf.sale(
        client,
        sessions,
        operator,
        line_id,
        cast.agent,
        shift_id=shift_id,
        tendered=10000,
        change=4200,
    )
    cf.sale(client, sessions, operator, line_id, cast.agent, shift_id=shift_id)
    cf.sale(
        client, sessions, operator, line_id, cast.agent, shift_id=shift_id, method="card_terminal"
    )
    # An unpaid cash sale is not in the till yet (its row has no paid_at).
    unpaid = cf.sale(client, sessions, operator, line_id, cast.agent, shift_id=shift_id)
    from tongka.counter.models import CounterSale
    from tongka.db import transaction

    with transaction(sessions) as s:
        s.get_one(CounterSale, unpaid["sale_id"]).paid_at = None
    # Half of the first sale refunded in cash.
    cf.refund(sessions, first["payment_id"], 2900)
    amount = first["amount"]
    assert amount == 5800
    expected = 50000 + 5800 + 5800 - 2900  # 587.00

    # Counted: 5 × HK$100, 1 × HK$50, 3 × HK$10, 6 × HK$1, 0.50 + 0.20 = 586.70: 30 cents short.
    r = close(
        client, cast.agent, shift_id, {10000: 5, 5000: 1, 1000: 3, 100: 6, 50: 1, 20: 1}, "busy"
    )
    assert r.status_code == 303, r.text
    shift = stored(sessions, shift_id)
    assert (shift.status, shift.counted_amount, shift.expected_amount, shift.difference) == (
        "closed",
        58670,
        expected,
        -30,
    )
    assert shift.counted_denominations == {
        "10000": 5,
        "5000": 1,
        "1000": 3,
        "100": 6,
        "50": 1,
        "20": 1,
    }
    assert shift.close_note == "busy"
    page = client.get(f"/counter/shifts/{shift_id}", headers=ACCEPT_HTML)
    assert "-HK$0.30" in page.text and "HK$587.00" in page.text

    # Closing again changes nothing.
    again = close(client, cast.agent, shift_id, {10000: 6})
    assert again.status_code == 409
    assert stored(sessions, shift_id).counted_amount == 58670

    with sessions() as s:
        actions = [
            (e.action, (e.before or {}).get("status"), (e.after or {}).get("status"))
            for e in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_id == str(shift_id))
                .order_by(AuditEntry.at)
            )
        ]
    assert actions == [("shift.open", None, "open"), ("shift.close", "open", "closed")]


def test_one_open_shift_per_agent(client, cast) -> None:  # type: ignore[no-untyped-def]
    open_shift(client, cast.agent)
    token = form_token(client, "/counter/shifts")
    r = client.post(
        "/counter/shifts/open",
        data={"csrf_token": token, "float_amount": "300"},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 409
    assert "already have an open shift" in r.text
    # Another agent of the same store opens their own.
    open_shift(client, cast.agent2)


def test_a_float_typo_is_shown_on_the_form(client, cast) -> None:  # type: ignore[no-untyped-def]
    cf.as_staff(client, cast.agent)
    token = form_token(client, "/counter/shifts")
    r = client.post(
        "/counter/shifts/open",
        data={"csrf_token": token, "float_amount": "5OO"},
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 422 and "such as 500 or 500.00" in r.text and 'value="5OO"' in r.text


def test_an_admin_has_no_till(client, cast) -> None:  # type: ignore[no-untyped-def]
    cf.as_staff(client, cast.admin)
    token = form_token(client, "/counter/shifts")
    r = client.post(
        "/counter/shifts/open",
        data={"csrf_token": token, "float_amount": "500"},
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 403


def test_who_closes_a_shift(client, sessions, cast) -> None:  # type: ignore[no-untyped-def]
    shift_id = open_shift(client, cast.agent)
    # Another store's agent or manager: no such shift. Another agent of the store: the same.
    assert close(client, cast.other_agent, shift_id, {10000: 5}).status_code == 404
    assert close(client, cast.other_manager, shift_id, {10000: 5}).status_code == 404
    assert close(client, cast.agent2, shift_id, {10000: 5}).status_code == 404
    assert stored(sessions, shift_id).status == "open"
    # The store's manager closes it (the agent went home).
    assert close(client, cast.manager, shift_id, {10000: 5}).status_code == 303
    shift = stored(sessions, shift_id)
    assert (shift.status, shift.difference) == ("closed", 0)


def test_a_difference_waits_for_a_manager_of_the_store(client, sessions, cast) -> None:  # type: ignore[no-untyped-def]
    shift_id = open_shift(client, cast.agent)
    assert close(client, cast.agent, shift_id, {10000: 4}).status_code == 303
    assert stored(sessions, shift_id).difference == -10000

    page = client.get(f"/counter/shifts/{shift_id}", headers=ACCEPT_HTML)
    assert "/acknowledge" not in page.text  # the agent has no such form
    assert acknowledge(client, cast.agent, shift_id).status_code == 403
    assert acknowledge(client, cast.other_manager, shift_id).status_code == 404
    assert stored(sessions, shift_id).status == "closed"
    blank = acknowledge(client, cast.manager, shift_id, note="")
    assert blank.status_code == 422

    cf.as_staff(client, cast.manager)
    assert "/acknowledge" in client.get(f"/counter/shifts/{shift_id}", headers=ACCEPT_HTML).text
    assert acknowledge(client, cast.manager, shift_id).status_code == 303
    shift = stored(sessions, shift_id)
    assert (
        shift.status == "acknowledged"
        and shift.acknowledge_note == "counted twice; a note is missing"
    )
    assert acknowledge(client, cast.manager, shift_id).status_code == 409
    with sessions() as s:
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.object_id == str(shift_id), AuditEntry.action == "shift.acknowledge"
            )
        ).one()
    assert entry.before["status"] == "closed" and entry.after["status"] == "acknowledged"


def test_a_balanced_shift_needs_no_acknowledgement(client, cast) -> None:  # type: ignore[no-untyped-def]
    shift_id = open_shift(client, cast.agent)
    assert close(client, cast.agent, shift_id, {50000: 1}).status_code == 303
    assert acknowledge(client, cast.admin, shift_id).status_code == 409


def test_who_sees_which_shifts(client, cast) -> None:  # type: ignore[no-untyped-def]
    mine = open_shift(client, cast.agent)
    theirs = open_shift(client, cast.agent2)
    elsewhere = open_shift(client, cast.other_agent)

    def listed(who) -> set[str]:  # type: ignore[no-untyped-def]
        cf.as_staff(client, who)
        page = client.get("/counter/shifts", headers=ACCEPT_HTML)
        assert page.status_code == 200
        return set(re.findall(r"/counter/shifts/([0-9a-f-]{36})", page.text))

    assert listed(cast.agent) == {str(mine)}
    assert listed(cast.manager) == {str(mine), str(theirs)}
    assert listed(cast.admin) >= {str(mine), str(theirs), str(elsewhere)}
    cf.as_staff(client, cast.admin)
    only = client.get("/counter/shifts?store=harbour-city", headers=ACCEPT_HTML).text
    assert str(elsewhere) in only and str(mine) not in only

    for who, shift, status in (
        (cast.other_agent, mine, 404),
        (cast.other_manager, mine, 404),
        (cast.agent2, mine, 404),
        (cast.manager, mine, 200),
        (cast.admin, elsewhere, 200),
    ):
        cf.as_staff(client, who)
        assert client.get(f"/counter/shifts/{shift}", headers=ACCEPT_HTML).status_code == status


def test_a_sale_at_the_counter_goes_into_the_till(client, sessions, agent) -> None:  # type: ignore[no-untyped-def]
    """The counter's own sale pages and the till together: opened here, sold there, closed here."""
    from tests import factories as f
    from tests.counter.helpers import confirm, demo_line, hidden

    shift_id = open_shift(client, agent, "200")
    line = demo_line(sessions)
    page = confirm(client, line.id, f.pack_id(client, "hk-5gb-30d"), "HKD", "cash")
    r = client.post(
        f"/counter/lines/{line.id}/sale/pay",
        data={**hidden(page.text), "tendered": "100"},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    # 200 + 100 tendered − 42 change = 258: counted exactly.
    assert close(client, agent, shift_id, {10000: 2, 5000: 1, 500: 1, 100: 3}).status_code == 303
    shift = stored(sessions, shift_id)
    assert (shift.expected_amount, shift.counted_amount, shift.difference) == (25800, 25800, 0)
