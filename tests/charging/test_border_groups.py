"""Border crossings mid-session and rating groups (charged, zero-rated, several in one message), over Nchf."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.charging import factories as f
from tests.charging import spec
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tests.charging.test_api import BASE, create, msisdn, remaining, request
from tests.charging.test_spec import CREATE, RELEASE, UPDATE, answer
from tongka.charging import service as charging
from tongka.charging.models import ChargingSession, Grant, Network, UsageDay
from tongka.ledger.models import LineDebt
from tongka.money import MB

INTERNET, SELF_SERVICE, VIDEO = 10, 20, 30  # VIDEO is configured nowhere: charged as internet data
PLMN_CHANGE = [{"triggerType": "PLMN_CHANGE", "triggerCategory": "IMMEDIATE_REPORT"}]
DENIED = "END_USER_SERVICE_DENIED"


def container(volume: int, number: int, trigger: str = "QUOTA_THRESHOLD") -> dict[str, Any]:
    return {
        "totalVolume": volume,
        "localSequenceNumber": number,
        "quotaManagementIndicator": "ONLINE_CHARGING",
        "triggers": [{"triggerType": trigger, "triggerCategory": "IMMEDIATE_REPORT"}],
        "triggerTimestamp": f"2030-01-15T08:0{number % 10}:00Z",
    }


def message(seq: int, plmn: str, groups: dict[int, dict[str, Any]], **named: Any) -> dict[str, Any]:
    """A request naming the network the phone is on now, with each rating group's usage and request."""
    body = request(seq, plmn=plmn, **named)
    body["multipleUnitUsage"] = [{"ratingGroup": rg, **usage} for rg, usage in groups.items()]
    spec.validate(body, "ChargingDataRequest")
    return body


def usage_days(session, line) -> dict[tuple[str, str], tuple[int, int]]:  # type: ignore[no-untyped-def]
    """(zone, network) -> (charged bytes, zero-rated bytes) of the line, all days."""
    rows = session.execute(
        select(UsageDay.zone, UsageDay.plmn, UsageDay.bytes, UsageDay.zero_rated_bytes).where(
            UsageDay.line_id == line.id
        )
    ).all()
    session.rollback()
    return {(zone, plmn): (used, free) for zone, plmn, used, free in rows}


