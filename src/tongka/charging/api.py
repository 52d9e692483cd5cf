"""Online charging over HTTP: 3GPP TS 32.291 Nchf_ConvergedCharging (API v3), as a packet core calls it.

Who may call: the network (the SMF/PGW-C of the packet core). In production mutual TLS
in front of tongka admits only the packet core; there is no bearer token here.

Create opens a charging session (its `chargingDataRef` is named in `Location`), update
settles the usage reported against each rating group's open grant and grants the next
quota, release settles the final usage and ends the session. Every answer is kept by
(session, `invocationSequenceNumber`): a request that comes again with the same number
gets the same answer and charges nothing again. Errors are 3GPP ProblemDetails with a
`cause` (TS 29.500 / TS 32.291), in English: they are read by machines and their operators.

Usage beyond a grant is charged (buckets, overage, else owed: `service.charge_usage`).
When a line's quota runs out, the last grant carries a final unit indication REDIRECT to
the line's renewal page. A create sent again (the same body, whatever its
`retransmissionIndicator`) finds the session the first one opened and gets its answer.
The `notifyUri` of an open session is kept; `notify.py` calls it (REAUTHORIZATION) when a
renewal or a change of overage gives the line new quota.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Line
from tongka.charging import service as charging
from tongka.charging.models import ChargingAnswer, ChargingSession
from tongka.charging.schemas import (
    MANDATORY,
    ChargingDataRequest,
    ChargingDataResponse,
    ProblemDetails,
)
from tongka.config import Settings
from tongka.deps import SessionDep, SettingsDep
from tongka.money import MB

log = structlog.get_logger()

PROBLEM = "application/problem+json"
VALIDITY_SECONDS = 600  # validityTime of each grant
DEFAULT_REQUEST_BYTES = 10 * MB  # when requestedUnit names no totalVolume
THRESHOLD_SHARE = 5  # volumeQuotaThreshold: ask again when a fifth of the grant is left

# Application errors (ProblemDetails `cause`, TS 32.291 table 6.1.7.3-1) of a create that cannot open a session.
USER_UNKNOWN = "USER_UNKNOWN"
END_USER_REQUEST_DENIED = "END_USER_REQUEST_DENIED"
WHO = "The network (packet core), over mutual TLS in production: "


def problem(status_code: int, title: str, detail: str, cause: str, invalid: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"title": title, "status": status_code, "detail": detail, "cause": cause}
    if invalid:
        body["invalidParams"] = invalid
    return JSONResponse(body, status_code=status_code, media_type=PROBLEM)


def _pointer(loc: tuple[Any, ...]) -> str:
    return "/" + "/".join(str(p) for p in loc[1:] if p != "body") if len(loc) > 1 else "/"


class NchfRoute(APIRoute):
    """A malformed request is a 400 ProblemDetails with a 3GPP cause, not the app's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return _malformed(error.errors())

        return route


def _malformed(errors: Any) -> JSONResponse:
    errors = list(errors)
    if any(e["type"] == "json_invalid" or len(e["loc"]) <= 1 for e in errors):  # not JSON, not an object, no body
        return problem(400, "Bad Request", "The body is not a JSON ChargingDataRequest.", "INVALID_MSG_FORMAT")
    invalid = [{"param": _pointer(tuple(e["loc"])), "reason": e["msg"]} for e in errors]
    top = {str(e["loc"][1]) for e in errors if len(e["loc"]) > 1}
    missing = any(e["type"] == "missing" and len(e["loc"]) == 2 for e in errors)
    if top & MANDATORY:
        cause = "MANDATORY_IE_MISSING" if missing else "MANDATORY_IE_INCORRECT"
    else:
        cause = "OPTIONAL_IE_INCORRECT"
    detail = "Check these fields: " + ", ".join(dict.fromkeys(i["param"] for i in invalid))
    return problem(400, "Bad Request", detail, cause, invalid)


router = APIRouter(prefix="/nchf-convergedcharging/v3", tags=["charging (network)"], route_class=NchfRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProblemDetails, "description": "Malformed request"},
    404: {"model": ProblemDetails, "description": "Unknown charging data ref"},
}


