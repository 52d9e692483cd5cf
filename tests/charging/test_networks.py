"""The network registry: seeded PLMNs by zone; unknown or inactive networks are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.charging import calls
from tests.charging import factories as f
from tests.charging.calls import ChargingSessionExists
from tongka.charging import service as charging
from tongka.charging.models import ChargingSession, Network
from tongka.charging.service import (
    LineNotActive,
    NetworkNotServed,
    UnknownNetwork,
)

MAINLAND = {
    "460-00",
    "460-02",
    "460-04",
    "460-07",
    "460-08",
    "460-01",
    "460-06",
    "460-09",
    "460-03",
    "460-05",
    "460-11",
}
HK = {
    "454-00",
    "454-02",
    "454-10",
    "454-18",
    "454-12",
    "454-13",
    "454-03",
    "454-04",
    "454-06",
    "454-15",
    "454-17",
}


def test_the_migration_seeds_every_mainland_and_hong_kong_network(session) -> None:
    rows = {n.plmn: n for n in charging.networks(session)}
    assert {p for p, n in rows.items() if n.zone == "mainland"} == MAINLAND
    assert {p for p, n in rows.items() if n.zone == "hk"} == HK
    assert all(n.active and f"{n.mcc}-{n.mnc}" == n.plmn for n in rows.values())
    assert {
        rows[p].operator
        for p in ("460-00", "460-01", "460-03", "454-00", "454-12", "454-03", "454-06")
    } == {
        "China Mobile",
        "China Unicom",
        "China Telecom",
        "HKT/csl",
        "China Mobile Hong Kong",
        "3HK",
        "SmarTone",
    }


@pytest.mark.parametrize(
    ("plmn", "zone"), [("460-00", "mainland"), ("460-11", "mainland"), ("454-13", "hk")]
)
def test_network_for_a_known_plmn(session, plmn: str, zone: str) -> None:
    assert charging.network_for(session, plmn).zone == zone


@pytest.mark.parametrize("plmn", ["460-99", "455-00", "310-260", "", "46000"])
def test_an_unknown_plmn_is_refused_not_guessed(session, plmn: str) -> None:
    with pytest.raises(UnknownNetwork) as refused:
        charging.network_for(session, plmn)
    assert refused.value.code == "unknown_network"
    assert plmn in str(refused.value)
    assert "不认识" in refused.value.detail("zh-Hans")


def test_an_inactive_network_is_refused_and_no_session_opens(session) -> None:
    session.get(Network, "454-06").active = False
    line = f.line(session)
    with pytest.raises(NetworkNotServed):
        calls.open_session(session, line, "454-06", "ref-inactive")
    assert session.scalars(select(ChargingSession)).all() == []
    session.rollback()


def test_open_session_takes_the_networks_zone(session) -> None:
    line = f.line(session)
    cs = calls.open_session(session, line, "460-01", "ref-1")
    session.commit()
    assert (cs.line_id, cs.plmn, cs.zone, cs.status, cs.charging_data_ref) == (
        line.id,
        "460-01",
        "mainland",
        "open",
        "ref-1",
    )


def test_a_charging_data_ref_opens_one_session_only(session) -> None:
    line = f.line(session)
    calls.open_session(session, line, "454-00", "ref-dup")
    with pytest.raises(ChargingSessionExists):
        calls.open_session(session, line, "460-00", "ref-dup")
    session.commit()
    assert len(session.scalars(select(ChargingSession)).all()) == 1


def test_a_suspended_line_opens_no_session(session) -> None:
    line = f.line(session)
    line.status = "suspended"
    with pytest.raises(LineNotActive):
        calls.open_session(session, line, "454-00", "ref-suspended")
    session.rollback()


def test_cli_lists_the_registry(session, cli) -> None:
    result = cli("networks", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(MAINLAND | HK)
    assert any(
        line.startswith("454-12") and "hk" in line and "China Mobile Hong Kong" in line
        for line in lines
    )
    assert any(
        line.startswith("460-03") and "mainland" in line and "China Telecom" in line
        for line in lines
    )
