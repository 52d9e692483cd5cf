"""How the simulated providers send their signed callbacks to tongka: at once, or after answering."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from fastapi import Request

log = logging.getLogger(__name__)
# Notifications sent after an API call was answered (kept here so they finish, and awaited at shutdown).
_later: set[asyncio.Task[int]] = set()


async def deliver(request: Request, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST a callback to tongka's `url` as the provider would, through the ASGI app in-process.

    In-process because the sandbox must work with no way to reach itself over the network
    (tests, a machine behind a firewall); the bytes and headers are exactly what would be sent.
    """
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=f"{parts.scheme}://{parts.netloc}"
    ) as client:
        answer = await client.post(path, content=body, headers=headers)
    return answer.status_code


def deliver_later(
    request: Request,
    url: str,
    body: bytes,
    headers: dict[str, str],
    retries: Sequence[float] = (0.05, 0.5, 2.0),
) -> None:
    """Send a notification once the current API call has been answered, as providers do: never
    inside the caller's transaction. Retried after each pause until tongka answers 2xx."""

    async def send() -> int:
        status = 0
        for pause in retries:
            await asyncio.sleep(pause)
            try:
                status = await deliver(request, url, body, headers)
            except Exception:  # a crash in tongka is a failed delivery, as over HTTP
                log.exception("sandbox notification to %s failed", url)
                continue
            if 200 <= status < 300:
                break
        return status

    task = asyncio.get_running_loop().create_task(send())
    _later.add(task)
    task.add_done_callback(_later.discard)


async def drain(timeout: float = 15.0) -> list[int]:
    """Wait for the notifications on their way (at shutdown, and in tests); their callbacks' HTTP statuses."""
    statuses: list[int] = []
    while _later:
        done, _pending = await asyncio.wait(list(_later), timeout=timeout)
        if not done:
            break
        statuses += [t.result() for t in done if not t.cancelled() and t.exception() is None]
    return statuses
