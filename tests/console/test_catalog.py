"""The console's packs and prices: list, new pack, edit, price changes and their history; a price
change leaves orders already placed (and their receipts) as they were."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests import factories as f
from tests.console.catalog_helpers import admin, audit_entries, post
from tests.web.helpers import ACCEPT_HTML
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.db import transaction
from tongka.money import GB, MB
from tongka.order.models import Order
from tongka.receipt.models import Receipt

NEW_PACK = {
    "code": "hk-1500mb-7d",
    "name_en": "Hong Kong 1.5 GB · 7 days",
    "name_zh-Hans": "香港 1.5 GB · 7 天",
    "zone": "hk",
    "volume": "1.5 GB",
    "validity_days": "7",
    "price_HKD": "28.50",
    "price_CNY": "26",
    "channels": ["web", "store"],
}


def _pack(sessions, code: str) -> Pack:  # type: ignore[no-untyped-def]
    with transaction(sessions, read_only=True) as s:
        pack = s.scalar(select(Pack).where(Pack.code == code))
        assert pack is not None
        s.expunge_all()
        return pack


def test_volumes_and_prices_are_read_as_people_write_them() -> None:
    assert catalog.parse_volume("5 GB") == 5 * GB
    assert catalog.parse_volume("1.5gb") == 1536 * MB
    assert catalog.parse_volume("500 MB") == 500 * MB
    assert catalog.parse_price("48", "HKD") == 4800
    assert catalog.parse_price("48.5", "HKD") == 4850
    for wrong in ("", "5", "five GB", "0 GB", "-1 GB", "0.0000001 MB"):
        try:
            catalog.parse_volume(wrong)
        except catalog.VolumeInvalid:
            continue
        raise AssertionError(wrong)
    for wrong in ("", "0", "-3", "1.234", "abc", "nan"):
        try:
            catalog.parse_price(wrong, "HKD")
        except catalog.PriceInvalid:
            continue
        raise AssertionError(wrong)


def test_the_admin_lists_packs_and_adds_one(client, sessions, settings, demo) -> None:
    who = admin(client, sessions, settings)
    r = client.get("/console/packs", headers=ACCEPT_HTML)
    assert r.status_code == 200 and "hk-5gb-30d" in r.text and "HK$58.00" in r.text
    r = post(client, "/console/packs", NEW_PACK, page="/console/packs/new")
    assert r.status_code == 303, r.text
    pack = _pack(sessions, "hk-1500mb-7d")
    assert r.headers["location"] == f"/console/packs/{pack.id}"
    assert (pack.volume_bytes, pack.validity_days, pack.zone) == (1536 * MB, 7, "hk")
    assert pack.channels == ["web", "store"] and pack.active
    assert {p.currency: p.amount for p in pack.prices} == {"HKD": 2850, "CNY": 2600}
    assert pack.names == {"en": "Hong Kong 1.5 GB · 7 days", "zh-Hans": "香港 1.5 GB · 7 天"}
    [entry] = audit_entries(sessions, "pack.add")
    assert entry.username == who.username and entry.object_id == str(pack.id)
    assert entry.after is not None and entry.after["prices"] == {"HKD": 2850, "CNY": 2600}
    # Its first prices start its history.
    page = client.get(f"/console/packs/{pack.id}", headers=ACCEPT_HTML).text
    assert "HK$28.50" in page and who.username in page
    # A pack may have a price in one currency only.
    one = {**NEW_PACK, "code": "hk-2gb-7d", "volume": "2048 MB", "price_CNY": ""}
    assert post(client, "/console/packs", one, page="/console/packs/new").status_code == 303
    pack = _pack(sessions, "hk-2gb-7d")
    assert pack.volume_bytes == 2 * GB and {p.currency: p.amount for p in pack.prices} == {
        "HKD": 2850
    }


def test_a_new_pack_is_refused_with_reasons(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    wrong = {
        **NEW_PACK,
        "code": "hk-5gb-30d",  # taken
        "volume": "lots",
        "price_HKD": "0",
        "channels": [],
    }
    r = post(client, "/console/packs", wrong, page="/console/packs/new")
    assert r.status_code == 400
    assert "Enter a data volume like 5 GB or 500 MB" in r.text
    assert "Enter a price above zero" in r.text
    assert "Choose at least one channel." in r.text
    r = post(
        client, "/console/packs", {**NEW_PACK, "code": "hk-5gb-30d"}, page="/console/packs/new"
    )
    assert r.status_code == 400 and "A pack with this code already exists." in r.text
    r = post(
        client,
        "/console/packs",
        {**NEW_PACK, "sale_starts_at": "2027-01-02T10:00", "sale_ends_at": "2027-01-01T10:00"},
        page="/console/packs/new",
    )
    assert r.status_code == 400 and "The sale must end after it starts." in r.text
    r = post(
        client,
        "/console/packs",
        {**NEW_PACK, "price_HKD": "", "price_CNY": ""},
        page="/console/packs/new",
    )
    assert r.status_code == 400 and "Give a price in at least one currency." in r.text
    assert audit_entries(sessions, "pack.add") == []
    with transaction(sessions, read_only=True) as s:
        assert s.scalar(select(Pack).where(Pack.code == "hk-1500mb-7d")) is None


def test_the_admin_edits_a_pack(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    pack = _pack(sessions, "hk-5gb-30d")
    path = f"/console/packs/{pack.id}"
    r = post(
        client,
        path,
        {
            "name_en": "HK 5 GB",
            "name_zh-Hans": "香港 5GB",
            "name_zh-Hant": "香港 5GB",
            "channels": ["store"],
            "sale_starts_at": "2027-01-01T00:00",
            "sale_ends_at": "",
        },
    )
    assert (r.status_code, r.headers["location"]) == (303, f"{path}?saved=pack")
    edited = _pack(sessions, "hk-5gb-30d")
    assert edited.names["en"] == "HK 5 GB" and edited.channels == ["store"]
    assert not edited.active  # the box was left unticked
    assert edited.sale_starts_at is not None and edited.sale_starts_at.hour == 16  # HK midnight
    [entry] = audit_entries(sessions, "pack.edit")
    assert entry.before is not None and entry.after is not None
    assert entry.before["active"] is True and entry.after["active"] is False
    assert entry.before["channels"] == ["app", "web", "store"]
    # Off sale now: the app's list no longer has it.
    assert "hk-5gb-30d" not in [p["code"] for p in client.get("/api/v1/packs").json()]
    r = post(client, path, {"name_en": "", "channels": ["store"]})
    assert r.status_code == 400 and "Fill in this field." in r.text


def test_a_price_change_is_kept_in_the_history_and_leaves_past_orders_alone(
    client, sessions, settings, demo
) -> None:
    owner = f.new_subscriber(client, sessions)
    before = f.order(client, owner.headers, owner.line["id"])  # hk-5gb-30d at HK$58.00
    f.pay(client, before["payment"]["id"])
    waiting = f.order(client, owner.headers, owner.line["id"])  # placed, not yet paid
    who = admin(client, sessions, settings)
    pack = _pack(sessions, "hk-5gb-30d")
    path = f"/console/packs/{pack.id}"
    r = post(client, f"{path}/prices", {"currency": "HKD", "amount": "62"}, page=path)
    assert (r.status_code, r.headers["location"]) == (303, f"{path}?saved=price")
    page = client.get(f"{path}?saved=price", headers=ACCEPT_HTML).text
    assert "HK$58.00" in page and "HK$62.00" in page and who.username in page
    [entry] = audit_entries(sessions, "pack.price")
    assert entry.before == {"currency": "HKD", "amount": 5800}
    assert entry.after == {"currency": "HKD", "amount": 6200}
    with transaction(sessions, read_only=True) as s:
        change, *earlier = catalog.price_history(s, pack.id)
        assert [(e.currency, e.old_amount, e.changed_by) for e in earlier] == [
            ("CNY", None, "cli"),
            ("HKD", None, "cli"),
        ]  # the demo's first prices
        assert (change.old_amount, change.new_amount, change.changed_by) == (
            5800,
            6200,
            who.username,
        )
        orders = {
            o.id: o
            for o in s.scalars(select(Order).where(Order.line_id == uuid.UUID(owner.line["id"])))
        }
        assert orders[uuid.UUID(before["id"])].amount == 5800
        assert orders[uuid.UUID(waiting["id"])].amount == 5800
        receipt = s.scalar(select(Receipt).where(Receipt.order_id == uuid.UUID(before["id"])))
        assert receipt is not None and receipt.content["price"]["paid"]["amount"] == 5800
    # The order placed before the change is paid at its own price; a new one costs the new price.
    f.pay(client, waiting["payment"]["id"])
    with transaction(sessions, read_only=True) as s:
        assert s.get(Order, uuid.UUID(waiting["id"])).amount == 5800  # type: ignore[union-attr]
    assert f.order(client, owner.headers, owner.line["id"])["amount"] == 6200
    # The same price again changes nothing and writes nothing.
    post(client, f"{path}/prices", {"currency": "HKD", "amount": "62.00"}, page=path)
    assert len(audit_entries(sessions, "pack.price")) == 1


def test_a_wrong_price_is_refused(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    pack = _pack(sessions, "hk-5gb-30d")
    path = f"/console/packs/{pack.id}"
    for amount in ("0", "-5", "abc", "1.001"):
        r = post(client, f"{path}/prices", {"currency": "HKD", "amount": amount}, page=path)
        assert r.status_code == 400 and "Enter a price above zero" in r.text, amount
    r = post(client, f"{path}/prices", {"currency": "EUR", "amount": "5"}, page=path)
    assert r.status_code == 400
    assert _pack(sessions, "hk-5gb-30d").price("HKD") == 5800
    assert audit_entries(sessions, "pack.price") == []
    assert client.get(f"/console/packs/{uuid.uuid4()}", headers=ACCEPT_HTML).status_code == 404
