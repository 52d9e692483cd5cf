"""Online charging over HTTP: 3GPP TS 32.291 Nchf_ConvergedCharging (API v3), as a packet core calls it.

Who may call: the network (the SMF/PGW-C of the packet core), on the Nchf listener only
(`nchf_app.py`), with the NRF's access token (`nf_auth.py`) and, where configured, a client
certificate (mutual TLS).

Create opens a charging session (its `chargingDataRef` is named in `Location`), update
settles the usage reported against each rating group's open grant and grants the next
quota, release settles the final usage and ends the session. Every answer is kept by
(session, `invocationSequenceNumber`): a request that comes again with the same number
gets the same answer and charges nothing again. The routes only read the request and
write the answer: the charging itself is done by the charging worker (`worker.py`) in batches
(`nchf.py`), many requests per transaction, committed before any of them is answered. Errors are 3GPP ProblemDetails with a
`cause` (TS 29.500 / TS 32.291), in English: they are read by machines and their operators.

Usage beyond a grant is charged (buckets, overage, else owed: `service.charge_usage`).
When a line's quota runs out, the last grant carries a final unit indication REDIRECT to
the line's renewal page. A create sent again (the same body, whatever its
`retransmissionIndicator`) finds the session the first one opened and gets its answer.
Every create and update answer arms the PLMN_CHANGE trigger (IMMEDIATE_REPORT). An update or
release naming another serving network (`servingCNPlmnId`, else the user location's PLMN) than
the session's is a border crossing: each rating group's containers up to the last one closed by
PLMN_CHANGE are charged in the old network's zone, those after it in the new one's, and the new
quota comes from the new zone (`nchf._Answering.cross_if_moved`). A network unknown or not served
gets no quota: each requested unit is END_USER_SERVICE_DENIED, its usage still charged. Rating
groups are independent; zero-rated ones (`tongka rating-groups`) are granted to an active line
with no data and never charged.
The `notifyUri` of an open session is kept; `notify.py` calls it (REAUTHORIZATION) when a
renewal or a change of overage gives the line new quota, if it leads to a network function
(`outbound.py`): one that never can (not http(s), an address not allowed) is a 400.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from tongka import outbound
from tongka.charging.nchf import Op, Outcome
from tongka.charging.schemas import (
    MANDATORY,
    ChargingDataRequest,
    ChargingDataResponse,
    ProblemDetails,
)
from tongka.charging.worker import ChargingWorker
from tongka.money import MB

PROBLEM = "application/problem+json"
DEFAULT_REQUEST_BYTES = 10 * MB  # when requestedUnit names no totalVolume
WHO = "The network (packet core), with an NRF access token: "


def problem(
    status_code: int,
    title: str,
    detail: str,
    cause: str,
    invalid: list[dict[str, str]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"title": title, "status": status_code, "detail": detail, "cause": cause}
    if invalid:
        body["invalidParams"] = invalid
    return JSONResponse(body, status_code=status_code, media_type=PROBLEM)


def _pointer(loc: tuple[Any, ...]) -> str:
    return "/" + "/".join(str(p) for p in loc[1:] if p != "body") if len(loc) > 1 else "/"


class NchfRoute(APIRoute):
    """The network's routes: the body parsed straight from its bytes into a ChargingDataRequest, and a
    malformed request a 400 ProblemDetails with a 3GPP cause, not the app's 422.

    The hot path of the packet core skips FastAPI's general parameter solving (a third of the
    server's time per request, bench/README.md): an endpoint here takes its path parameters,
    `body` and `request`, by those names. Its signature still declares them, so the OpenAPI
    document is FastAPI's own.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def route(request: Request) -> Response:
            try:
                body = ChargingDataRequest.model_validate_json(await request.body())
            except ValidationError as error:  # located as FastAPI locates body errors
                return _malformed([{**e, "loc": ("body", *e["loc"])} for e in error.errors()])
            if body.notifyUri is not None and (refused := _notify_refusal(request, body.notifyUri)):
                return problem(
                    400,
                    "Bad Request",
                    f"notifyUri: {refused}.",
                    "OPTIONAL_IE_INCORRECT",
                    [{"param": "/notifyUri", "reason": refused}],
                )
            return await endpoint(body=body, request=request, **request.path_params)

        return route


def _notify_refusal(request: Request, uri: str) -> str | None:
    """Why tongka would never call this notifyUri (not http(s), an address no network function has), or None."""
    return outbound.refusal(uri, outbound.allowed(request.app.state.settings))


def _malformed(errors: Any) -> JSONResponse:
    errors = list(errors)
    if any(
        e["type"] == "json_invalid" or len(e["loc"]) <= 1 for e in errors
    ):  # not JSON, not an object, no body
        return problem(
            400, "Bad Request", "The body is not a JSON ChargingDataRequest.", "INVALID_MSG_FORMAT"
        )
    invalid = [{"param": _pointer(tuple(e["loc"])), "reason": e["msg"]} for e in errors]
    top = {str(e["loc"][1]) for e in errors if len(e["loc"]) > 1}
    missing = any(e["type"] == "missing" and len(e["loc"]) == 2 for e in errors)
    if top & MANDATORY:
        cause = "MANDATORY_IE_MISSING" if missing else "MANDATORY_IE_INCORRECT"
    else:
        cause = "OPTIONAL_IE_INCORRECT"
    detail = "Check these fields: " + ", ".join(dict.fromkeys(i["param"] for i in invalid))
    return problem(400, "Bad Request", detail, cause, invalid)