def on_network(session, ref: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    row = session.execute(
        select(ChargingSession.plmn, ChargingSession.zone).where(
            ChargingSession.charging_data_ref == ref
        )
    ).one()
    session.rollback()
    return tuple(row)  # type: ignore[return-value]


def configure(session) -> None:  # type: ignore[no-untyped-def]
    charging.set_rating_group(session, INTERNET, "internet", zero_rated=False)
    charging.set_rating_group(session, SELF_SERVICE, "self-service site and app", zero_rated=True)


# --- border crossings -----------------------------------------------------------------------------


def test_a_border_crossing_charges_each_side_to_its_zone_to_the_byte(nchf, session) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    mainland = f.bucket(session, line, "mainland", 100 * MB)
    gpsi = msisdn(line)
    session.commit()

    r = nchf.post(
        BASE,
        json=message(
            0, HK_PLMN, {INTERNET: {"requestedUnit": {"totalVolume": 30 * MB}}}, gpsi=gpsi
        ),
    )
    assert r.status_code == 201, r.text
    assert answer(r, CREATE)["triggers"] == PLMN_CHANGE  # the SMF is told to report at the crossing
    ref = r.headers["location"].rsplit("/", 1)[1]
    assert (remaining(session, hk), remaining(session, mainland)) == (70 * MB, 100 * MB)

    # At Lo Wu: 7,000,001 bytes in Hong Kong up to the change, then 3,333,333 on China Mobile.
    crossing = message(
        1,
        MAINLAND_PLMN,
        {
            INTERNET: {
                "requestedUnit": {"totalVolume": 20 * MB},
                "usedUnitContainer": [
                    container(7_000_001, 1, "PLMN_CHANGE"),
                    container(3_333_333, 2),
                ],
            }
        },
    )
    crossing["triggers"] = PLMN_CHANGE
    r = nchf.post(f"{BASE}/{ref}/update", json=crossing)
    assert r.status_code == 200, r.text
    body = answer(r, UPDATE)
    assert body["triggers"] == PLMN_CHANGE
    (unit,) = body["multipleUnitInformation"]
    assert (unit["resultCode"], unit["grantedUnit"]) == ("SUCCESS", {"totalVolume": 20 * MB})
    # The Hong Kong grant is settled for what was used there and the rest released; the new grant and
    # what was used after the change come out of the mainland bucket.
    assert remaining(session, hk) == 100 * MB - 7_000_001
    assert remaining(session, mainland) == 100 * MB - 3_333_333 - 20 * MB
    assert on_network(session, ref) == (MAINLAND_PLMN, "mainland")
    assert usage_days(session, line) == {
        ("hk", HK_PLMN): (7_000_001, 0),
        ("mainland", MAINLAND_PLMN): (3_333_333, 0),
    }

    # The same update again (lost answer): the same answer, nothing charged twice.
    again = nchf.post(f"{BASE}/{ref}/update", json={**crossing, "retransmissionIndicator": True})
    assert (again.status_code, again.json()) == (200, body)
    assert (remaining(session, hk), remaining(session, mainland)) == (
        100 * MB - 7_000_001,
        80 * MB - 3_333_333,
    )
    assert usage_days(session, line) == {
        ("hk", HK_PLMN): (7_000_001, 0),
        ("mainland", MAINLAND_PLMN): (3_333_333, 0),
    }

    r = nchf.post(
        f"{BASE}/{ref}/release",
        json=message(
            2, MAINLAND_PLMN, {INTERNET: {"usedUnitContainer": [container(5 * MB, 3, "FINAL")]}}
        ),
    )
    assert r.status_code == 204, r.text
    answer(r, RELEASE)
    assert (remaining(session, hk), remaining(session, mainland)) == (
        100 * MB - 7_000_001,
        95 * MB - 3_333_333,
    )
    assert usage_days(session, line) == {
        ("hk", HK_PLMN): (7_000_001, 0),
        ("mainland", MAINLAND_PLMN): (3_333_333 + 5 * MB, 0),
    }


def test_a_crossing_named_only_by_the_serving_network_charges_the_report_to_the_old_zone(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    """No container closed by PLMN_CHANGE: what the report carries was used before the SMF saw the change."""
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    mainland = f.bucket(session, line, "mainland", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=30 * MB))

    r = nchf.post(
        f"{BASE}/{ref}/update", json=request(1, plmn="460-01", requested=10 * MB, used=MB + 1)
    )
    assert r.status_code == 200 and r.json()["multipleUnitInformation"][0]["grantedUnit"] == {
        "totalVolume": 10 * MB
    }
    assert (remaining(session, hk), remaining(session, mainland)) == (99 * MB - 1, 90 * MB)
    assert on_network(session, ref) == ("460-01", "mainland")
    assert usage_days(session, line) == {("hk", HK_PLMN): (MB + 1, 0)}
    assert nchf.post(f"{BASE}/{ref}/release", json=request(2, plmn="460-01")).status_code == 204
    assert remaining(session, mainland) == 100 * MB


def test_a_crossing_to_a_network_not_served_refuses_quota_and_still_charges_usage(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    mainland = f.bucket(session, line, "mainland", 100 * MB)
    gpsi = msisdn(line)
    session.get_one(Network, "460-03").active = False  # China Telecom: not served
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=30 * MB))

    r = nchf.post(
        f"{BASE}/{ref}/update",
        json=message(
            1,
            "460-03",
            {
                INTERNET: {
                    "requestedUnit": {"totalVolume": 10 * MB},
                    "usedUnitContainer": [container(2 * MB, 1, "PLMN_CHANGE"), container(MB, 2)],
                }
            },
        ),
    )
    assert r.status_code == 200, r.text
    assert answer(r, UPDATE)["multipleUnitInformation"] == [
        {"resultCode": DENIED, "ratingGroup": INTERNET}
    ]
    # Its usage is still the network's zone's; the session is on it, and asking again is refused again.
    assert (remaining(session, hk), remaining(session, mainland)) == (98 * MB, 99 * MB)
    assert on_network(session, ref) == ("460-03", "mainland")
    r = nchf.post(f"{BASE}/{ref}/update", json=request(2, plmn="460-03", requested=MB, used=MB))
    assert answer(r, UPDATE)["multipleUnitInformation"] == [
        {"resultCode": DENIED, "ratingGroup": INTERNET}
    ]
    assert remaining(session, mainland) == 98 * MB
    assert nchf.post(f"{BASE}/{ref}/release", json=request(3, plmn="460-03")).status_code == 204


