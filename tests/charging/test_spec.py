"""tongka's Nchf_ConvergedCharging against 3GPP's own OpenAPI files (TS 32.291 Rel-17, in spec/).

What our tests send must be what a packet core sends, and every answer tongka gives must be one
the specification defines for that operation: status, media type and body schema.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import pytest

from tests.charging import factories as f
from tests.charging import spec
from tests.charging import test_api as api_tests
from tests.charging.factories import MAINLAND_PLMN
from tongka.money import MB

BASE = api_tests.BASE
RG = api_tests.RG
HK = {"mcc": "454", "mnc": "00"}
# The operations as the spec's `paths` name them.
CREATE = "/chargingdata"
UPDATE = "/chargingdata/{ChargingDataRef}/update"
RELEASE = "/chargingdata/{ChargingDataRef}/release"


def answer(r, path: str) -> Any:  # type: ignore[no-untyped-def]
    """The JSON of a response after checking it against the spec's answers to POST `path`."""
    body = r.json() if r.content else None
    spec.validate_answer(path, r.status_code, r.headers.get("content-type"), body)
    return body


# --- the vendored files and the validator ---------------------------------------------------------


def _refs(node: Any) -> list[str]:
    """Every "$ref" in a piece of a document."""
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    if not isinstance(node, dict):
        return []
    return [r for k, v in node.items() for r in ([v] if k == "$ref" else _refs(v))]


def test_the_vendored_files_are_exactly_those_the_schemas_reach() -> None:
    resolver = spec.registry().resolver()
    charging = (spec.SPEC / spec.CONVERGED_CHARGING).as_uri()
    todo = [
        f"{charging}#/components/schemas/{name}"
        for name in (
            "ChargingDataRequest",
            "ChargingDataResponse",
            "ChargingNotifyRequest",
            "ChargingNotifyResponse",
        )
    ]
    todo.append(f"{(spec.SPEC / spec.COMMON_DATA).as_uri()}#/components/schemas/ProblemDetails")
    seen: set[str] = set()
    while todo:
        uri = todo.pop()
        if uri not in seen:
            seen.add(uri)
            # Unresolvable here: a file is missing.
            todo += [urljoin(uri, ref) for ref in _refs(resolver.lookup(uri).contents)]
    assert {uri.split("#")[0].rsplit("/", 1)[1] for uri in seen} == {
        p.name for p in spec.SPEC.glob("*.yaml")
    }


def test_the_validator_finds_what_the_specification_forbids() -> None:
    body = api_tests.request(0, gpsi="msisdn-85291234567", requested=MB, used=MB)
    body["pDUSessionChargingInformation"]["pduSessionInformation"]["dnnId"] = "internet"
    assert spec.errors(body, "ChargingDataRequest") == []

    del body["nfConsumerIdentification"]["nodeFunctionality"]
    body["invocationTimeStamp"] = "15/01/2030 08:00"
    body["multipleUnitUsage"][0]["ratingGroup"] = 2**32
    body["pDUSessionChargingInformation"]["pduSessionInformation"]["servingCNPlmnId"]["mcc"] = "45"
    body["pDUSessionChargingInformation"]["userLocationinfo"] = {
        "nrLocation": {"tai": {"plmnId": HK, "tac": "01"}}
    }
    assert sorted(e.split(":")[0] for e in spec.errors(body, "ChargingDataRequest")) == [
        "$.invocationTimeStamp",
        "$.multipleUnitUsage[0].ratingGroup",
        "$.nfConsumerIdentification",
        "$.pDUSessionChargingInformation.pduSessionInformation.servingCNPlmnId.mcc",
        "$.pDUSessionChargingInformation.userLocationinfo.nrLocation",  # ncgi is required
        "$.pDUSessionChargingInformation.userLocationinfo.nrLocation.tai.tac",
    ]


