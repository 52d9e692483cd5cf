"""The console's exchange rates: in force and history; a new rate set with validation, audited."""

from __future__ import annotations

from sqlalchemy import select

from tests.console.helpers import post
from tests.web.helpers import ACCEPT_HTML
from tongka.fx import service as fx
from tongka.staff.models import AuditEntry

PAGE = "/console/rates"


def test_a_rate_is_set_shown_in_force_and_in_the_history(client, sessions, admin) -> None:
    r = client.get(PAGE, headers=ACCEPT_HTML)
    assert r.status_code == 200 and "No rate is set" in r.text
    assert (
        post(client, PAGE, PAGE, {"base": "HKD", "quote": "CNY", "rate": "0.9234"}).status_code
        == 303
    )
    r = post(client, PAGE, PAGE, {"base": "HKD", "quote": "CNY", "rate": " 0.92 "})
    assert (r.status_code, r.headers["location"]) == (303, f"{PAGE}?done=HKD-CNY")
    with sessions() as s:
        rate = fx.current_rate(s, "HKD", "CNY")
        assert rate is not None and (rate.rate_micros, rate.set_by) == (
            920000,
            f"staff:{admin.username}",
        )
        first, second = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "fx.rate")
            .order_by(AuditEntry.at, AuditEntry.id)
        ).all()
    assert first.before is None and second.before == {"rate": "0.9234"}
    assert second.after is not None and second.after["rate"] == "0.92"
    page = client.get(PAGE, headers=ACCEPT_HTML).text
    assert "1 HKD = 0.920000 CNY" in page and "1 HKD = 0.923400 CNY" in page  # in force, and before


def test_a_wrong_rate_is_refused(client, sessions, admin) -> None:
    for form, said in (
        ({"base": "HKD", "quote": "CNY", "rate": "0"}, "Enter a positive rate"),
        ({"base": "HKD", "quote": "CNY", "rate": "-1"}, "Enter a positive rate"),
        ({"base": "HKD", "quote": "CNY", "rate": "0.1234567"}, "Enter a positive rate"),
        ({"base": "HKD", "quote": "CNY", "rate": "abc"}, "Enter a positive rate"),
        ({"base": "HKD", "quote": "HKD", "rate": "1"}, "Choose two different currencies."),
        ({"base": "USD", "quote": "CNY", "rate": "7"}, "Choose one of the options."),
    ):
        r = post(client, PAGE, PAGE, form)
        assert r.status_code == 400 and said in r.text, form
    with sessions() as s:
        assert fx.rates(s) == []
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "fx.rate")).all() == []
