"""Operating offers: the admin API and the CLI, who may use them, every redemption on record, the report."""

from __future__ import annotations

import pytest

from tests import factories as f
from tests.factories import new_subscriber, order
from tests.promotion.factories import discounts, quote
from tongka.money import GB

pytestmark = pytest.mark.usefixtures("generic_sandbox")

MJ = {
    "code": "autumn-mj",
    "names": {"en": "Spend HK$50, save HK$5", "zh-Hans": "满50减5", "zh-Hant": "滿50減5"},
    "kind": "spend_threshold",
    "tiers": [{"currency": "HKD", "min": 5000, "off": 500}],
    "channels": ["app"],
    "starts_at": "2020-01-01T00:00:00",
    "time_zone": "Asia/Shanghai",
    "max_redemptions": 100,
    "max_discount": {"HKD": 100000},
}


def test_only_operators_run_offers(client, sessions, settings, who, operator) -> None:
    """A subscriber's token is no staff token (401); a store agent's is, but not an admin's (403)."""
    agent = f.staff(client, sessions, settings, role="agent").headers
    offer = client.post("/api/v1/admin/offers", json=MJ, headers=operator).json()
    for headers, refusal in (
        (who.headers, (401, "staff_session_invalid")),
        (agent, (403, "staff_role_refused")),
    ):
        r = client.post("/api/v1/admin/offers", json=MJ, headers=headers)
        assert (r.status_code, r.json()["code"]) == refusal
        status = refusal[0]
        assert client.get("/api/v1/admin/offers", headers=headers).status_code == status
        assert client.get("/api/v1/admin/offers/report", headers=headers).status_code == status
        for path in ("", "/redemptions"):
            assert (
                client.get(f"/api/v1/admin/offers/{offer['id']}{path}", headers=headers).status_code
                == status
            )
        for action in ("pause", "resume", "end"):
            assert (
                client.post(
                    f"/api/v1/admin/offers/{offer['id']}/{action}", headers=headers
                ).status_code
                == status
            )
        r = client.post(
            f"/api/v1/admin/offers/{offer['id']}/codes", json={"count": 1}, headers=headers
        )
        assert r.status_code == status


def test_create_list_and_see_an_offer(client, who, operator) -> None:
    r = client.post("/api/v1/admin/offers", json=MJ, headers=operator)
    assert r.status_code == 201, r.text
    offer = r.json()
    assert (
        offer["status"] == "active"
        and offer["redeemed"] == 0
        and offer["created_by"].startswith("operator:")
    )
    assert (
        offer["starts_at"] == "2020-01-01T00:00:00+08:00" and offer["time_zone"] == "Asia/Shanghai"
    )
    assert {b["currency"]: b["max_discount"] for b in offer["budgets"]} == {
        "CNY": None,
        "HKD": 100000,
    }
    listed = client.get("/api/v1/admin/offers", headers=operator).json()
    assert [o["code"] for o in listed if o["status"] == "active"] == [
        "autumn-mj"
    ]  # the demo's are ended here
    assert listed[-1] == offer
    again = client.post("/api/v1/admin/offers", json=MJ, headers=operator)
    assert (again.status_code, again.json()["code"]) == (409, "offer_code_taken")
    # The public sees it on its channel only, without its budget.
    public = client.get("/api/v1/offers?channel=app", headers={"Accept-Language": "zh-CN"}).json()
    assert [(o["code"], o["name"]) for o in public] == [
        ("autumn-mj", "满50减5")
    ] and "redeemed" not in public[0]
    assert client.get("/api/v1/offers?channel=web").json() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "bonus_data"}, "bonus"),
        ({"kind": "coupon", "tiers": None}, "percent_off or amount_off"),
        (
            {"kind": "first_topup", "tiers": None, "percent_off": 10, "amount_off": {"HKD": 1}},
            "percent_off or amount_off",
        ),
        ({"tiers": None}, "tiers"),
        ({"ends_at": "2019-01-01T00:00:00"}, "ends_at"),
        ({"time_zone": "Europe/London"}, "time_zone"),
        ({"code": "Bad Code"}, "code"),
    ],
)
def test_bad_offers_are_refused_naming_the_problem(
    client, operator, catalog, change, field
) -> None:
    r = client.post("/api/v1/admin/offers", json={**MJ, **change}, headers=operator)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    assert field in r.text