def test_a_crossing_to_an_unknown_network_refuses_quota_and_charges_usage_where_the_session_was(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=30 * MB))

    r = nchf.post(
        f"{BASE}/{ref}/update",
        json=message(
            1,
            "310-260",
            {
                INTERNET: {
                    "requestedUnit": {"totalVolume": 10 * MB},
                    "usedUnitContainer": [container(2 * MB, 1, "PLMN_CHANGE"), container(MB, 2)],
                }
            },
        ),
    )
    assert r.status_code == 200, r.text
    assert answer(r, UPDATE)["multipleUnitInformation"] == [
        {"resultCode": DENIED, "ratingGroup": INTERNET}
    ]
    # No zone to rate it in: all of it where the session is recorded, and its open grant released.
    assert remaining(session, hk) == 97 * MB
    assert on_network(session, ref) == (HK_PLMN, "hk")
    assert usage_days(session, line) == {("hk", HK_PLMN): (3 * MB, 0)}
    session.rollback()
    assert session.scalars(select(Grant.status)).all() == ["settled"]
    session.rollback()

    # Back in Hong Kong: granted again.
    r = nchf.post(f"{BASE}/{ref}/update", json=request(2, requested=MB, used=0))
    assert answer(r, UPDATE)["multipleUnitInformation"][0]["grantedUnit"] == {"totalVolume": MB}
    assert nchf.post(f"{BASE}/{ref}/release", json=request(3)).status_code == 204


# --- rating groups ------------------------------------------------------------------------------------


def test_a_zero_rated_group_is_granted_with_no_data_and_never_charged(nchf, session) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)  # no bucket, no wallet
    configure(session)
    gpsi = msisdn(line)
    session.commit()

    r = nchf.post(
        BASE,
        json=message(
            0,
            HK_PLMN,
            {
                INTERNET: {"requestedUnit": {"totalVolume": 10 * MB}},
                SELF_SERVICE: {"requestedUnit": {"totalVolume": 5 * MB}},
            },
            gpsi=gpsi,
        ),
    )
    assert r.status_code == 201, r.text
    internet, free = answer(r, CREATE)["multipleUnitInformation"]
    assert (internet["resultCode"], internet["finalUnitIndication"]["finalUnitAction"]) == (
        "QUOTA_LIMIT_REACHED",
        "REDIRECT",
    )
    assert free == {
        "resultCode": "SUCCESS",
        "ratingGroup": SELF_SERVICE,
        "grantedUnit": {"totalVolume": 5 * MB},
        "validityTime": 600,
        "volumeQuotaThreshold": MB,
    }
    ref = r.headers["location"].rsplit("/", 1)[1]

    # The customer renews on the self-service site: 4 MB, then 9 MB on a 5 MB grant; nothing is owed.
    for seq, used in ((1, 4 * MB), (2, 9 * MB)):
        r = nchf.post(
            f"{BASE}/{ref}/update",
            json=message(
                seq,
                HK_PLMN,
                {
                    SELF_SERVICE: {
                        "requestedUnit": {"totalVolume": 5 * MB},
                        "usedUnitContainer": [container(used, seq)],
                    }
                },
            ),
        )
        assert answer(r, UPDATE)["multipleUnitInformation"][0]["grantedUnit"] == {
            "totalVolume": 5 * MB
        }
    assert (
        nchf.post(
            f"{BASE}/{ref}/release",
            json=message(
                3, HK_PLMN, {SELF_SERVICE: {"usedUnitContainer": [container(MB, 3, "FINAL")]}}
            ),
        ).status_code
        == 204
    )
    assert usage_days(session, line) == {("hk", HK_PLMN): (0, 14 * MB)}
    assert session.scalars(select(LineDebt).where(LineDebt.line_id == line.id)).all() == []
    session.rollback()


