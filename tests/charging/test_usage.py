"""Usage per line, day (Hong Kong time), zone and network, and GET /api/v1/lines/{line_id}/usage: on each backend."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from tests import factories as app_f
from tests.charging import calls
from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tests.charging.test_api import BASE, msisdn, request
from tests.ledger.factories import T0
from tongka.charging.models import ChargingSession, Network, UsageDay
from tongka.money import MB

RG = 10
T0_DAY = date(2030, 1, 15)  # T0 is 08:00 UTC, 16:00 in Hong Kong


def owned_line(client, session, language: str = "en"):  # type: ignore[no-untyped-def]
    """A line (with buckets in both zones) of a new subscriber, and that subscriber's auth headers."""
    account = app_f.register(client, language=language)
    headers = app_f.login(client, account["username"])
    line = f.line(session)
    line.account_id = uuid.UUID(account["id"])
    f.bucket(session, line, "hk", 500 * MB)
    f.bucket(session, line, "mainland", 500 * MB)
    session.commit()
    return line, headers


def operator(session, plmn: str) -> str:  # type: ignore[no-untyped-def]
    value = session.get(Network, plmn).operator
    session.rollback()
    return value  # type: ignore[no-any-return]


def use(session, line, plmn: str, granted: int, used: int):  # type: ignore[no-untyped-def]
    """Open a session on `plmn`, take a grant and report `used` against it, committed."""
    cs = f.open_session(session, line, plmn)
    result = calls.request_quota(session, cs, RG, granted, 600, T0)
    usage = calls.report_usage(session, result.grant, used)
    session.commit()
    return usage


def usage(client, line, headers, **query: str):  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/lines/{line.id}/usage", params=query, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_usage_reported_over_nchf_shows_per_day_zone_and_network(client, nchf, session) -> None:
    line, headers = owned_line(client, session)
    gpsi = msisdn(line)
    r = nchf.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
    ref = r.headers["location"].rsplit("/", 1)[1]
    update = request(2, gpsi=gpsi, requested=30 * MB, used=20 * MB)
    assert nchf.post(f"{BASE}/{ref}/update", json=update).status_code == 200
    # The network retransmits the update: the same answer, the usage is not counted again.
    assert nchf.post(f"{BASE}/{ref}/update", json=update).status_code == 200
    assert (
        nchf.post(f"{BASE}/{ref}/release", json=request(3, gpsi=gpsi, used=5 * MB)).status_code
        == 204
    )

    body = usage(client, line, headers)
    assert body == {
        "line_id": str(line.id),
        "from": str(T0_DAY - timedelta(days=29)),
        "to": str(T0_DAY),
        "total_bytes": 25 * MB,
        "days": [
            {
                "day": str(T0_DAY),
                "total_bytes": 25 * MB,
                "zones": {"mainland": 0, "hk": 25 * MB},
                "networks": [
                    {
                        "plmn": HK_PLMN,
                        "operator": operator(session, HK_PLMN),
                        "zone": "hk",
                        "bytes": 25 * MB,
                    }
                ],
            }
        ],
    }


def test_two_networks_in_one_day_and_usage_beyond_the_grant(client, session) -> None:
    line, headers = owned_line(client, session)
    use(session, line, HK_PLMN, 10 * MB, 4 * MB)
    beyond = use(
        session, line, MAINLAND_PLMN, 10 * MB, 15 * MB
    )  # 5 MB beyond the grant: still used
    assert beyond.unreserved_bytes == 5 * MB
    use(session, line, HK_PLMN, 10 * MB, 3 * MB)  # the same network again: the same row
    use(session, line, HK_PLMN, 10 * MB, 0)  # nothing used: no row of its own

    (day,) = usage(client, line, headers)["days"]
    assert day["total_bytes"] == 22 * MB
    assert day["zones"] == {"mainland": 15 * MB, "hk": 7 * MB}
    assert day["networks"] == [
        {
            "plmn": MAINLAND_PLMN,
            "operator": operator(session, MAINLAND_PLMN),
            "zone": "mainland",
            "bytes": 15 * MB,
        },
        {"plmn": HK_PLMN, "operator": operator(session, HK_PLMN), "zone": "hk", "bytes": 7 * MB},
    ]
    assert len(session.scalars(select(UsageDay).where(UsageDay.line_id == line.id)).all()) == 2
    session.rollback()


def test_settling_a_grant_twice_counts_its_usage_once(client, session) -> None:
    line, headers = owned_line(client, session)
    cs = f.open_session(session, line, HK_PLMN)
    grant = calls.request_quota(session, cs, RG, 10 * MB, 600, T0).grant
    calls.report_usage(session, grant, 6 * MB)
    again = calls.report_usage(session, grant, 6 * MB)
    session.commit()

    assert again.already_settled
    assert usage(client, line, headers)["total_bytes"] == 6 * MB


