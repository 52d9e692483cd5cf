"""What a subscriber's app does against a live server, over real HTTP: register, log in, bind, order
(the steps tests/factories.py shares are taken from there)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests import factories as f


def unbound_numbers(tongka) -> list[str]:  # type: ignore[no-untyped-def]
    """Spare numbers, as an operator reads them from `tongka lines list --unbound` (ICCID, HK, CN, state)."""
    out = tongka("lines", "list", "--unbound").stdout
    numbers = []
    for row in out.splitlines():
        _iccid, hk, cn, state = row.split()
        assert state == "unbound", row
        numbers.append(hk if hk != "-" else cn)
    return numbers


def register_and_login(
    client: httpx.Client, language: str = "en"
) -> tuple[dict[str, Any], dict[str, str]]:
    account = f.register(client, f"e2e{uuid.uuid4().hex[:10]}", language=language)
    return account, f.login(client, account["username"])


def pack(client: httpx.Client, headers: dict[str, str], line_id: str, code: str) -> dict[str, Any]:
    r = client.get("/api/v1/packs", params={"line_id": line_id, "channel": "app"}, headers=headers)
    assert r.status_code == 200, r.text
    return next(p for p in r.json() if p["code"] == code)  # type: ignore[no-any-return]


def price(pack: dict[str, Any], currency: str) -> int:
    return next(p["amount"] for p in pack["prices"] if p["currency"] == currency)  # type: ignore[no-any-return]


def order(
    client: httpx.Client,
    headers: dict[str, str],
    line_id: str,
    pack_id: str,
    currency: str = "HKD",
    method: str = "alipay",
    key: str | None = None,
) -> httpx.Response:
    return client.post(
        "/api/v1/orders",
        json={
            "line_id": line_id,
            "pack_id": pack_id,
            "currency": currency,
            "payment_method": method,
        },
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def subscriber_with_line(client: httpx.Client, tongka) -> tuple[dict[str, str], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A new subscriber who has bound a spare line: (auth headers, line)."""
    _account, headers = register_and_login(client)
    number = unbound_numbers(tongka)[0]
    return headers, f.bind(client, headers, number)


def hkd(amount: int) -> str:
    """How the checkout shows an HKD amount in minor units, e.g. 5800 -> HK$58.00."""
    return f"HK${amount // 100:,}.{amount % 100:02d}"
