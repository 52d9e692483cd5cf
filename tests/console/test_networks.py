"""The console's network registry and rating groups: listed, added, changed, each change audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.console.helpers import post
from tests.web.helpers import ACCEPT_HTML
from tongka.charging import service as charging
from tongka.charging.models import Network, RatingGroup
from tongka.staff.models import AuditEntry

PAGE = "/console/networks"


def test_the_registry_is_listed_with_the_rating_groups(client, admin) -> None:
    post(client, PAGE, PAGE, {"plmn": "454-97", "operator": "Lab net", "zone": "hk"})
    r = client.get(PAGE, headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert 'data-plmn="454-97"' in r.text and "Lab net" in r.text
    assert "Rating groups" in r.text


def test_a_network_is_added_and_changed_and_both_are_audited(client, sessions, admin) -> None:
    r = post(
        client, PAGE, PAGE, {"plmn": "45498", "operator": "CMHK", "zone": "hk", "active": "on"}
    )
    assert (r.status_code, r.headers["location"]) == (303, f"{PAGE}?done=454-98")
    with sessions() as s:
        n = s.get(Network, "454-98")
        assert n is not None and (n.mcc, n.mnc, n.operator, n.zone, n.active) == (
            "454",
            "98",
            "CMHK",
            "hk",
            True,
        )
    page = f"{PAGE}/454-98"
    assert "CMHK" in client.get(page, headers=ACCEPT_HTML).text
    r = post(
        client, page, page, {"operator": "China Mobile HK", "zone": "hk"}
    )  # unticked: not served
    assert r.status_code == 303
    with sessions() as s:
        n = s.get(Network, "454-98")
        assert n is not None and (n.operator, n.active) == ("China Mobile HK", False)
        added, changed = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == "network")
            .order_by(AuditEntry.at, AuditEntry.action)
        ).all()
    assert (added.action, added.before, added.after) == (
        "network.add",
        None,
        {"operator": "CMHK", "zone": "hk", "active": True},
    )
    assert (changed.action, changed.object_id, changed.username) == (
        "network.change",
        "454-98",
        admin.username,
    )
    assert changed.before == {"operator": "CMHK", "zone": "hk", "active": True}
    assert changed.after == {"operator": "China Mobile HK", "zone": "hk", "active": False}


def test_a_wrong_or_known_plmn_is_refused(client, sessions, admin) -> None:
    assert (
        post(client, PAGE, PAGE, {"plmn": "454-96", "operator": "X", "zone": "hk"}).status_code
        == 303
    )
    for plmn, said in (
        ("4601", "This is not in the expected form."),
        ("460-0001", "This is not in the expected form."),
        ("abcde", "This is not in the expected form."),
        ("454-96", "The network 454-96 is already in the registry."),
        ("45496", "The network 454-96 is already in the registry."),
    ):
        r = post(client, PAGE, PAGE, {"plmn": plmn, "operator": "X", "zone": "hk"})
        assert r.status_code == 400 and said in r.text, plmn
    r = post(client, PAGE, PAGE, {"plmn": "45499", "operator": "X", "zone": "moon"})
    assert r.status_code == 400
    assert client.get(f"{PAGE}/999-99", headers=ACCEPT_HTML).status_code == 404
    with sessions() as s:
        assert s.get(Network, "454-99") is None
        assert (
            len(s.scalars(select(AuditEntry).where(AuditEntry.object_type == "network")).all()) == 1
        )


def test_a_rating_group_is_set_zero_rated_then_charged(client, sessions, admin) -> None:
    action = "/console/rating-groups"
    r = post(
        client, PAGE, action, {"rating_group": "9001", "name": "self-service", "zero_rated": "on"}
    )
    assert r.status_code == 303
    r = post(client, PAGE, action, {"rating_group": "9001", "name": "self-service"})
    assert r.status_code == 303
    with sessions() as s:
        group = s.get(RatingGroup, 9001)
        assert group is not None and not group.zero_rated
        first, second = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "rating_group.set")
            .order_by(AuditEntry.at)
        ).all()
    assert first.before is None and first.after == {"name": "self-service", "zero_rated": True}
    assert second.before == {"name": "self-service", "zero_rated": True}
    assert second.after == {"name": "self-service", "zero_rated": False}
    r = post(client, PAGE, action, {"rating_group": str(2**32), "name": "x"})
    assert r.status_code == 400
    r = post(client, PAGE, action, {"rating_group": "-1", "name": "x"})
    assert r.status_code == 400


def test_charging_follows_the_registry(client, sessions, admin) -> None:
    post(
        client,
        PAGE,
        PAGE,
        {"plmn": "454-95", "operator": "Lab", "zone": "mainland", "active": "on"},
    )
    with sessions() as s:
        assert charging.network_for(s, "454-95").zone == "mainland"
    page = f"{PAGE}/454-95"
    post(client, page, page, {"operator": "Lab", "zone": "hk"})  # no longer served
    with sessions() as s, pytest.raises(charging.NetworkNotServed):
        charging.network_for(s, "454-95")
