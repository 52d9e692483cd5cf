"""Shared test helpers that act as an app client would: register, log in, bind, order, pay
(over any httpx client: the in-process TestClient, or a live server's in tests/e2e).

Domain-specific factories live next to their domain's tests; these cross every domain.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, NamedTuple

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tongka import demo
from tongka.config import Settings
from tongka.db import transaction

PASSWORD = "correct horse battery"


def load_demo(sessions: sessionmaker[Session], settings: Settings) -> None:
    with transaction(sessions) as session:
        demo.load(session, settings)


def spare_numbers(sessions: sessionmaker[Session]) -> list[str]:
    from tongka.account import lines

    with sessions() as session:
        return [line.numbers[0] for line in lines.unbound_lines(session)]


def register(
    client: httpx.Client, username: str | None = None, language: str = "en"
) -> dict[str, Any]:
    username = username or f"u{uuid.uuid4().hex[:10]}"
    r = client.post(
        "/api/v1/accounts",
        json={
            "username": username,
            "password": PASSWORD,
            "email": f"{username}@example.com",
            "language": language,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["username"] == username
    return r.json()  # type: ignore[no-any-return]


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"].lower() == "bearer"
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def subscriber(client: TestClient, language: str = "en") -> dict[str, str]:
    """A new subscriber's auth headers."""
    return login(client, register(client, language=language)["username"])


class Subscriber(NamedTuple):
    """A subscriber as their app knows them: auth headers, the line they bound, their username."""

    headers: dict[str, str]
    line: dict[str, Any]
    username: str


def new_subscriber(
    client: TestClient, sessions: sessionmaker[Session], language: str = "en"
) -> Subscriber:
    """A new subscriber who has bound the first spare line of the inventory (the `demo` fixture loads one)."""
    username = register(client, language=language)["username"]
    headers = login(client, username)
    return Subscriber(headers, bind(client, headers, spare_numbers(sessions)[0]), username)


def last_code(client: httpx.Client, number: str) -> str:
    """The code in the newest SMS to `number`, read from the dev outbox."""
    r = client.get("/dev/outbox")
    assert r.status_code == 200, r.text
    for message in r.json():  # newest first
        if message["channel"] == "sms" and message["to"] == number:
            found = re.search(r"\b(\d{8})\b", message["body"])
            assert found, message["body"]
            return found.group(1)
    raise AssertionError(f"no SMS to {number}")


def bind(client: httpx.Client, headers: dict[str, str], number: str) -> dict[str, Any]:
    """Bind `number` to the signed-in account as the app does: ask for a code, confirm it; the line."""
    r = client.post("/api/v1/lines/bind", json={"number": number}, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["number"] == number
    r = client.post(
        "/api/v1/lines/bind/confirm",
        json={"number": number, "code": last_code(client, number)},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    assert number in r.json()["numbers"]
    return r.json()  # type: ignore[no-any-return]


def pack_id(client: TestClient, code: str) -> str:
    packs = client.get("/api/v1/packs").json()
    return next(p["id"] for p in packs if p["code"] == code)


def order(
    client: TestClient,
    headers: dict[str, str],
    line_id: str,
    code: str = "hk-5gb-30d",
    currency: str = "HKD",
    method: str = "alipay",
    key: str | None = None,
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    """An order made through the app API (`extra`: more fields, a coupon or a quote); its body,
    which must come with the status `expect`."""
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line_id,
            "pack_id": pack_id(client, code),
            "currency": currency,
            "payment_method": method,
            **extra,
        },
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


def pay(client: TestClient, payment_id: str, outcome: str = "succeeded") -> dict[str, Any]:
    r = client.post(f"/sandbox/payments/{payment_id}/complete", json={"outcome": outcome})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def refund(
    client: TestClient,
    operator: dict[str, str],
    payment_id: str,
    amount: int,
    key: str | None = None,
    reason: str = "customer asked",
) -> httpx.Response:
    """Staff refund `amount` of a payment (the answer, whatever it is)."""
    return client.post(
        f"/api/v1/admin/payments/{payment_id}/refunds",
        json={"amount": amount, "reason": reason},
        headers={**operator, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def hkd_only_pack(sessions: sessionmaker[Session], price: int = 2350) -> None:
    """The pack "hk-only-2gb", priced in HKD alone, and a rate HKD -> CNY of 0.9234 to pay it in CNY."""
    from tongka.catalog import service as catalog
    from tongka.fx import service as fx
    from tongka.money import GB

    with transaction(sessions) as s:
        catalog.upsert_pack(
            s,
            code="hk-only-2gb",
            names={"en": "HK 2 GB"},
            zone="hk",
            volume_bytes=2 * GB,
            validity_days=7,
            prices={"HKD": price},
            channels=["app"],
        )
        fx.set_rate(s, "HKD", "CNY", 923400, set_by="test")


def pack_id_any(sessions: sessionmaker[Session], code: str) -> str:
    """A pack's id even when it is not on sale (the API lists only packs on sale)."""
    from sqlalchemy import select

    from tongka.catalog.models import Pack

    with sessions() as session:
        return str(session.scalars(select(Pack.id).where(Pack.code == code)).one())


class StaffLogin(NamedTuple):
    """A staff member made for a test: their username, TOTP secret (their "phone") and API headers."""

    username: str
    secret: str
    headers: dict[str, str]


def staff_code(secret: str) -> str:
    """What the member's authenticator app shows now (tongka's clock: frozen in some tests)."""
    import pyotp

    from tongka import clock

    return pyotp.TOTP(secret).at(clock.now())


def stores(sessions: sessionmaker[Session]) -> None:
    """The demo's stores (lo-wu, harbour-city, ...), for staff who work at one."""
    from tongka.stores import service as stores_service

    with transaction(sessions) as s, demo.STORES_CSV.open(newline="", encoding="utf-8") as f:
        stores_service.import_stores(s, f)


def staff(
    client: httpx.Client,
    sessions: sessionmaker[Session],
    settings: Settings,
    role: str = "admin",
    store: str | None = "lo-wu",
) -> StaffLogin:
    """A new staff member with TOTP set up, logged in through `POST /api/v1/staff/token`. The same
    token as the `tongka_staff` cookie signs `client` in to the staff pages."""
    from tongka.account import service as accounts
    from tongka.staff import service as staff_service

    store = None if role == "admin" else store
    if store is not None:
        stores(sessions)
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as s:
        member = staff_service.add(
            s,
            username=username,
            display_name=username,
            role=role,
            store_code=store,
            password_hash=accounts.new_password_hash(username, PASSWORD),
        )
        secret = staff_service.enrol_directly(member, settings.secret_key.get_secret_value())
    r = client.post(
        "/api/v1/staff/token",
        json={"username": username, "password": PASSWORD, "code": staff_code(secret)},
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    client.cookies.set("tongka_staff", token)
    return StaffLogin(username, secret, {"Authorization": f"Bearer {token}"})
