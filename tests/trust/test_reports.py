"""Scam reports: sent by anyone with a CSRF form, a sniffed screenshot, throttled, grouped by value."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.web.helpers import ACCEPT_HTML, form_token
from tongka import throttle
from tongka.trust import service
from tongka.trust.models import ScamCampaign, ScamReport

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


def send(client, value: str, seen_in: str = "sms", files=None, **extra):  # type: ignore[no-untyped-def]
    token = form_token(client, "/official")
    return client.post(
        "/official/report",
        data={"csrf_token": token, "value": value, "seen_in": seen_in, **extra},
        files=files,
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )


def test_a_report_is_taken_and_thanked_for(client, sessions) -> None:
    r = send(client, "+852 9123 4567", "call", text="Said my SIM would be cut off unless I paid")
    assert (r.status_code, r.headers["location"]) == (303, "/official?reported=1#report")
    assert (
        "Thank you: your report is in."
        in client.get(r.headers["location"], headers=ACCEPT_HTML).text
    )
    with sessions() as s:
        report = s.scalars(select(ScamReport)).one()
        assert (report.seen_in, report.screenshot) == ("call", None)
        assert s.get(ScamCampaign, report.campaign_id).key == "phone:+85291234567"  # type: ignore[union-attr]


def test_a_report_without_the_csrf_token_is_refused(client) -> None:
    client.get("/official", headers=ACCEPT_HTML)
    r = client.post(
        "/official/report", data={"value": "91234567", "seen_in": "sms"}, headers=ACCEPT_HTML
    )
    assert r.status_code == 403


def test_the_same_value_written_three_ways_is_one_campaign(client, session) -> None:
    for typed, seen in (("9123 4567", "sms"), ("+852-9123-4567", "call"), ("0085291234567", "sms")):
        assert send(client, typed, seen).status_code == 303
    send(client, "https://tongka-hk.com/pay", "web")
    found = {c.key: c for c in service.campaigns(session)}
    phone = found["phone:+85291234567"]
    assert (phone.count, phone.seen_in) == (3, ["sms", "call"])
    assert phone.first_seen <= phone.last_seen
    assert found["web:tongka-hk.com"].count == 1


@pytest.mark.parametrize(("data", "kind"), [(PNG, "image/png"), (JPEG, "image/jpeg")])
def test_a_screenshot_is_kept_by_the_type_its_bytes_say(client, sessions, data, kind) -> None:
    # The browser says text/plain: the bytes decide.
    r = send(
        client, "tongka.hk.evil.com", "web", files={"screenshot": ("s.txt", data, "text/plain")}
    )
    assert r.status_code == 303
    with sessions() as s:
        report = s.scalars(select(ScamReport)).one()
        assert (report.screenshot, report.screenshot_type) == (data, kind)


def test_a_screenshot_that_is_not_a_picture_or_too_big_is_refused(client, sessions) -> None:
    r = send(
        client, "evil.com", "web", files={"screenshot": ("x.png", b"<svg></svg>", "image/png")}
    )
    assert r.status_code == 422 and "PNG or JPEG" in r.text
    big = PNG + b"\0" * service.SCREENSHOT_MAX_BYTES
    r = send(client, "evil.com", "web", files={"screenshot": ("x.png", big, "image/png")})
    assert r.status_code in (413, 422)
    with sessions() as s:
        assert s.scalar(select(func.count(ScamReport.id))) == 0


def test_a_form_error_keeps_what_was_typed(client) -> None:
    r = send(client, "a b c", "sms", text="what it said")
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text and "what it said" in r.text
    r = send(client, "91234567", "carrier-pigeon")
    assert r.status_code == 400


def test_reports_are_capped_per_address_a_day(client, sessions) -> None:
    for n in range(service.REPORTS_BY_ADDRESS.allowed):
        assert send(client, f"9123 45{n:02d}").status_code == 303
    r = send(client, "9123 4599")
    assert r.status_code == 429 and "Too many reports" in r.text and "Retry-After" in r.headers
    with sessions() as s:
        assert s.scalar(select(func.count(ScamReport.id))) == service.REPORTS_BY_ADDRESS.allowed


def test_reports_are_capped_per_value_a_day(client, other_client, monkeypatch) -> None:
    monkeypatch.setattr(
        service,
        "REPORTS_BY_VALUE",
        throttle.Limit("scam_report_value", 1, 86400, service.ValueReportedEnough),
    )
    assert send(client, "91234567").status_code == 303
    r = send(other_client, "+852 9123 4567")
    assert r.status_code == 429 and "reported many times today" in r.text
    assert send(other_client, "91234568").status_code == 303


def test_a_screenshot_near_the_cap_passes_the_body_limit(client, sessions) -> None:
    # The app takes 64 KiB bodies; this one path takes a screenshot of up to 2 MB on top.
    data = PNG + b"\0" * (service.SCREENSHOT_MAX_BYTES - len(PNG))
    r = send(client, "evil.com", "web", files={"screenshot": ("s.png", data, "image/png")})
    assert r.status_code == 303
    with sessions() as s:
        assert len(s.scalars(select(ScamReport.screenshot)).one() or b"") == len(data)
    # Elsewhere the limit stands.
    r = client.post(
        "/api/v1/accounts", content=b"x" * 70_000, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