def test_a_charging_notify_request_for_a_reauthorization() -> None:
    spec.validate_notify_request(
        {
            "notificationType": "REAUTHORIZATION",
            "reauthorizationDetails": [
                {"ratingGroup": RG, "quotaManagementIndicator": "ONLINE_CHARGING"}
            ],
        }
    )
    spec.validate_notify_request({"notificationType": "ABORT_CHARGING"})
    assert sorted(
        spec.errors({"reauthorizationDetails": [{"ratingGroup": -1}]}, "ChargingNotifyRequest")
    ) == [
        "$.reauthorizationDetails[0].ratingGroup: -1 is less than the minimum of 0",
        "$: 'notificationType' is a required property",
    ]


# --- what our tests send ----------------------------------------------------------------------------

OUR_REQUESTS = {
    "create by GPSI": api_tests.request(0, gpsi="msisdn-85291234567", requested=30 * MB),
    "create by SUPI": api_tests.request(
        0, supi="imsi-454001234567890", plmn=MAINLAND_PLMN, requested=30 * MB
    ),
    "update": api_tests.request(1, requested=30 * MB, used=20 * MB),
    "release": api_tests.request(2, used=5 * MB),
}


@pytest.mark.parametrize("body", OUR_REQUESTS.values(), ids=OUR_REQUESTS.keys())
def test_the_requests_our_tests_send_are_charging_data_requests(body: dict[str, Any]) -> None:
    spec.validate(body, "ChargingDataRequest")


# --- a session as a real SMF runs it ----------------------------------------------------------------

SMF = {
    "nodeFunctionality": "SMF",
    "nFName": "6c5fd0c2-8f9b-4f0e-9a51-3b0f1c2d7e41",
    "nFIPv4Address": "10.20.0.5",
    "nFPLMNID": HK,
}
AMF = {
    "servingNetworkFunctionInformation": {
        "nodeFunctionality": "AMF",
        "nFName": "0b7d6ac1-4e52-4c43-9b1e-2f0d8c3a9e10",
    }
}
LOCATION = {
    "nrLocation": {
        "tai": {"plmnId": HK, "tac": "00a1b2"},
        "ncgi": {"plmnId": HK, "nrCellId": "00a1b2c01"},
        "ueLocationTimestamp": "2030-01-15T07:59:58Z",
    }
}
ARP = {"priorityLevel": 8, "preemptCap": "NOT_PREEMPT", "preemptVuln": "PREEMPTABLE"}
AMBR = {"uplink": "100 Mbps", "downlink": "300 Mbps"}


