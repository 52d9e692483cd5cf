"""Nchf_ConvergedCharging over HTTP: create / update / release as a packet core sends them, on each
backend, with the batches answered in a worker thread and in the worker process `tongka serve` runs."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tongka import clock
from tongka.charging import renew_link
from tongka.charging.models import ChargingAnswer, Grant
from tongka.money import MB

BASE = "/nchf-convergedcharging/v3/chargingdata"
RG = 10


@pytest.fixture(params=["thread", "process"])
def charging_worker(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both workers (tests/charging/conftest.py)."""
    return str(request.param)


def msisdn(line) -> str:  # type: ignore[no-untyped-def]
    return "msisdn-" + line.hk_number.removeprefix("+")


def request(
    seq: int,
    *,
    gpsi: str | None = None,
    supi: str | None = None,
    plmn: str = HK_PLMN,
    requested: int | None = None,
    used: int | None = None,
    rg: int = RG,
) -> dict[str, Any]:
    usage: dict[str, Any] = {"ratingGroup": rg}
    if requested is not None:
        usage["requestedUnit"] = {"totalVolume": requested}
    if used is not None:
        usage["usedUnitContainer"] = [{"totalVolume": used, "localSequenceNumber": seq}]
    mcc, mnc = plmn.split("-")
    body: dict[str, Any] = {
        "nfConsumerIdentification": {
            "nodeFunctionality": "SMF",
            "nFName": "5f8e6b1c-0000-4000-8000-000000000001",
        },
        "invocationTimeStamp": "2030-01-15T08:00:00Z",
        "invocationSequenceNumber": seq,
        "notifyUri": "http://smf.example/notify",
        "multipleUnitUsage": [usage],
        "pDUSessionChargingInformation": {
            "pduSessionInformation": {
                "servingCNPlmnId": {"mcc": mcc, "mnc": mnc},
                "pduSessionID": 5,
                "dnnId": "internet",
            },
        },
    }
    if supi:
        body["subscriberIdentifier"] = supi
    if gpsi:
        body["pDUSessionChargingInformation"]["userInformation"] = {"servedGPSI": gpsi}
    return body


