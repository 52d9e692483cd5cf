"""Many subscribers at once against a real `tongka serve` on its embedded SQLite (`make run`'s way).

Reproduced on 2026-12-06: right after a charging run, 64 balance reads at once deadlocked
the server. Every transaction, reads included, began with BEGIN IMMEDIATE in the token
lookup and held SQLite's write lock until its commit, several thread hops later; with all
of the server's worker threads waiting for that lock (or a pooled connection), the holder
never got a thread back, and every request waited out the busy timeout to a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.e2e import steps

pytestmark = pytest.mark.e2e

READERS = 64
WRITERS = 4
ROUNDS = 3
# Each request's own bound, and the whole burst's: a busy server answers slowly, never not at all.
REQUEST_TIMEOUT = 20.0
BURST_BOUND = 30.0


async def _burst(
    base_url: str, headers: dict[str, str], line_id: str, pack_id: str
) -> tuple[list[int], float]:
    """READERS balance reads and WRITERS orders sent together: every answer's status (599: none) and the time taken."""
    limits = httpx.Limits(
        max_connections=READERS + WRITERS, max_keepalive_connections=READERS + WRITERS
    )
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:

        async def call(method: str, path: str, **kwargs: object) -> int:
            try:
                return (await client.request(method, path, **kwargs)).status_code  # type: ignore[arg-type]
            except httpx.TimeoutException:
                return 599

        balance = f"/api/v1/lines/{line_id}/balance"
        order = {
            "line_id": line_id,
            "pack_id": pack_id,
            "currency": "HKD",
            "payment_method": "alipay",
        }
        started = time.monotonic()
        statuses = await asyncio.gather(
            *(call("GET", balance, headers=headers) for _ in range(READERS)),
            *(
                call(
                    "POST",
                    "/api/v1/orders",
                    json=order,
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                for _ in range(WRITERS)
            ),
        )
        return list(statuses), time.monotonic() - started


def test_sixty_four_balance_reads_right_after_charging_are_all_answered(
    live_server: str, tongka
) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=live_server, timeout=REQUEST_TIMEOUT) as client:
        headers, line = steps.subscriber_with_line(client, tongka)
        pack = steps.pack(client, headers, line["id"], "hk-1gb-7d")
    tongka(
        "simulate", "--lines", "10", "--seconds", "3", "--seed", "1"
    )  # a charging run, through the charging process

    for _round in range(ROUNDS):
        statuses, seconds = asyncio.run(_burst(live_server, headers, line["id"], pack["id"]))
        reads, writes = statuses[:READERS], statuses[READERS:]
        assert reads == [200] * READERS, f"balance reads: {sorted(reads)}"
        assert writes == [201] * WRITERS, f"orders: {sorted(writes)}"
        assert seconds < BURST_BOUND, f"{READERS + WRITERS} requests took {seconds:.1f} s"