def smf_request(
    seq: int, imsi: str, gpsi: str, usage: dict[str, Any], **session_info: Any
) -> dict[str, Any]:
    """A ChargingDataRequest as a 5G SMF sends it for a PDU session on an NR cell in Hong Kong."""
    return {
        "subscriberIdentifier": f"imsi-{imsi}",
        "nfConsumerIdentification": SMF,
        "invocationTimeStamp": f"2030-01-15T08:{seq:02d}:00Z",
        "invocationSequenceNumber": seq,
        "retransmissionIndicator": False,
        "notifyUri": "http://smf1.example/nsmf-convergedcharging/v3/notify/7f3a9c",
        "supportedFeatures": "0",
        "multipleUnitUsage": [
            {"ratingGroup": RG, "uPFID": "3d1b2c4e-5f60-4a7b-8c9d-0e1f2a3b4c5d", **usage}
        ],
        "triggers": [
            {"triggerType": "QUOTA_THRESHOLD", "triggerCategory": "IMMEDIATE_REPORT"},
            {"triggerType": "QUOTA_EXHAUSTED", "triggerCategory": "IMMEDIATE_REPORT"},
            {"triggerType": "VALIDITY_TIME", "triggerCategory": "IMMEDIATE_REPORT"},
            {"triggerType": "PLMN_CHANGE", "triggerCategory": "IMMEDIATE_REPORT"},
            {"triggerType": "RAT_CHANGE", "triggerCategory": "DEFERRED_REPORT"},
            {"triggerType": "USER_LOCATION_CHANGE", "triggerCategory": "DEFERRED_REPORT"},
        ],
        "pDUSessionChargingInformation": {
            "sMFchargingId": "1a2b3c4d",
            "userInformation": {
                "servedGPSI": gpsi,
                "servedPEI": "imeisv-3548620712345601",
                "unauthenticatedFlag": False,
            },
            "userLocationinfo": LOCATION,
            "uetimeZone": "+08:00",
            "pduSessionInformation": {
                "networkSlicingInfo": {"sNSSAI": {"sst": 1, "sd": "000001"}},
                "pduSessionID": 5,
                "pduType": "IPV4V6",
                "sscMode": "SSC_MODE_1",
                "hPlmnId": HK,
                "servingNetworkFunctionID": AMF,
                "ratType": "NR",
                "dnnId": "internet",
                "dnnSelectionMode": "VERIFIED",
                "chargingCharacteristics": "0800",
                "chargingCharacteristicsSelectionMode": "HOME_DEFAULT",
                "startTime": "2030-01-15T07:59:58Z",
                "3gppPSDataOffStatus": "INACTIVE",
                "pduAddress": {
                    "pduIPv4Address": "10.45.0.23",
                    "iPv4dynamicAddressFlag": True,
                    "pduIPv6AddresswithPrefix": "2001:db8:45::17",
                    "pduAddressprefixlength": 64,
                    "iPv6dynamicPrefixFlag": True,
                },
                "authorizedQoSInformation": {"5qi": 9, "arp": ARP, "priorityLevel": 90},
                "subscribedQoSInformation": {"5qi": 9, "arp": ARP},
                "authorizedSessionAMBR": AMBR,
                "subscribedSessionAMBR": AMBR,
                "servingCNPlmnId": HK,
                **session_info,
            },
        },
    }


def used(volume: int, seq: int, trigger: str) -> dict[str, Any]:
    """A usedUnitContainer: the volume since the last report, split up and down, with where it was used."""
    return {
        "quotaManagementIndicator": "ONLINE_CHARGING",
        "triggers": [{"triggerType": trigger, "triggerCategory": "IMMEDIATE_REPORT"}],
        "triggerTimestamp": f"2030-01-15T08:{seq:02d}:00Z",
        "time": 60,
        "totalVolume": volume,
        "uplinkVolume": volume // 10,
        "downlinkVolume": volume - volume // 10,
        "localSequenceNumber": seq,
        "pDUContainerInformation": {
            "timeofFirstUsage": "2030-01-15T08:00:01Z",
            "timeofLastUsage": f"2030-01-15T08:{seq:02d}:00Z",
            "userLocationInformation": LOCATION,
            "uetimeZone": "+08:00",
            "rATType": "NR",
            "servingNodeID": [AMF],
            "3gppPSDataOffStatus": "INACTIVE",
        },
    }


def test_a_session_as_a_real_smf_runs_it_is_valid_and_accepted(nchf, session) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    line.imsi = "454001234567891"
    f.bucket(session, line, "hk", 100 * MB)
    imsi, gpsi = line.imsi, api_tests.msisdn(line)
    session.commit()

    create = smf_request(0, imsi, gpsi, {"requestedUnit": {"totalVolume": 30 * MB}})
    spec.validate(create, "ChargingDataRequest")
    r = nchf.post(BASE, json=create)
    assert r.status_code == 201, r.text
    assert answer(r, CREATE)["multipleUnitInformation"][0]["grantedUnit"] == {
        "totalVolume": 30 * MB
    }
    ref = r.headers["location"].rsplit("/", 1)[1]

    update = smf_request(
        1,
        imsi,
        gpsi,
        {"requestedUnit": {}, "usedUnitContainer": [used(24 * MB, 1, "QUOTA_THRESHOLD")]},
    )
    spec.validate(update, "ChargingDataRequest")
    r = nchf.post(f"{BASE}/{ref}/update", json=update)
    assert r.status_code == 200, r.text
    assert answer(r, UPDATE)["multipleUnitInformation"][0]["resultCode"] == "SUCCESS"

    release = smf_request(
        2,
        imsi,
        gpsi,
        {"usedUnitContainer": [used(3 * MB, 2, "FINAL")]},
        sessionStopIndicator=True,
        stopTime="2030-01-15T08:02:00Z",
    )
    spec.validate(release, "ChargingDataRequest")
    r = nchf.post(f"{BASE}/{ref}/release", json=release)
    assert r.status_code == 204, r.text
    answer(r, RELEASE)