def test_every_redemption_is_on_record_and_in_the_report(
    client, sessions, catalog, operator
) -> None:
    mj = client.post("/api/v1/admin/offers", json=MJ, headers=operator).json()
    gift = client.post(
        "/api/v1/admin/offers",
        headers=operator,
        json={
            "code": "gift",
            "names": {"en": "1 GB free"},
            "kind": "bonus_data",
            "bonus_bytes": GB,
            "bonus_zone": "hk",
            "bonus_validity_days": 30,
        },
    ).json()
    a, b = new_subscriber(client, sessions), new_subscriber(client, sessions)
    paid = order(client, a.headers, a.line["id"])
    f.pay(client, paid["payment"]["id"])
    cancelled = order(client, b.headers, b.line["id"])
    client.post(f"/api/v1/orders/{cancelled['id']}/cancel", headers=b.headers)
    quote(client, b.headers, b.line["id"], code="both-5gb-30d")
    assert discounts(paid) == {"autumn-mj": 500, "gift": 0}

    rows = client.get(f"/api/v1/admin/offers/{mj['id']}/redemptions", headers=operator).json()
    assert [
        (
            r["username"],
            r["order_id"],
            r["discount"],
            r["currency"],
            r["status"],
            r["release_reason"],
        )
        for r in rows
    ] == [
        (b.username, None, 500, "HKD", "held", None),
        (b.username, cancelled["id"], 500, "HKD", "released", "cancelled"),
        (a.username, paid["id"], 500, "HKD", "confirmed", None),
    ]
    report = {
        r["code"]: r for r in client.get("/api/v1/admin/offers/report", headers=operator).json()
    }
    assert report["autumn-mj"] == {
        "code": "autumn-mj",
        "kind": "spend_threshold",
        "status": "active",
        "confirmed": 1,
        "held": 1,
        "released": 1,
        "discount_given": {"HKD": 500},
        "discount_held": {"HKD": 500},
        "bonus_bytes_given": 0,
        "max_redemptions": 100,
        "redemptions_left": 98,
    }
    assert (report["gift"]["bonus_bytes_given"], report["gift"]["confirmed"]) == (GB, 1)
    assert (
        client.get(f"/api/v1/admin/offers/{gift['id']}", headers=operator).json()["redeemed"] == 2
    )  # + b's quote


def test_coupon_batches_through_the_api(client, sessions, who, operator) -> None:
    offer = client.post(
        "/api/v1/admin/offers",
        headers=operator,
        json={
            "code": "vip",
            "names": {"en": "VIP HK$20 off"},
            "kind": "coupon",
            "amount_off": {"HKD": 2000},
        },
    ).json()
    r = client.post(
        f"/api/v1/admin/offers/{offer['id']}/codes",
        json={"count": 3, "batch": "vip-mall"},
        headers=operator,
    )
    assert r.status_code == 201
    body = r.json()
    assert body["batch"] == "vip-mall" and len(body["codes"]) == 3
    assert discounts(quote(client, who.headers, who.line["id"], coupon=body["codes"][1])) == {
        "vip": 2000
    }
    rows = client.get(f"/api/v1/admin/offers/{offer['id']}/redemptions", headers=operator).json()
    assert rows[0]["coupon_hint"] == body["codes"][1][-4:]
    mj = client.post("/api/v1/admin/offers", json=MJ, headers=operator).json()
    r = client.post(f"/api/v1/admin/offers/{mj['id']}/codes", json={"count": 1}, headers=operator)
    assert (r.status_code, r.json()["code"]) == (409, "offer_not_coupon")


def test_the_cli_runs_offers(cli, client, sessions, who) -> None:
    result = cli(
        "offers",
        "create",
        "cli-first",
        "--kind",
        "first_topup",
        "--name",
        "First top-up 20 % off",
        "--name-zh-hans",
        "首充八折",
        "--percent",
        "20",
        "--channel",
        "app",
        "--max-redemptions",
        "50",
        "--starts",
        "2020-01-01 00:00",
        "--time-zone",
        "Asia/Hong_Kong",
    )
    assert result.exit_code == 0, result.output
    result = cli(
        "offers",
        "create",
        "cli-coupon",
        "--kind",
        "coupon",
        "--name",
        "HK$5 off",
        "--amount",
        "HKD:500",
        "--amount",
        "CNY:450",
        "--stackable",
    )
    assert result.exit_code == 0, result.output
    result = cli(
        "offers",
        "create",
        "cli-mj",
        "--kind",
        "spend_threshold",
        "--name",
        "满减",
        "--tier",
        "HKD:5000:300",
        "--tier",
        "HKD:9000:900",
        "--max-discount",
        "HKD:5000",
    )
    assert result.exit_code == 0, result.output
    assert cli("offers", "create", "cli-bad", "--kind", "bonus_data", "--name", "x").exit_code == 2
    codes = cli("offers", "codes", "cli-coupon", "--count", "2").output.split()
    assert len(codes) == 2
    assert cli("offers", "codes", "cli-first").exit_code == 2

    q = quote(client, who.headers, who.line["id"], coupon=codes[0])
    assert discounts(q) == {"cli-first": 1160, "cli-coupon": 500}
    listing = cli("offers", "list").output
    assert "redeemed 1/50" in next(
        line for line in listing.splitlines() if line.startswith("cli-first")
    )
    assert "cli-mj" in listing and "HKD 0/5000" in listing

    assert cli("offers", "pause", "cli-first").output.strip() == "offer cli-first: paused"
    assert discounts(quote(client, who.headers, who.line["id"])) == {"cli-mj": 300}
    assert cli("offers", "end", "cli-first").output.strip() == "offer cli-first: ended"
    assert cli("offers", "resume", "cli-first").exit_code == 2
    assert cli("offers", "pause", "no-such-offer").exit_code == 2
    report = cli("offers", "report").output.splitlines()
    assert report[0].startswith("offer,kind,status,confirmed,held")
    assert "cli-mj,spend_threshold,active,0,1,0,-,HKD:300,0 B,-" in report