@router.post(
    "/chargingdata",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargingDataResponse,
    responses={
        **_ERRORS,
        403: {"model": ProblemDetails, "description": "cause END_USER_REQUEST_DENIED: network unknown or not served, line not active"},
        404: {"model": ProblemDetails, "description": "cause USER_UNKNOWN: no line with this SUPI/GPSI"},
    },
    description=WHO + "open a charging session for a subscriber's PDU session on a serving network "
    "(Nchf_ConvergedCharging_Create) and grant the quota requested per rating group.",
)
def create(body: ChargingDataRequest, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    plmn = body.plmn()
    if plmn is None:
        return problem(
            400, "Bad Request", "pDUSessionChargingInformation.pduSessionInformation.servingCNPlmnId is required.",
            "CHARGING_FAILED",  # optional in the schema, needed to charge: TS 32.291 table 6.1.7.3-1
            [{"param": "/pDUSessionChargingInformation/pduSessionInformation/servingCNPlmnId", "reason": "missing"}],
        )
    if not body.identities():
        return problem(
            400, "Bad Request", "Name the subscriber in subscriberIdentifier or userInformation.servedGPSI.",
            "CHARGING_FAILED", [{"param": "/subscriberIdentifier", "reason": "missing"}],
        )
    line = _line_for(session, body.identities())
    if line is None:
        return problem(404, "Not Found", "No line has this SUPI or GPSI.", USER_UNKNOWN)
    key = _create_key(body)
    if (again := _created_before(session, request, key)) is not None:
        return again
    try:
        charging_session = charging.open_session(
            session, line, plmn, uuid.uuid4().hex, notify_uri=body.notifyUri, create_key=key
        )
    except charging.ChargingSessionExists:  # the same create, committed meanwhile by another worker
        again = _created_before(session, request, key)
        assert again is not None
        return again
    except (charging.UnknownNetwork, charging.NetworkNotServed, charging.LineNotActive) as refusal:
        log.info("charging_refused", plmn=plmn, line_id=str(line.id), reason=refusal.code)
        return problem(403, "Forbidden", f"Charging refused: {refusal.code}.", END_USER_REQUEST_DENIED)
    answer = _answer(body, _grant_all(session, charging_session, body, settings))
    _keep(session, charging_session, body, 201, answer)
    return JSONResponse(answer, status_code=201, headers={"Location": _location(request, charging_session)})


@router.post(
    "/chargingdata/{ChargingDataRef}/update",
    response_model=ChargingDataResponse,
    responses=_ERRORS,
    description=WHO + "report the usage of an open charging session against each rating group's grant and "
    "receive the next quota (Nchf_ConvergedCharging_Update). A retransmission gets the same answer.",
)
def update(ChargingDataRef: str, body: ChargingDataRequest, session: SessionDep, settings: SettingsDep) -> Response:
    charging_session = _open_session(session, ChargingDataRef)
    if charging_session is None:
        return _not_found(ChargingDataRef)
    if (kept := _kept(session, charging_session, body)) is not None:
        return kept
    _settle_usage(session, charging_session, body)
    answer = _answer(body, _grant_all(session, charging_session, body, settings))
    _keep(session, charging_session, body, 200, answer)
    return JSONResponse(answer, status_code=200)


@router.post(
    "/chargingdata/{ChargingDataRef}/release",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ERRORS,
    description=WHO + "report the final usage and end the charging session (Nchf_ConvergedCharging_Release); "
    "what was granted and not used goes back to the line's buckets.",
)
def release(ChargingDataRef: str, body: ChargingDataRequest, session: SessionDep) -> Response:
    charging_session = _open_session(session, ChargingDataRef, released_too=True)
    if charging_session is None:
        return _not_found(ChargingDataRef)
    if (kept := _kept(session, charging_session, body)) is not None:
        return kept
    if charging_session.status != "open":
        return _not_found(ChargingDataRef)
    _settle_usage(session, charging_session, body)
    charging.release(session, charging_session)
    _keep(session, charging_session, body, 204, None)
    return Response(status_code=204)


# --- helpers ------------------------------------------------------------------------------


def _line_for(session: Session, identities: list[str]) -> Line | None:
    """The line named by SUPI ("imsi-<digits>") or GPSI ("msisdn-<digits>", E.164 without the +)."""
    for identity in identities:
        kind, _sep, digits = identity.partition("-")
        if not digits.isdigit():
            continue
        if kind == "imsi":
            line = session.scalar(select(Line).where(Line.imsi == digits))
        elif kind == "msisdn":
            number = "+" + digits
            line = session.scalar(select(Line).where(or_(Line.hk_number == number, Line.cn_number == number)))
        else:
            continue
        if line is not None:
            return line
    return None


def _open_session(session: Session, ref: str, *, released_too: bool = False) -> ChargingSession | None:
    """The charging session `ref`, its row locked for the rest of the request (retransmissions queue here)."""
    charging_session = session.scalar(
        select(ChargingSession).where(ChargingSession.charging_data_ref == ref).with_for_update()
    )
    if charging_session is None or (charging_session.status != "open" and not released_too):
        return None
    return charging_session


def _create_key(body: ChargingDataRequest) -> str:
    """What makes a create the same create sent again.

    With a charging id (which the SMF gives each PDU session): the sending NF, that id, the
    PDU session id, the subscriber and the sequence number, so a copy re-stamped on resending
    is still recognised. Without one: the whole message but its retransmission flag.
    """
    message = body.model_dump(mode="json", exclude={"retransmissionIndicator"})
    info = message.get("pDUSessionChargingInformation") or {}
    charging_id = info.get("sMFchargingId", info.get("chargingId"))
    if charging_id is not None:
        nf = message["nfConsumerIdentification"]
        message = {
            "nf": [nf.get(k) for k in ("nFName", "nFIPv4Address", "nFIPv6Address", "nFFqdn", "nodeFunctionality")],
            "chargingId": charging_id,
            "pduSessionID": (info.get("pduSessionInformation") or {}).get("pduSessionID"),
            "subscriber": body.identities(),
            "invocationSequenceNumber": body.invocationSequenceNumber,
        }
    return hashlib.sha256(json.dumps(message, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _created_before(session: Session, request: Request, key: str) -> Response | None:
    """The answer already given to this very create, if it came before, with its Location."""
    earlier = session.scalar(select(ChargingSession).where(ChargingSession.create_key == key))
    if earlier is None:
        return None
    kept = session.scalars(
        select(ChargingAnswer).where(ChargingAnswer.charging_session_id == earlier.id)
        .order_by(ChargingAnswer.created_at, ChargingAnswer.invocation_sequence_number).limit(1)
    ).one()
    log.info("charging_retransmission", ref=earlier.charging_data_ref, seq=kept.invocation_sequence_number)
    return JSONResponse(kept.answer, status_code=kept.status_code, headers={"Location": _location(request, earlier)})


def _location(request: Request, charging_session: ChargingSession) -> str:
    return str(request.url_for("update", ChargingDataRef=charging_session.charging_data_ref)).removesuffix("/update")


def _kept(session: Session, charging_session: ChargingSession, body: ChargingDataRequest) -> Response | None:
    kept = session.get(ChargingAnswer, (charging_session.id, body.invocationSequenceNumber))
    if kept is None:
        return None
    log.info("charging_retransmission", ref=charging_session.charging_data_ref, seq=body.invocationSequenceNumber)
    if kept.answer is None:
        return Response(status_code=kept.status_code)
    return JSONResponse(kept.answer, status_code=kept.status_code)


def _keep(session: Session, charging_session: ChargingSession, body: ChargingDataRequest, code: int, answer: Any) -> None:
    session.add(ChargingAnswer(
        charging_session_id=charging_session.id, invocation_sequence_number=body.invocationSequenceNumber,
        status_code=code, answer=answer,
    ))
    session.flush()


def _settle_usage(session: Session, charging_session: ChargingSession, body: ChargingDataRequest) -> None:
    """Each rating group's reported usage (all its containers) settles its open grants; the excess is charged."""
    used: dict[int, int] = {}
    for usage in body.multipleUnitUsage:
        if usage.usedUnitContainer:
            used[usage.ratingGroup] = used.get(usage.ratingGroup, 0) + sum(
                c.totalVolume or 0 for c in usage.usedUnitContainer
            )
    for rating_group, volume in used.items():
        excess = charging.settle_usage(session, charging_session, rating_group, volume)
        if excess is not None:
            log.info(
                "charging_usage_beyond_grant", ref=charging_session.charging_data_ref, rating_group=rating_group,
                from_buckets=excess.from_buckets, overage_bytes=excess.overage_bytes, owed_bytes=excess.owed_bytes,
            )


def _grant_all(
    session: Session, charging_session: ChargingSession, body: ChargingDataRequest, settings: Settings
) -> list[dict[str, Any]]:
    now = clock.now()
    units = []
    for usage in body.multipleUnitUsage:
        if usage.requestedUnit is None:
            continue
        requested = usage.requestedUnit.totalVolume or DEFAULT_REQUEST_BYTES
        result = charging.request_quota(session, charging_session, usage.ratingGroup, requested, VALIDITY_SECONDS, now)
        unit: dict[str, Any] = {"resultCode": result.result_code, "ratingGroup": usage.ratingGroup}
        if result.granted_bytes:
            unit["grantedUnit"] = {"totalVolume": result.granted_bytes}
            unit["validityTime"] = VALIDITY_SECONDS
            if not result.final_unit:
                unit["volumeQuotaThreshold"] = result.granted_bytes // THRESHOLD_SHARE
        if result.final_unit:
            # Data stops, and the phone's browser is sent to the line's renewal page.
            unit["finalUnitIndication"] = {
                "finalUnitAction": "REDIRECT",
                "redirectServer": {
                    "redirectAddressType": "URL",
                    "redirectServerAddress": renewal_url(settings, charging_session.line_id),
                },
            }
        units.append(unit)
    return units


def renewal_url(settings: Settings, line_id: uuid.UUID) -> str:
    return f"{settings.public_base_url.rstrip('/')}/renew/{line_id}"


def _answer(body: ChargingDataRequest, units: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "invocationTimeStamp": clock.now().isoformat().replace("+00:00", "Z"),
        "invocationSequenceNumber": body.invocationSequenceNumber,
        "multipleUnitInformation": units,
    }


def _not_found(ref: str) -> JSONResponse:
    return problem(404, "Not Found", f"No open charging session {ref}.", "CONTEXT_NOT_FOUND")
