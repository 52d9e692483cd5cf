"""Request bodies over the limit are refused with 413 before they are read whole: the app's API
with its problem details, the network's Nchf API with a 3GPP ProblemDetails.

The app is driven as the ASGI server drives it, so the test sees how much of the body was
asked for: with a Content-Length over the limit, none; without one (chunked), no more than
the limit and one chunk."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from tests.charging.test_api import BASE, request
from tests.conftest import nf_headers
from tongka.http_limits import BodyTooLarge
from tongka.i18n import gettext

CHUNK = 16 * 1024


@dataclass
class Exchange:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks_read: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app,
    path: str,
    *,
    size: int,
    content_length: bool,
    language: str = "en",  # type: ignore[no-untyped-def]
    authorization: dict[str, str] | None = None,
) -> Exchange:
    """POST `size` bytes of JSON-ish body to `path`, in chunks, as uvicorn would hand it over."""
    exchange = Exchange()
    total = (size + CHUNK - 1) // CHUNK
    headers = [(b"content-type", b"application/json"), (b"accept-language", language.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (authorization or {}).items()]
    if content_length:
        headers.append((b"content-length", str(size).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.9", 40000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        if exchange.chunks_read >= total:
            await asyncio.sleep(3600)  # the client waits for the answer
        exchange.chunks_read += 1
        return {
            "type": "http.request",
            "body": b"[" * CHUNK,
            "more_body": exchange.chunks_read < total,
        }

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
            exchange.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            exchange.body += message.get("body", b"")

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return exchange


def test_an_app_body_over_the_limit_is_a_413_before_it_is_read(app, settings) -> None:
    limit = settings.max_body_bytes
    assert limit == 64 * 1024
    for content_length in (True, False):
        r = call(
            app,
            "/api/v1/accounts",
            size=10 * 1024 * 1024,
            content_length=content_length,
            language="zh-HK",
        )
        assert r.status == 413, r.body
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert (problem["status"], problem["code"]) == (413, "body_too_large")
        assert (
            problem["detail"]
            == gettext(BodyTooLarge.message, "zh-Hant", limit=limit)
            != BodyTooLarge.message.format(limit=limit)
        )
        # Read: nothing with a Content-Length; without one, up to the first chunk over the limit.
        assert r.chunks_read == (0 if content_length else limit // CHUNK + 1)


def test_an_nchf_body_over_its_limit_is_a_413_problem_details(nchf_app, settings) -> None:
    limit = settings.max_nchf_body_bytes
    assert limit == 256 * 1024
    for content_length in (True, False):
        r = call(
            nchf_app,
            BASE,
            size=10 * 1024 * 1024,
            content_length=content_length,
            authorization=nf_headers(settings),
        )
        assert r.status == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "title": "Payload Too Large",
            "status": 413,
            "detail": f"The body is larger than {limit} bytes.",
            "cause": "INVALID_MSG_FORMAT",
        }
        assert r.chunks_read == (0 if content_length else limit // CHUNK + 1)


def test_bodies_within_the_limits_are_read_as_before(nchf_app, client, settings) -> None:
    # Over the app's limit but within the network's: Nchf reads it (and finds it malformed JSON).
    r = call(
        nchf_app, BASE, size=128 * 1024, content_length=False, authorization=nf_headers(settings)
    )
    assert (r.status, r.json()["cause"]) == (400, "INVALID_MSG_FORMAT")
    # A real ChargingDataRequest with many fields real packet cores add stays far below the limit.
    body = request(0, gpsi="msisdn-85299999999", requested=1)
    body["multipleUnitUsage"] *= 64
    assert len(json.dumps(body)) < settings.max_nchf_body_bytes // 8
    r = client.post("/api/v1/accounts", json={"username": "x" * 20_000, "password": "x"})
    assert r.status_code == 422, r.text  # read and judged, not refused for its size