# --- every answer tongka gives ---------------------------------------------------------------------


def test_grants_down_to_the_last_unit_are_valid_answers(nchf, session) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    f.bucket(session, line, "hk", 50 * MB)
    gpsi = api_tests.msisdn(line)
    session.commit()

    r = nchf.post(BASE, json=api_tests.request(0, gpsi=gpsi, requested=30 * MB))
    assert r.status_code == 201
    (unit,) = answer(r, CREATE)["multipleUnitInformation"]
    assert (unit["resultCode"], unit["volumeQuotaThreshold"]) == ("SUCCESS", 6 * MB)
    ref = r.headers["location"].rsplit("/", 1)[1]

    r = nchf.post(
        f"{BASE}/{ref}/update", json=api_tests.request(1, requested=30 * MB, used=30 * MB)
    )
    assert r.status_code == 200
    (unit,) = answer(r, UPDATE)["multipleUnitInformation"]
    assert unit["grantedUnit"] == {"totalVolume": 20 * MB}  # the last of the bucket
    assert (
        "finalUnitIndication" in unit
    )  # its shape (TERMINATE, or REDIRECT and where to) is the schema's to check

    r = nchf.post(
        f"{BASE}/{ref}/update", json=api_tests.request(2, requested=30 * MB, used=20 * MB)
    )
    assert r.status_code == 200
    (unit,) = answer(r, UPDATE)["multipleUnitInformation"]
    assert unit["resultCode"] == "QUOTA_LIMIT_REACHED" and "grantedUnit" not in unit

    r = nchf.post(
        f"{BASE}/{ref}/update", json=api_tests.request(2, requested=30 * MB, used=20 * MB)
    )
    assert (r.status_code, answer(r, UPDATE)["multipleUnitInformation"]) == (
        200,
        [unit],
    )  # a retransmission
    assert nchf.post(f"{BASE}/{ref}/release", json=api_tests.request(3)).status_code == 204


