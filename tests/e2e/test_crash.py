"""A server killed in the middle of taking payments loses nothing and repeats nothing.

The provider keeps calling back until it is answered, as real ones do: here the
simulated provider's callbacks are fired at a real `tongka serve`, the process is
killed with SIGKILL while they land, restarted, and the provider sends them all again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e import steps
from tests.helpers import TONGKA, wait_until_down, wait_until_up

pytestmark = pytest.mark.e2e
ORDERS = 40


def start(e2e_env: dict[str, Any], log_name: str) -> subprocess.Popen[bytes]:
    log = (e2e_env["home"] / log_name).open("w")
    process = subprocess.Popen(
        [str(TONGKA), "serve", "--port", str(e2e_env["port"])],
        cwd=e2e_env["home"],
        env=e2e_env["env"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until_up(process, e2e_env["env"]["TONGKA_PUBLIC_BASE_URL"], e2e_env["home"] / log_name)
    return process


def test_killed_while_fulfilling_then_every_paid_order_is_fulfilled_once(e2e_env, tongka) -> None:
    tongka("db", "upgrade")
    tongka("demo", "load")
    base_url = e2e_env["env"]["TONGKA_PUBLIC_BASE_URL"]
    server = start(e2e_env, "server-1.log")
    try:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            headers, line = steps.subscriber_with_line(client, tongka)
            pack = steps.pack(client, headers, line["id"], "hk-1gb-7d")
            orders = [
                steps.order(client, headers, line["id"], pack["id"]).json() for _ in range(ORDERS)
            ]
        payment_ids = [o["payment"]["id"] for o in orders]

        def complete(payment_id: str) -> int:
            try:
                with httpx.Client(base_url=base_url, timeout=5) as c:
                    return c.post(f"/sandbox/payments/{payment_id}/complete").status_code
            except httpx.HTTPError:
                return 0  # the server died under this call

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = [pool.submit(complete, p) for p in payment_ids]
            # Kill it once some callbacks have landed and others are still in flight.
            deadline = time.monotonic() + 20
            while sum(a.done() for a in answers) < ORDERS // 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            done_before_kill = [a.result() for a in answers]
        assert 0 < done_before_kill.count(200) < ORDERS, "the kill should land in the middle"
    finally:
        if server.poll() is None:
            server.kill()
    wait_until_down(e2e_env["nchf_url"])  # its Nchf listener stops with it, freeing the port

    server = start(e2e_env, "server-2.log")
    try:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            # The provider retries every notification it has not seen answered (and some it has).
            for payment_id in payment_ids:
                assert client.post(f"/sandbox/payments/{payment_id}/complete").status_code == 200
            statuses = [
                client.get(f"/api/v1/orders/{o['id']}", headers=headers).json() for o in orders
            ]
            balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert {s["status"] for s in statuses} == {"fulfilled"}
    bucket_ids = [s["bucket_id"] for s in statuses]
    assert len(set(bucket_ids)) == ORDERS
    assert set(bucket_ids) == {b["id"] for b in balance["buckets"]}  # one bucket per order, no more
    assert balance["zones"]["hk"]["remaining_bytes"] == ORDERS * pack["volume_bytes"]
    tongka("ledger", "verify")
