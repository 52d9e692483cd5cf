"""Request bodies have a size limit, refused with 413 before they are read whole.

A pure ASGI middleware (no `BaseHTTPMiddleware`: the network's charging requests are the
hot path, and a body within its `Content-Length` passes untouched). A `Content-Length` over
the limit is answered at once, the body unread; a body without one (chunked) is counted as
it arrives, and the first byte over the limit ends it: what the route would have answered is
dropped and the 413 sent instead.

One limit per listener (settings): the public app's `max_body_bytes` (the largest body it
takes is a payment provider's callback, a few KiB; usage files and line lists are imported on the
command line; the one upload, a scam report's screenshot at /official/report, has a limit of its
own, `larger`), the network's Nchf listener's
`max_nchf_body_bytes` (a ChargingDataRequest within the schema's list bounds, with the fields
real packet cores add, is a few KiB to some tens). The 413 is problem details in the shape of
the API asked: the app's, with the code `body_too_large`, or a 3GPP ProblemDetails for the
network (`network=True`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongka.errors import TongkaError
from tongka.i18n import _, negotiate

PROBLEM = "application/problem+json"


class BodyTooLarge(TongkaError):
    status = 413
    code = "body_too_large"
    message = _("The request body is larger than the {limit} bytes this service takes.")

    @property
    def title(self) -> str:
        return _("Request too large")


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        network: bool = False,
        larger: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.network = network
        # The few paths that take an upload (a scam report's screenshot), each with its own limit.
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.limit)
        length = _content_length(scope)
        if length is not None and length > limit:
            await _refuse(scope, send, limit, self.network)
            return
        if length is not None:  # the server reads no more than Content-Length: nothing to count
            await self.app(scope, receive, send)
            return

        received = 0
        over = started = False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the route sees the client gone and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the route's answer to a body cut short: the 413 goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _refuse(scope, send, limit, self.network)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(scope: Scope, send: Send, limit: int, network: bool) -> None:
    body: dict[str, Any]
    # What the client is still sending is not read. HTTP/2 has no Connection header (a stream ends
    # alone; the server resets it), and a server may refuse an answer that carries one.
    headers = {"Connection": "close"} if scope.get("http_version", "1.1").startswith("1") else {}
    if network:
        # TS 29.500 names no cause for 413; the body is not a message the CHF takes.
        body = {
            "title": "Payload Too Large",
            "status": 413,
            "detail": f"The body is larger than {limit} bytes.",
            "cause": "INVALID_MSG_FORMAT",
        }
    else:
        language = negotiate(Request(scope).headers.get("accept-language"))
        body = BodyTooLarge(limit=limit).problem(language)
        headers["Content-Language"] = language
    response = JSONResponse(body, status_code=413, media_type=PROBLEM, headers=headers)
    await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
