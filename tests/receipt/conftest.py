"""Fixtures of the receipt tests: a subscriber with a line, and a paid order with its receipt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests import factories as f


@dataclass
class Subscriber:
    headers: dict[str, str]
    line: dict[str, Any]
    username: str


def new_subscriber(client: TestClient, sessions, language: str = "en") -> Subscriber:  # type: ignore[no-untyped-def]
    account = f.register(client, language=language)
    headers = f.login(client, account["username"])
    line = f.bind(client, headers, f.spare_numbers(sessions)[0])
    return Subscriber(headers, line, account["username"])


def receipts_of(client: TestClient, who: Subscriber) -> list[dict[str, Any]]:
    r = client.get("/api/v1/receipts", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def signing_key(settings) -> str:  # type: ignore[no-untyped-def]
    # The shared `settings` fixture takes it from `tongka keys generate`, as `make run` does.
    assert settings.receipt_signing_key is not None
    return settings.receipt_signing_key.get_secret_value()  # type: ignore[no-any-return]


@pytest.fixture
def demo(client, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    """The catalog and the inventory (the demo subscriber's renewal took receipt ONL-00000001)."""
    f.load_demo(sessions, settings)


@pytest.fixture
def owner(client, sessions, demo) -> Subscriber:  # type: ignore[no-untyped-def]
    return new_subscriber(client, sessions)


@pytest.fixture
def paid(client, owner) -> tuple[dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """An order of the owner's paid through the sandbox: (order, its receipt from the API)."""
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"])
    [receipt] = [r for r in receipts_of(client, owner) if r["order_id"] == order["id"]]
    return order, receipt