def test_the_day_turns_at_midnight_hong_kong_time(client, session, frozen_clock) -> None:
    line, headers = owned_line(client, session)
    frozen_clock.now = datetime(2030, 1, 15, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Hong Kong
    use(session, line, HK_PLMN, 10 * MB, 1 * MB)
    frozen_clock.advance(seconds=1)  # 00:00:00 on the 16th in Hong Kong (still the 15th in UTC)
    use(session, line, MAINLAND_PLMN, 10 * MB, 2 * MB)

    body = usage(client, line, headers)
    assert body["to"] == "2030-01-16"
    assert [(d["day"], d["total_bytes"], d["zones"]) for d in body["days"]] == [
        ("2030-01-16", 2 * MB, {"mainland": 2 * MB, "hk": 0}),
        ("2030-01-15", 1 * MB, {"mainland": 0, "hk": 1 * MB}),
    ]
    only_the_15th = usage(client, line, headers, **{"from": "2030-01-15", "to": "2030-01-15"})
    assert [d["day"] for d in only_the_15th["days"]] == ["2030-01-15"]
    assert only_the_15th["total_bytes"] == 1 * MB


def test_the_default_range_is_the_last_30_days(client, session, frozen_clock) -> None:
    line, headers = owned_line(client, session)
    for days_ago in (30, 29, 0):
        frozen_clock.now = T0 - timedelta(days=days_ago)
        use(session, line, HK_PLMN, 10 * MB, (days_ago + 1) * MB)
    frozen_clock.now = T0

    body = usage(client, line, headers)
    assert [d["day"] for d in body["days"]] == [str(T0_DAY), str(T0_DAY - timedelta(days=29))]
    assert body["total_bytes"] == 31 * MB
    assert usage(client, line, headers, to=str(T0_DAY - timedelta(days=1)))["from"] == str(
        T0_DAY - timedelta(days=30)
    )


def test_only_the_lines_owner_sees_its_usage(client, session) -> None:
    line, _owner = owned_line(client, session)
    stranger = app_f.subscriber(client)
    r = client.get(f"/api/v1/lines/{line.id}/usage", headers=stranger)
    assert (r.status_code, r.json()["code"]) == (404, "line_not_found")
    r = client.get(f"/api/v1/lines/{uuid.uuid4()}/usage", headers=stranger)
    assert (r.status_code, r.json()["code"]) == (404, "line_not_found")
    assert client.get(f"/api/v1/lines/{line.id}/usage").status_code == 401


def test_bad_ranges_are_refused(client, session) -> None:
    line, headers = owned_line(client, session, language="zh-Hans")
    url = f"/api/v1/lines/{line.id}/usage"
    for query in (
        {"from": "2030-01-15", "to": "2030-01-14"},  # ends before it starts
        {"from": "2029-01-14", "to": "2030-01-15"},  # 367 days
        {"from": "2028-01-01"},  # to today: far more than 366 days
    ):
        r = client.get(url, params=query, headers=headers)
        assert (r.status_code, r.json()["code"]) == (422, "usage_range_invalid"), (query, r.text)
        assert r.json()["detail"] == "查询时段的结束日期不得早于开始日期，且最长 366 天。"
    r = client.get(url, params={"from": "15/01/2030"}, headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = client.get(
        url, params={"from": "2029-01-15", "to": "2030-01-15"}, headers=headers
    )  # 366 days
    assert r.status_code == 200, r.text


def test_two_transactions_starting_a_days_row_at_once_both_count(sessions, session, db_url) -> None:
    """PostgreSQL: the second INSERT ... ON CONFLICT waits for the first, then adds to its row."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no race to lose")
    line = f.line(session)
    cs_id = f.open_session(session, line, HK_PLMN).id
    session.commit()
    with sessions() as a, sessions() as b:
        cs = a.get_one(ChargingSession, cs_id)
        calls.add_usage(a, cs.line_id, cs.zone, cs.plmn, T0_DAY, 1 * MB)  # inserted, not committed

        def second() -> None:
            calls.add_usage(b, cs.line_id, cs.zone, cs.plmn, T0_DAY, 2 * MB)  # waits for `a`
            b.commit()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        a.commit()
        thread.join(10)
        assert not thread.is_alive()
    rows = session.scalars(select(UsageDay).where(UsageDay.line_id == line.id)).all()
    assert [(r.day, r.bytes) for r in rows] == [(T0_DAY, 3 * MB)]
    session.rollback()