def test_several_rating_groups_in_one_message_are_granted_reported_and_refused_each_on_its_own(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 25 * MB)
    configure(session)
    gpsi = msisdn(line)
    session.commit()

    asked = {"requestedUnit": {"totalVolume": 10 * MB}}
    r = nchf.post(
        BASE,
        json=message(0, HK_PLMN, {INTERNET: asked, SELF_SERVICE: asked, VIDEO: asked}, gpsi=gpsi),
    )
    assert r.status_code == 201, r.text
    units = {u["ratingGroup"]: u for u in answer(r, CREATE)["multipleUnitInformation"]}
    assert [units[g]["grantedUnit"]["totalVolume"] for g in (INTERNET, SELF_SERVICE, VIDEO)] == [
        10 * MB
    ] * 3
    assert remaining(session, hk) == 5 * MB  # the zero-rated grant holds nothing
    ref = r.headers["location"].rsplit("/", 1)[1]

    r = nchf.post(
        f"{BASE}/{ref}/update",
        json=message(
            1,
            HK_PLMN,
            {
                INTERNET: {**asked, "usedUnitContainer": [container(6 * MB, 1)]},
                SELF_SERVICE: {**asked, "usedUnitContainer": [container(3 * MB, 1)]},
                VIDEO: {**asked, "usedUnitContainer": [container(10 * MB, 1)]},
            },
        ),
    )
    units = {u["ratingGroup"]: u for u in answer(r, UPDATE)["multipleUnitInformation"]}
    # 25 - 6 - 10 = 9 MB left: the internet group asks first and takes it all, video is cut off, the
    # self-service site is still granted.
    assert (
        units[INTERNET]["grantedUnit"] == {"totalVolume": 9 * MB}
        and "finalUnitIndication" in units[INTERNET]
    )
    assert units[VIDEO]["resultCode"] == "QUOTA_LIMIT_REACHED" and "grantedUnit" not in units[VIDEO]
    assert units[VIDEO]["finalUnitIndication"]["finalUnitAction"] == "REDIRECT"
    assert (units[SELF_SERVICE]["resultCode"], units[SELF_SERVICE]["grantedUnit"]) == (
        "SUCCESS",
        {"totalVolume": 10 * MB},
    )
    assert remaining(session, hk) == 0
    assert usage_days(session, line) == {("hk", HK_PLMN): (16 * MB, 3 * MB)}
    assert (
        nchf.post(
            f"{BASE}/{ref}/release",
            json=message(
                2,
                HK_PLMN,
                {
                    INTERNET: {"usedUnitContainer": [container(MB, 2, "FINAL")]},
                    SELF_SERVICE: {"usedUnitContainer": [container(MB, 2, "FINAL")]},
                },
            ),
        ).status_code
        == 204
    )
    assert remaining(session, hk) == 8 * MB
    assert usage_days(session, line) == {("hk", HK_PLMN): (17 * MB, 4 * MB)}


