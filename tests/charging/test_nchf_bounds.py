"""Nchf messages are bounded: volumes a 64-bit column can sum, lists of a sane length, a notifyUri
that is a network function's URL; anything beyond is a 400 ProblemDetails at parse, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.charging import factories as f
from tests.charging.test_api import BASE, _assert_problem, create, msisdn, request
from tongka.charging.models import ChargingAnswer
from tongka.charging.schemas import MAX_LIST, MAX_VOLUME
from tongka.money import MB

U64_MAX = 18446744073709551615


def _open(nchf, session) -> str:  # type: ignore[no-untyped-def]
    line = f.line(session)
    f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    return create(nchf, request(0, gpsi=gpsi, requested=MB))


@pytest.mark.parametrize("used", [U64_MAX, 2**63, MAX_VOLUME + 1])
def test_a_used_volume_beyond_the_bound_is_a_400_not_a_500(nchf, session, used: int) -> None:
    ref = _open(nchf, session)
    r = nchf.post(f"{BASE}/{ref}/update", json=request(1, requested=MB, used=used))
    _assert_problem(
        r, "OPTIONAL_IE_INCORRECT", "/multipleUnitUsage/0/usedUnitContainer/0/totalVolume"
    )
    # Nothing was charged or kept: the same sequence number with a sane report is answered afresh.
    kept = (
        select(func.count())
        .select_from(ChargingAnswer)
        .where(ChargingAnswer.invocation_sequence_number == 1)
    )
    assert session.scalar(kept) == 0
    session.rollback()  # SQLite: one writer at a time, and the test's read would be it
    r = nchf.post(f"{BASE}/{ref}/update", json=request(1, requested=MB, used=MB))
    assert r.status_code == 200, r.text


def test_the_largest_volume_allowed_is_charged(nchf, session) -> None:
    """MAX_VOLUME in every container of every rating group of a message: sums stay within 64 bits."""
    ref = _open(nchf, session)
    body = request(1, used=MAX_VOLUME)
    body["multipleUnitUsage"][0]["usedUnitContainer"] = [
        {"totalVolume": MAX_VOLUME, "localSequenceNumber": n} for n in range(MAX_LIST)
    ]
    r = nchf.post(f"{BASE}/{ref}/update", json=body)
    assert r.status_code == 200, r.text


def test_a_requested_volume_beyond_the_bound_is_a_400(nchf, session) -> None:
    ref = _open(nchf, session)
    r = nchf.post(f"{BASE}/{ref}/update", json=request(1, requested=U64_MAX))
    _assert_problem(r, "OPTIONAL_IE_INCORRECT", "/multipleUnitUsage/0/requestedUnit/totalVolume")


def _many(n: int) -> list[dict[str, Any]]:
    return [{"ratingGroup": rg, "requestedUnit": {"totalVolume": 1}} for rg in range(n)]


def test_too_many_rating_groups_containers_or_triggers_are_a_400(nchf, session) -> None:
    ref = _open(nchf, session)

    body = request(1)
    body["multipleUnitUsage"] = _many(MAX_LIST + 1)
    _assert_problem(
        nchf.post(f"{BASE}/{ref}/update", json=body), "OPTIONAL_IE_INCORRECT", "/multipleUnitUsage"
    )

    body = request(1, used=1)
    body["multipleUnitUsage"][0]["usedUnitContainer"] *= MAX_LIST + 1
    _assert_problem(
        nchf.post(f"{BASE}/{ref}/update", json=body),
        "OPTIONAL_IE_INCORRECT",
        "/multipleUnitUsage/0/usedUnitContainer",
    )

    # Lists tongka does not read (triggers) are bounded too, at every level.
    trigger = {"triggerType": "QUOTA_THRESHOLD", "triggerCategory": "IMMEDIATE_REPORT"}
    body = request(1, used=1)
    body["triggers"] = [trigger] * (MAX_LIST + 1)
    _assert_problem(
        nchf.post(f"{BASE}/{ref}/update", json=body), "OPTIONAL_IE_INCORRECT", "/triggers"
    )
    body = request(1, used=1)
    body["multipleUnitUsage"][0]["usedUnitContainer"][0]["triggers"] = [trigger] * (MAX_LIST + 1)
    _assert_problem(
        nchf.post(f"{BASE}/{ref}/update", json=body),
        "OPTIONAL_IE_INCORRECT",
        "/multipleUnitUsage/0/usedUnitContainer/0/triggers",
    )

    body = request(1, used=1)
    body["multipleUnitUsage"] = _many(MAX_LIST)  # at the bound: answered
    body["triggers"] = [trigger] * MAX_LIST
    assert nchf.post(f"{BASE}/{ref}/update", json=body).status_code == 200
