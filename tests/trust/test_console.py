"""The console's official channels and scam reports: operator admins only, every change audited; the CLI."""

from __future__ import annotations

from sqlalchemy import select

from tests import factories as f
from tests.console.helpers import post
from tests.trust.test_reports import PNG, send
from tests.web.helpers import ACCEPT_HTML
from tongka.staff.models import AuditEntry
from tongka.trust import service
from tongka.trust.models import OfficialChannel, ScamCampaign

PAGE = "/console/official"
REPORTS = "/console/scam-reports"


def test_an_agent_and_a_manager_are_refused(client, sessions, settings) -> None:
    f.staff(client, sessions, settings, role="agent")
    for path in (PAGE, REPORTS):
        assert client.get(path, headers=ACCEPT_HTML).status_code == 403
    f.staff(client, sessions, settings, role="manager")
    assert client.get(PAGE, headers=ACCEPT_HTML).status_code == 403


def test_a_visitor_is_sent_to_the_staff_log_in(client) -> None:
    r = client.get(REPORTS, headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login?next=")


def test_an_admin_adds_a_channel_and_the_check_knows_it(client, sessions, admin) -> None:
    r = post(
        client,
        PAGE,
        PAGE,
        {
            "kind": "phone",
            "value": "3000 1234",
            "label_en": "tongka's customer service number",
            "label_zh_hans": "通卡客服热线",
            "label_zh_hant": "通卡客戶服務熱線",
        },
    )
    assert (r.status_code, r.headers["location"]) == (303, f"{PAGE}?done=+85230001234")
    assert 'data-value="+85230001234"' in client.get(PAGE, headers=ACCEPT_HTML).text
    assert client.get("/api/v1/official/check", params={"value": "30001234"}).json()["official"]
    with sessions() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "official.add")).one()
        assert entry.username == admin.username and entry.after["value"] == "+85230001234"  # type: ignore[index]
    # The same again is refused, in words.
    r = post(client, PAGE, PAGE, {"kind": "phone", "value": "+85230001234", "label_en": "x"})
    assert r.status_code == 422 and "already on the list" in r.text


def test_an_admin_removes_a_channel(client, sessions, admin) -> None:
    post(client, PAGE, PAGE, {"kind": "web", "value": "tongka.hk", "label_en": "tongka's web site"})
    with sessions() as s:
        channel = s.scalars(select(OfficialChannel)).one()
    r = post(client, PAGE, f"{PAGE}/{channel.id}/remove", {})
    assert r.status_code == 303
    assert not client.get("/api/v1/official/check", params={"value": "tongka.hk"}).json()[
        "official"
    ]
    with sessions() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "official.remove")).one()
        assert (entry.before["active"], entry.after["active"]) == (True, False)  # type: ignore[index]


def test_a_form_error_is_shown_in_the_form(client, admin) -> None:
    r = post(client, PAGE, PAGE, {"kind": "phone", "value": "hello", "label_en": "x"})
    assert r.status_code == 422 and "Enter a phone number" in r.text


def test_reports_are_grouped_and_marked_in_one_click(client, other_client, sessions, admin) -> None:
    for typed in ("9123 4567", "+852 9123 4567"):
        send(other_client, typed, "sms", files={"screenshot": ("s.png", PNG, "image/png")})
    r = client.get(REPORTS, headers=ACCEPT_HTML)
    assert r.status_code == 200 and 'data-key="phone:+85291234567"' in r.text
    assert '<td class="num" data-testid="count">2</td>' in r.text
    with sessions() as s:
        campaign = s.scalars(select(ScamCampaign)).one()
    r = post(
        client,
        REPORTS,
        f"{REPORTS}/{campaign.id}",
        {"status": "reported_to_police", "note": "HKPF ref 123; blocked at the SMSC"},
    )
    assert (r.status_code, r.headers["location"]) == (303, REPORTS)
    assert (
        "HKPF ref 123"
        in client.get(f"{REPORTS}?status=reported_to_police", headers=ACCEPT_HTML).text
    )
    assert 'data-key="phone' not in client.get(f"{REPORTS}?status=new", headers=ACCEPT_HTML).text
    with sessions() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "scam_report.review")).one()
        assert (entry.before, entry.after["status"]) == (  # type: ignore[index]
            {"status": "new", "note": ""},
            "reported_to_police",
        )
    # One value's reports, and a screenshot as the picture it is.
    page = client.get(f"{REPORTS}/{campaign.id}", headers=ACCEPT_HTML)
    assert page.status_code == 200 and page.text.count("/console/scam-reports/screenshots/") == 2
    with sessions() as s:
        report = service.reports(s, campaign.id)[0]
    shot = client.get(f"{REPORTS}/screenshots/{report.id}")
    assert shot.status_code == 200 and shot.content == PNG
    assert shot.headers["content-type"] == "image/png"
    assert shot.headers["x-content-type-options"] == "nosniff"


def test_the_screenshot_is_for_admins_only(client, other_client, sessions, settings) -> None:
    send(other_client, "91234567", "sms", files={"screenshot": ("s.png", PNG, "image/png")})
    f.staff(client, sessions, settings, role="agent")
    with sessions() as s:
        campaign = s.scalars(select(ScamCampaign)).one()
        report = service.reports(s, campaign.id)[0]
    assert client.get(f"{REPORTS}/screenshots/{report.id}").status_code == 403


def test_the_cli_adds_lists_and_removes(cli, sessions) -> None:
    r = cli(
        "official", "add", "email", "@Tongka.HK", "--label", "tongka's email sender",
        "--label-zh-hans", "通卡邮件发件人", "--label-zh-hant", "通卡電郵寄件人",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "official: email @tongka.hk" in r.output
    r = cli(
        "official", "add", "social", "@tongkahk", "--label", "Instagram", "--platform", "instagram"
    )
    assert r.exit_code == 0, r.output
    listed = cli("official", "list").output
    assert "email" in listed and "@tongka.hk" in listed and "social/instagram" in listed
    assert cli("official", "remove", "email", "@tongka.hk").exit_code == 0
    assert "removed" in cli("official", "list").output
    r = cli("official", "remove", "email", "@tongka.hk")
    assert r.exit_code == 2 and "No such official channel" in r.output
    with sessions() as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.username == "cli")).all()
        assert sorted(actions) == ["official.add", "official.add", "official.remove"]