router = APIRouter(
    prefix="/nchf-convergedcharging/v3", tags=["charging (network)"], route_class=NchfRoute
)

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
        403: {
            "model": ProblemDetails,
            "description": "cause END_USER_REQUEST_DENIED: network unknown or not served, line not active",
        },
        404: {
            "model": ProblemDetails,
            "description": "cause USER_UNKNOWN: no line with this SUPI/GPSI",
        },
    },
    description=WHO + "open a charging session for a subscriber's PDU session on a serving network "
    "(Nchf_ConvergedCharging_Create) and grant the quota requested per rating group.",
)
async def create(body: ChargingDataRequest, request: Request) -> Response:
    plmn = body.plmn()
    if plmn is None:
        return problem(
            400,
            "Bad Request",
            "pDUSessionChargingInformation.pduSessionInformation.servingCNPlmnId is required.",
            "CHARGING_FAILED",  # optional in the schema, needed to charge: TS 32.291 table 6.1.7.3-1
            [
                {
                    "param": "/pDUSessionChargingInformation/pduSessionInformation/servingCNPlmnId",
                    "reason": "missing",
                }
            ],
        )
    if not body.identities():
        return problem(
            400,
            "Bad Request",
            "Name the subscriber in subscriberIdentifier or userInformation.servedGPSI.",
            "CHARGING_FAILED",
            [{"param": "/subscriberIdentifier", "reason": "missing"}],
        )
    op = _op(
        "create",
        body,
        identities=body.identities(),
        plmn=plmn,
        notify_uri=body.notifyUri,
        create_key=_create_key(body),
    )
    return _respond(request, await _group(request).submit(op))


@router.post(
    "/chargingdata/{ChargingDataRef}/update",
    response_model=ChargingDataResponse,
    responses=_ERRORS,
    description=WHO
    + "report the usage of an open charging session against each rating group's grant and "
    "receive the next quota (Nchf_ConvergedCharging_Update). A retransmission gets the same answer.",
)
async def update(ChargingDataRef: str, body: ChargingDataRequest, request: Request) -> Response:
    return _respond(
        request,
        await _group(request).submit(_op("update", body, ref=ChargingDataRef, plmn=body.plmn())),
    )


@router.post(
    "/chargingdata/{ChargingDataRef}/release",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ERRORS,
    description=WHO
    + "report the final usage and end the charging session (Nchf_ConvergedCharging_Release); "
    "what was granted and not used goes back to the line's buckets.",
)
async def release(ChargingDataRef: str, body: ChargingDataRequest, request: Request) -> Response:
    return _respond(
        request,
        await _group(request).submit(_op("release", body, ref=ChargingDataRef, plmn=body.plmn())),
    )


# --- helpers ------------------------------------------------------------------------------


def _group(request: Request) -> ChargingWorker:
    charging: ChargingWorker = request.app.state.charging
    return charging


def _op(kind: str, body: ChargingDataRequest, **named: Any) -> Op:
    """What charging needs of a request. Each rating group's containers are split at the last one closed
    by a PLMN_CHANGE: it and those before it were used on the network before the change (`used`), those
    after it on the network the request names (`used_after`). Without one, all is `used`."""
    used: dict[int, int] = {}
    used_after: dict[int, int] = {}
    for usage in body.multipleUnitUsage:
        if usage.usedUnitContainer:
            containers = usage.usedUnitContainer
            cut = max(
                (i + 1 for i, c in enumerate(containers) if c.closed_by_plmn_change),
                default=len(containers),
            )
            group = usage.ratingGroup
            used[group] = used.get(group, 0) + sum(c.totalVolume or 0 for c in containers[:cut])
            if cut < len(containers):
                used_after[group] = used_after.get(group, 0) + sum(
                    c.totalVolume or 0 for c in containers[cut:]
                )
    requested = (
        [
            (usage.ratingGroup, usage.requestedUnit.totalVolume or DEFAULT_REQUEST_BYTES)
            for usage in body.multipleUnitUsage
            if usage.requestedUnit is not None
        ]
        if kind != "release"
        else []
    )
    return Op(kind, body.invocationSequenceNumber, used, requested, used_after=used_after, **named)


def _respond(request: Request, outcome: Outcome) -> Response:
    if outcome.body is None:
        return Response(status_code=outcome.status)
    if outcome.problem:
        return JSONResponse(outcome.body, status_code=outcome.status, media_type=PROBLEM)
    headers = None
    if outcome.status == 201 and outcome.ref:
        location = str(request.url_for("update", ChargingDataRef=outcome.ref)).removesuffix(
            "/update"
        )
        headers = {"Location": location}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


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
            "nf": [
                nf.get(k)
                for k in ("nFName", "nFIPv4Address", "nFIPv6Address", "nFFqdn", "nodeFunctionality")
            ],
            "chargingId": charging_id,
            "pduSessionID": (info.get("pduSessionInformation") or {}).get("pduSessionID"),
            "subscriber": body.identities(),
            "invocationSequenceNumber": body.invocationSequenceNumber,
        }
    return hashlib.sha256(
        json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
