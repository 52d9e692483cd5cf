"""The console's offers and coupons: a new offer from the form, the list with budgets and
redemptions, pause / resume / end, and coupon codes shown once (page and CSV)."""

from __future__ import annotations

import base64
import re

from sqlalchemy import select

from tests.console.catalog_helpers import admin, audit_entries, post
from tests.web.helpers import ACCEPT_HTML
from tongka.db import transaction
from tongka.promotion.models import CouponCode, Offer, OfferBudget

STORE_COUPON = {
    "code": "store-spring-10",
    "name_en": "Spring at the counter",
    "name_zh-Hant": "春日門市優惠",
    "kind": "coupon",
    "percent_off": "10",
    "channels": ["store"],
    "packs": ["hk-5gb-30d"],
    "starts_at": "2026-03-01T09:00",
    "ends_at": "2099-04-01T00:00",
    "max_discount_HKD": "500",
    "max_redemptions": "100",
}


def _offer(sessions, code: str) -> Offer:  # type: ignore[no-untyped-def]
    with transaction(sessions, read_only=True) as s:
        offer = s.scalar(select(Offer).where(Offer.code == code))
        assert offer is not None
        s.expunge_all()
        return offer


def test_the_admin_creates_a_store_coupon_and_sees_it_listed(
    client, sessions, settings, demo
) -> None:
    who = admin(client, sessions, settings)
    r = post(client, "/console/offers", STORE_COUPON, page="/console/offers/new")
    assert (r.status_code, r.headers["location"]) == (303, "/console/offers?added=store-spring-10")
    offer = _offer(sessions, "store-spring-10")
    assert (offer.kind, offer.status, offer.percent_off_bp) == ("coupon", "active", 1000)
    assert offer.channels == ["store"] and offer.pack_codes == ["hk-5gb-30d"]
    assert offer.max_redemptions == 100 and offer.created_by == f"staff:{who.username}"
    assert offer.starts_at is not None and offer.starts_at.hour == 1  # 09:00 in Hong Kong
    with transaction(sessions, read_only=True) as s:
        caps = {
            b.currency: b.max_discount
            for b in s.scalars(select(OfferBudget).where(OfferBudget.offer_id == offer.id))
        }
    assert caps == {"HKD": 50000, "CNY": None}
    [entry] = audit_entries(sessions, "offer.add")
    assert entry.username == who.username and entry.after is not None
    assert entry.after["channels"] == ["store"] and entry.after["code"] == "store-spring-10"
    page = client.get("/console/offers?added=store-spring-10", headers=ACCEPT_HTML).text
    assert "Spring at the counter" in page and "The offer store-spring-10 is created." in page
    assert "HK$500.00" in page and "Redeemed: 0" in page


def test_an_automatic_offer_of_bonus_data(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    r = post(
        client,
        "/console/offers",
        {
            "code": "bonus-1gb",
            "name_en": "1 GB more",
            "kind": "bonus_data",
            "bonus_volume": "1 GB",
            "bonus_zone": "hk",
            "bonus_validity_days": "30",
            "channels": ["app", "web"],
        },
        page="/console/offers/new",
    )
    assert r.status_code == 303, r.text
    offer = _offer(sessions, "bonus-1gb")
    assert (offer.bonus_bytes, offer.bonus_zone, offer.bonus_validity_days) == (1024**3, "hk", 30)
    assert offer.pack_codes is None  # every pack


def test_a_wrong_offer_is_refused_with_reasons(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    new = "/console/offers/new"
    r = post(client, "/console/offers", {**STORE_COUPON, "amount_off_HKD": "5"}, page=new)
    assert r.status_code == 400 and "Give either a percentage off or an amount off." in r.text
    r = post(client, "/console/offers", {**STORE_COUPON, "name_en": "", "channels": []}, page=new)
    assert r.status_code == 400
    assert "Fill in this field." in r.text and "Choose at least one channel." in r.text
    r = post(client, "/console/offers", {**STORE_COUPON, "ends_at": "2026-01-01T00:00"}, page=new)
    assert r.status_code == 400 and "The offer must end after it starts." in r.text
    r = post(client, "/console/offers", {**STORE_COUPON, "code": "Not A Code!"}, page=new)
    assert r.status_code == 400 and "This is not in the expected form." in r.text
    assert post(client, "/console/offers", STORE_COUPON, page=new).status_code == 303
    r = post(client, "/console/offers", STORE_COUPON, page=new)
    assert r.status_code == 400 and "An offer with this code already exists." in r.text
    assert len(audit_entries(sessions, "offer.add")) == 1


def test_pause_resume_and_end(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    post(client, "/console/offers", STORE_COUPON, page="/console/offers/new")
    offer = _offer(sessions, "store-spring-10")
    for action, status in (("pause", "paused"), ("resume", "active"), ("end", "ended")):
        r = post(client, f"/console/offers/{offer.id}/{action}", {}, page="/console/offers")
        assert r.status_code == 303
        assert _offer(sessions, "store-spring-10").status == status
        [entry] = audit_entries(sessions, f"offer.{action}")
        assert entry.after is not None and entry.after["status"] == status
    # Ended is for good.
    r = post(client, f"/console/offers/{offer.id}/resume", {}, page="/console/offers")
    assert r.status_code == 409 and _offer(sessions, "store-spring-10").status == "ended"
    assert len(audit_entries(sessions, "offer.resume")) == 1


def test_coupon_codes_are_shown_once_and_kept_only_as_fingerprints(
    client, sessions, settings, demo
) -> None:
    admin(client, sessions, settings)
    post(client, "/console/offers", STORE_COUPON, page="/console/offers/new")
    offer = _offer(sessions, "store-spring-10")
    r = post(
        client,
        f"/console/offers/{offer.id}/codes",
        {"count": "3", "max_uses": "1", "code": ""},
        page="/console/offers",
    )
    assert r.status_code == 200, r.text
    shown = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", r.text)
    assert len(shown) == 3
    link = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', r.text)
    assert link is not None
    rows = base64.b64decode(link.group(1)).decode().splitlines()
    assert rows[0] == "offer,batch,code" and [row.split(",")[2] for row in rows[1:]] == shown
    with transaction(sessions, read_only=True) as s:
        kept = list(s.scalars(select(CouponCode).where(CouponCode.offer_id == offer.id)))
    assert len(kept) == 3 and all(code not in c.code_hash for c in kept for code in shown)
    [entry] = audit_entries(sessions, "offer.codes")
    assert entry.after is not None and entry.after["count"] == 3
    assert not any(code in str(entry.after) for code in shown)
    # One shared code; then a code that is no code.
    r = post(
        client,
        f"/console/offers/{offer.id}/codes",
        {"count": "1", "code": "SPRING2027"},
        page="/console/offers",
    )
    assert r.status_code == 200 and "<code>SPRING2027</code>" in r.text
    r = post(
        client,
        f"/console/offers/{offer.id}/codes",
        {"count": "1", "code": "no!"},
        page="/console/offers",
    )
    assert r.status_code in (400, 422) and "<code>" not in r.text


def test_codes_only_for_a_coupon_offer(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    post(
        client,
        "/console/offers",
        {**STORE_COUPON, "code": "auto-10", "kind": "first_topup"},
        page="/console/offers/new",
    )
    offer = _offer(sessions, "auto-10")
    r = post(client, f"/console/offers/{offer.id}/codes", {"count": "2"}, page="/console/offers")
    assert r.status_code >= 400 and "<code>" not in r.text
    assert audit_entries(sessions, "offer.codes") == []