def create(nchf, body: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = nchf.post(BASE, json=body)
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def remaining(session, bucket) -> int:  # type: ignore[no-untyped-def]
    """A bucket's available balance now; the test's transaction ends at once (SQLite: one writer at a time)."""
    session.expire_all()
    value = f.remaining(session, bucket)
    session.rollback()
    return value


def renewal_link(settings: Any, line_id: Any, unit: dict[str, Any]) -> str:
    """The address the phone is sent to, once checked: the line's renewal page, signed by tongka for 24 h."""
    address: str = unit["finalUnitIndication"]["redirectServer"]["redirectServerAddress"]
    parts = urlsplit(address)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"http://testserver/renew/{line_id}"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    key = renew_link.link_key(settings.secret_key.get_secret_value())
    now = clock.now()
    assert renew_link.check(key, line_id, query["exp"], query["sig"], now) == "valid"
    assert abs(int(query["exp"]) - now.timestamp() - 24 * 3600) < 60
    return address


def test_create_update_release_moves_bytes_out_of_the_buckets(nchf, session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()

    r = nchf.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
    assert r.status_code == 201, r.text
    assert r.headers["location"].startswith("http://testserver" + BASE + "/")
    ref = r.headers["location"].rsplit("/", 1)[1]
    assert r.json()["invocationSequenceNumber"] == 1
    (unit,) = r.json()["multipleUnitInformation"]
    assert unit == {
        "resultCode": "SUCCESS",
        "ratingGroup": RG,
        "grantedUnit": {"totalVolume": 30 * MB},
        "validityTime": 600,
        "volumeQuotaThreshold": 6 * MB,
    }
    assert remaining(session, hk) == 70 * MB  # reserved

    r = nchf.post(f"{BASE}/{ref}/update", json=request(2, requested=30 * MB, used=20 * MB))
    assert r.status_code == 200, r.text
    assert r.json()["multipleUnitInformation"][0]["grantedUnit"] == {"totalVolume": 30 * MB}
    assert remaining(session, hk) == 50 * MB  # 20 used, 30 reserved again

    r = nchf.post(f"{BASE}/{ref}/release", json=request(3, used=5 * MB))
    assert (r.status_code, r.content) == (204, b"")
    assert remaining(session, hk) == 75 * MB  # 25 used in all, the rest back
    assert (
        session.scalar(select(func.count()).select_from(Grant).where(Grant.status == "open")) == 0
    )


def test_the_subscriber_by_imsi_and_the_last_grant_redirects_to_renewal(
    nchf, session, settings
) -> None:
    line = f.line(session)
    line.imsi = "454001234567890"
    f.bucket(session, line, "mainland", 10 * MB)
    f.bucket(session, line, "hk", 999 * MB)
    session.commit()

    r = nchf.post(
        BASE, json=request(0, supi="imsi-454001234567890", plmn=MAINLAND_PLMN, requested=30 * MB)
    )
    assert r.status_code == 201, r.text
    (unit,) = r.json()["multipleUnitInformation"]
    assert unit["grantedUnit"] == {"totalVolume": 10 * MB}
    assert unit["finalUnitIndication"] == {
        "finalUnitAction": "REDIRECT",
        "redirectServer": {
            "redirectAddressType": "URL",
            "redirectServerAddress": renewal_link(settings, line.id, unit),
        },
    }
    assert "volumeQuotaThreshold" not in unit
    ref = r.headers["location"].rsplit("/", 1)[1]

    # still on the mainland network: an update names the network the phone is on now
    r = nchf.post(
        f"{BASE}/{ref}/update", json=request(1, plmn=MAINLAND_PLMN, requested=30 * MB, used=10 * MB)
    )
    (unit,) = r.json()["multipleUnitInformation"]
    assert unit == {
        "resultCode": "QUOTA_LIMIT_REACHED",
        "ratingGroup": RG,
        "finalUnitIndication": {
            "finalUnitAction": "REDIRECT",
            "redirectServer": {
                "redirectAddressType": "URL",
                "redirectServerAddress": renewal_link(settings, line.id, unit),
            },
        },
    }
    assert (
        nchf.post(f"{BASE}/{ref}/release", json=request(2, plmn=MAINLAND_PLMN)).status_code == 204
    )


def test_an_unknown_subscriber_is_user_unknown(nchf, session) -> None:
    r = nchf.post(
        BASE, json=request(0, gpsi="msisdn-85299999999", supi="imsi-454009999999999", requested=MB)
    )
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
    assert r.json()["cause"] == "USER_UNKNOWN"


def test_an_unknown_network_is_end_user_request_denied(nchf, session) -> None:
    line = f.line(session)
    f.bucket(session, line, "both", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    r = nchf.post(BASE, json=request(0, gpsi=gpsi, plmn="999-99", requested=MB))
    assert (r.status_code, r.headers["content-type"]) == (403, "application/problem+json")
    assert r.json()["cause"] == "END_USER_REQUEST_DENIED"


def test_real_world_fields_are_accepted_and_ignored(nchf, session) -> None:
    line = f.line(session)
    f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    body = request(0, gpsi=gpsi, requested=MB)
    body["subscriberIdentifier"] = "imsi-454000000000000"  # not on file: the GPSI finds the line
    body["triggers"] = [{"triggerType": "QUOTA_THRESHOLD", "triggerCategory": "IMMEDIATE_REPORT"}]
    body["oneTimeEvent"] = False
    info = body["pDUSessionChargingInformation"]
    info["chargingId"] = 123
    info["userLocationinfo"] = {
        "nrLocation": {
            "tai": {"plmnId": {"mcc": "454", "mnc": "00"}, "tac": "0001"},
            "ncgi": {"plmnId": {"mcc": "454", "mnc": "00"}, "nrCellId": "000000010"},
        }
    }
    info["uetimeZone"] = "+08:00"
    info["userInformation"]["servedPEI"] = "imeisv-4370816125816151"
    info["pduSessionInformation"].update(
        {
            "networkSlicingInfo": {"sNSSAI": {"sst": 1, "sd": "000001"}},
            "pduType": "IPV4",
            "ratType": "NR",
            "dnnId": "internet",
            "sessionStopIndicator": False,
            "pduAddress": {"pduIPv4Address": "10.45.0.2"},
            "authorizedQoSInformation": {
                "5qi": 9,
                "priorityLevel": 8,
                "arp": {
                    "priorityLevel": 8,
                    "preemptCap": "NOT_PREEMPT",
                    "preemptVuln": "PREEMPTABLE",
                },
            },
            "servingNodeID": [{"plmnId": {"mcc": "454", "mnc": "00"}, "amfId": "010041"}],
        }
    )
    body["multipleUnitUsage"][0]["uPFID"] = "5f8e6b1c-0000-4000-8000-000000000002"
    r = nchf.post(BASE, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["multipleUnitInformation"][0]["resultCode"] == "SUCCESS"


def _assert_problem(r, cause: str, param: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["status"], body["cause"], body["title"]) == (400, cause, "Bad Request") and body[
        "detail"
    ]
    if param:
        assert param in [p["param"] for p in body["invalidParams"]]


def test_a_malformed_request_is_a_400_problem(nchf, session) -> None:
    gpsi = msisdn(f.line(session))
    session.commit()
    r = nchf.post(BASE, content=b"{not json", headers={"content-type": "application/json"})
    _assert_problem(r, "INVALID_MSG_FORMAT")
    r = nchf.post(BASE, json=[1, 2])
    _assert_problem(r, "INVALID_MSG_FORMAT")

    body = request(0, gpsi=gpsi, requested=MB)
    del body["invocationSequenceNumber"]
    _assert_problem(nchf.post(BASE, json=body), "MANDATORY_IE_MISSING", "/invocationSequenceNumber")

    body = request(0, gpsi=gpsi, requested=MB)
    body["invocationSequenceNumber"] = "7"
    _assert_problem(
        nchf.post(BASE, json=body), "MANDATORY_IE_INCORRECT", "/invocationSequenceNumber"
    )

    body = request(0, gpsi=gpsi, requested=MB)
    body["multipleUnitUsage"][0]["requestedUnit"]["totalVolume"] = -1
    _assert_problem(
        nchf.post(BASE, json=body),
        "OPTIONAL_IE_INCORRECT",
        "/multipleUnitUsage/0/requestedUnit/totalVolume",
    )

    body = request(0, gpsi=gpsi, requested=MB)
    del body["pDUSessionChargingInformation"]["pduSessionInformation"]
    _assert_problem(nchf.post(BASE, json=body), "CHARGING_FAILED")

    ref = create(nchf, request(0, gpsi=gpsi, requested=MB))
    body = request(1, used=MB)
    del body["multipleUnitUsage"][0]["usedUnitContainer"][0]["localSequenceNumber"]
    _assert_problem(nchf.post(f"{BASE}/{ref}/update", json=body), "OPTIONAL_IE_INCORRECT")


def test_a_retransmitted_update_gets_the_same_answer_and_charges_once(nchf, session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=30 * MB))

    body = request(1, requested=30 * MB, used=25 * MB)
    first = nchf.post(f"{BASE}/{ref}/update", json=body)
    assert first.status_code == 200
    assert remaining(session, hk) == 45 * MB

    again = copy.deepcopy(body)
    again["retransmissionIndicator"] = True
    for repeat in (again, body):  # flagged or not, the same sequence number is the same request
        r = nchf.post(f"{BASE}/{ref}/update", json=repeat)
        assert (r.status_code, r.json()) == (200, first.json())
    assert remaining(session, hk) == 45 * MB

    release = request(2, used=30 * MB)
    assert nchf.post(f"{BASE}/{ref}/release", json=release).status_code == 204
    assert nchf.post(f"{BASE}/{ref}/release", json=release).status_code == 204
    assert remaining(session, hk) == 45 * MB
    assert session.scalar(select(func.count()).select_from(ChargingAnswer)) == 3


def test_update_and_release_of_an_unknown_ref_are_404_problems(nchf, session) -> None:
    for op in ("update", "release"):
        r = nchf.post(f"{BASE}/no-such-ref/{op}", json=request(1, used=MB))
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert json.loads(r.content)["cause"] == "CONTEXT_NOT_FOUND"


def test_a_released_session_takes_no_more_updates(nchf, session) -> None:
    line = f.line(session)
    f.bucket(session, line, "hk", 100 * MB)
    gpsi = msisdn(line)
    session.commit()
    ref = create(nchf, request(0, gpsi=gpsi, requested=MB))
    update = request(1, requested=MB, used=MB // 2)
    first = nchf.post(f"{BASE}/{ref}/update", json=update)
    assert first.status_code == 200
    assert nchf.post(f"{BASE}/{ref}/release", json=request(2, used=MB)).status_code == 204
    assert nchf.post(f"{BASE}/{ref}/update", json=request(3, requested=MB)).status_code == 404
    assert nchf.post(f"{BASE}/{ref}/release", json=request(4)).status_code == 404
    # An update sent again after the release still gets the answer it was given (worker.py sends
    # a batch again after its worker died: it must not find a different answer).
    again = nchf.post(f"{BASE}/{ref}/update", json=update)
    assert (again.status_code, again.json()) == (200, first.json())