def test_a_crossing_with_several_groups_settles_each_in_its_zone(nchf, session) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 50 * MB)
    mainland = f.bucket(session, line, "mainland", 50 * MB)
    configure(session)
    gpsi = msisdn(line)
    session.commit()
    asked = {"requestedUnit": {"totalVolume": 10 * MB}}
    ref = create(nchf, message(0, HK_PLMN, {INTERNET: asked, SELF_SERVICE: asked}, gpsi=gpsi))

    r = nchf.post(
        f"{BASE}/{ref}/update",
        json=message(
            1,
            MAINLAND_PLMN,
            {
                INTERNET: {
                    **asked,
                    "usedUnitContainer": [
                        container(4 * MB, 1, "PLMN_CHANGE"),
                        container(2 * MB, 2),
                    ],
                },
                SELF_SERVICE: {
                    **asked,
                    "usedUnitContainer": [container(MB, 1, "PLMN_CHANGE"), container(3, 2)],
                },
            },
        ),
    )
    assert [u["resultCode"] for u in answer(r, UPDATE)["multipleUnitInformation"]] == [
        "SUCCESS",
        "SUCCESS",
    ]
    assert (remaining(session, hk), remaining(session, mainland)) == (46 * MB, 38 * MB)
    assert usage_days(session, line) == {
        ("hk", HK_PLMN): (4 * MB, MB),
        ("mainland", MAINLAND_PLMN): (2 * MB, 3),
    }
    assert (
        nchf.post(f"{BASE}/{ref}/release", json=request(2, plmn=MAINLAND_PLMN)).status_code == 204
    )
    assert remaining(session, mainland) == 48 * MB


def test_the_operator_configures_rating_groups_from_the_cli(cli, session) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli("rating-groups", "set", "20", "self-service site and app", "--zero-rated").exit_code
        == 0
    )
    assert cli("rating-groups", "set", "10", "internet").exit_code == 0
    out = cli("rating-groups", "list").output
    assert "20  zero-rated  self-service site and app" in out and "10  charged     internet" in out
    assert "any other rating group: charged" in out
    assert (
        cli("rating-groups", "set", "20", "self-service", "--charged").output.strip()
        == "20: self-service, charged"
    )
    assert cli("rating-groups", "set", str(2**32), "too big").exit_code == 2


def test_the_demo_configures_internet_data_and_a_zero_rated_self_service_group(
    sessions, settings
) -> None:  # type: ignore[no-untyped-def]
    from tests import factories as app_f
    from tongka.charging import simulate as simulation

    app_f.load_demo(sessions, settings)
    app_f.load_demo(sessions, settings)  # twice: nothing changes
    with sessions() as s:
        groups = [(g.rating_group, g.zero_rated) for g in charging.rating_groups(s)]
    # the groups the simulator reports
    assert groups == [
        (simulation.RATING_GROUP, False),
        (simulation.SELF_SERVICE_RATING_GROUP, True),
    ]


def test_a_plmn_change_back_to_the_same_network_is_all_charged_on_the_grant(nchf, session) -> None:  # type: ignore[no-untyped-def]
    """HKT to HKT (or there and back between two reports): nothing to re-rate, the grant covers it all."""
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=30 * MB))
    r = nchf.post(
        f"{BASE}/{ref}/update",
        json=message(
            1,
            HK_PLMN,
            {
                INTERNET: {
                    "requestedUnit": {"totalVolume": 10 * MB},
                    "usedUnitContainer": [
                        container(5 * MB, 1, "PLMN_CHANGE"),
                        container(5 * MB, 2),
                    ],
                }
            },
        ),
    )
    assert answer(r, UPDATE)["multipleUnitInformation"][0]["grantedUnit"] == {
        "totalVolume": 10 * MB
    }
    assert remaining(session, hk) == 80 * MB
    assert session.execute(
        select(Grant.used_bytes, Grant.unreserved_bytes).where(Grant.status == "settled")
    ).all() == [(10 * MB, 0)]
    session.rollback()
    assert nchf.post(f"{BASE}/{ref}/release", json=request(2)).status_code == 204
