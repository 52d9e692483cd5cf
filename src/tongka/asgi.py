"""Pure ASGI middleware around the app: security headers on every answer, and the last catch
for an error nothing else handled. Plain ASGI (not BaseHTTPMiddleware): each adds one small
wrapper per request, which matters on the network's charging routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongka import logs

# No script, style, frame or form target from another host; no inline script or style (the
# templates use /static files); nobody may frame a page (clickjacking); no <base> rewriting.
# img-src data: is for Swagger UI's icons and the favicon placeholder.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# The sandbox providers' pages stand in for another host (the provider's), which sends the
# payer back to whatever return URL the merchant gave, after the payer's form is posted.
SANDBOX_CSP = CSP.replace("form-action 'self'", "form-action 'self' http: https:")
REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS = "max-age=31536000"  # a year; not includeSubDomains: the operator's other hosts are not ours to pin


class SecurityHeaders:
    """nosniff, a referrer policy and (outside dev) HSTS on every answer; a CSP on every HTML page."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.every = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", REFERRER_POLICY.encode()),
        ]
        if hsts:
            self.every.append((b"strict-transport-security", HSTS.encode()))
        self.html = [(b"content-security-policy", CSP.encode())]
        self.sandbox_html = [(b"content-security-policy", SANDBOX_CSP.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *self.every]
                if any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers += (
                        self.sandbox_html if scope["path"].startswith("/sandbox/") else self.html
                    )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchCrashes:
    """An unhandled error: logged once, in a few lines, by the log thread (not on the event loop),
    and answered by `answer`. Not raised further: Starlette's outermost middleware would raise it
    again to the server, which logs it a second time, in full, on the event loop."""

    def __init__(self, app: ASGIApp, answer: Callable[[Request, Exception], Response]) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as error:
            fields: dict[str, Any] = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "exc_info": error,
            }
            logs.later("error", "unhandled_error", **fields)
            if (
                started
            ):  # half an answer is out: only the server can end it (it closes the connection)
                raise
            await self.answer(Request(scope), error)(scope, receive, send)
