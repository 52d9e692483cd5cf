"""Fixtures of the receipt tests: a subscriber with a line, and a paid order with its receipt."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests import factories as f


def receipts_of(client: TestClient, who: f.Subscriber) -> list[dict[str, Any]]:
    r = client.get("/api/v1/receipts", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def signing_key(settings) -> str:  # type: ignore[no-untyped-def]
    # The shared `settings` fixture takes it from `tongka keys generate`, as `make run` does.
    assert settings.receipt_signing_key is not None
    return settings.receipt_signing_key.get_secret_value()  # type: ignore[no-any-return]


@pytest.fixture
def owner(client, sessions, demo) -> f.Subscriber:  # type: ignore[no-untyped-def]
    """A subscriber with a line (the demo subscriber's renewal took receipt ONL-00000001)."""
    return f.new_subscriber(client, sessions)


@pytest.fixture
def paid(client, owner) -> tuple[dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """An order of the owner's paid through the sandbox: (order, its receipt from the API)."""
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"])
    [receipt] = [r for r in receipts_of(client, owner) if r["order_id"] == order["id"]]
    return order, receipt