def refusals(nchf, session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """tongka's answers to an unknown subscriber and to an unknown network."""
    line = f.line(session)
    f.bucket(session, line, "both", 100 * MB)
    gpsi = api_tests.msisdn(line)
    session.commit()
    return {
        "unknown user": nchf.post(
            BASE, json=api_tests.request(0, gpsi="msisdn-85299999999", requested=MB)
        ),
        "unknown network": nchf.post(
            BASE, json=api_tests.request(0, gpsi=gpsi, plmn="999-99", requested=MB)
        ),
    }


def test_refusals_are_problem_details_with_the_application_error(nchf, session) -> None:  # type: ignore[no-untyped-def]
    r = refusals(nchf, session)
    assert answer(r["unknown user"], CREATE)["cause"] == "USER_UNKNOWN"
    assert answer(r["unknown network"], CREATE)["cause"] == "END_USER_REQUEST_DENIED"


def test_malformed_requests_and_unknown_refs_are_problem_details(nchf, session) -> None:  # type: ignore[no-untyped-def]
    gpsi = api_tests.msisdn(f.line(session))
    session.commit()
    missing = api_tests.request(0, gpsi=gpsi, requested=MB)
    del missing["invocationSequenceNumber"]
    wrong = api_tests.request(0, gpsi=gpsi, requested=MB)
    wrong["multipleUnitUsage"][0]["requestedUnit"]["totalVolume"] = -1
    for r in (
        nchf.post(BASE, content=b"{not json", headers={"content-type": "application/json"}),
        nchf.post(BASE, json=[1, 2]),
        nchf.post(BASE, json=missing),
        nchf.post(BASE, json=wrong),
    ):
        problem = answer(r, CREATE)
        assert (r.status_code, problem["status"]) == (400, 400) and problem["cause"]
        spec.validate(
            problem, "ProblemDetails", spec.COMMON_DATA
        )  # not only "some alternative of the oneOf"

    for path, operation in ((UPDATE, "update"), (RELEASE, "release")):
        r = nchf.post(f"{BASE}/no-such-ref/{operation}", json=api_tests.request(1, used=MB))
        problem = answer(r, path)
        assert (r.status_code, problem["cause"]) == (404, "CONTEXT_NOT_FOUND")
        spec.validate(problem, "ProblemDetails", spec.COMMON_DATA)


def test_information_charging_needs_but_the_spec_leaves_optional_is_charging_failed(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    gpsi = api_tests.msisdn(f.line(session))
    session.commit()
    no_network = api_tests.request(0, gpsi=gpsi, requested=MB)
    del no_network["pDUSessionChargingInformation"]["pduSessionInformation"]["servingCNPlmnId"]
    no_subscriber = api_tests.request(0, requested=MB)
    for body in (no_network, no_subscriber):
        r = nchf.post(BASE, json=body)
        assert (r.status_code, answer(r, CREATE)["cause"]) == (400, "CHARGING_FAILED")


def test_a_border_crossing_as_a_real_smf_reports_it_is_valid_and_charged_in_each_zone(
    nchf, session
) -> None:  # type: ignore[no-untyped-def]
    line = f.line(session)
    line.imsi = "454001234567892"
    hk = f.bucket(session, line, "hk", 100 * MB)
    mainland = f.bucket(session, line, "mainland", 100 * MB)
    imsi, gpsi = line.imsi, api_tests.msisdn(line)
    session.commit()

    r = nchf.post(
        BASE, json=smf_request(0, imsi, gpsi, {"requestedUnit": {"totalVolume": 30 * MB}})
    )
    assert r.status_code == 201, r.text
    assert {"triggerType": "PLMN_CHANGE", "triggerCategory": "IMMEDIATE_REPORT"} in answer(
        r, CREATE
    )["triggers"]
    ref = r.headers["location"].rsplit("/", 1)[1]

    # Over the border at Futian: the SMF closes the container at the change and reports at once.
    china_mobile = {"mcc": "460", "mnc": "00"}
    after = used(MB, 2, "QUOTA_THRESHOLD")
    after["pDUContainerInformation"]["userLocationInformation"] = {
        "nrLocation": {
            "tai": {"plmnId": china_mobile, "tac": "00c1d2"},
            "ncgi": {"plmnId": china_mobile, "nrCellId": "00c1d2c01"},
        }
    }
    crossing = smf_request(
        1,
        imsi,
        gpsi,
        {"requestedUnit": {}, "usedUnitContainer": [used(12 * MB, 1, "PLMN_CHANGE"), after]},
        servingCNPlmnId=china_mobile,
    )
    crossing["triggers"] = [{"triggerType": "PLMN_CHANGE", "triggerCategory": "IMMEDIATE_REPORT"}]
    crossing["pDUSessionChargingInformation"]["userLocationinfo"] = after[
        "pDUContainerInformation"
    ]["userLocationInformation"]
    spec.validate(crossing, "ChargingDataRequest")
    r = nchf.post(f"{BASE}/{ref}/update", json=crossing)
    assert r.status_code == 200, r.text
    assert answer(r, UPDATE)["multipleUnitInformation"][0]["grantedUnit"] == {
        "totalVolume": 10 * MB
    }  # the default ask
    assert (api_tests.remaining(session, hk), api_tests.remaining(session, mainland)) == (
        88 * MB,
        89 * MB,
    )
    assert (
        nchf.post(
            f"{BASE}/{ref}/release",
            json=smf_request(2, imsi, gpsi, {}, servingCNPlmnId=china_mobile),
        ).status_code
        == 204
    )
