"""Refunds by operator staff: through the provider, pro-rated to unused data, each a record of its own."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from tests import factories as f
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, Transfer
from tongka.money import GB


@pytest.fixture
def paid(client, sessions, demo):  # type: ignore[no-untyped-def]
    """A subscriber's fulfilled 5 GB HK order (HK$58.00): (headers, line, order)."""
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], code="hk-5gb-30d")
    f.pay(client, order["payment"]["id"])
    return headers, line, client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()


def remaining(client, headers, line) -> int:  # type: ignore[no-untyped-def]
    return client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()["zones"]["hk"][
        "remaining_bytes"
    ]


def test_a_full_refund_of_an_unused_pack_takes_the_data_back(client, operator, paid) -> None:
    headers, line, order = paid
    r = f.refund(client, operator, order["payment"]["id"], 5800)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["amount"], body["currency"], body["status"], body["bytes_withdrawn"]) == (
        5800,
        "HKD",
        "succeeded",
        5 * GB,
    )
    assert body["provider_refund_id"] and body["requested_by"].startswith("operator:")
    assert remaining(client, headers, line) == 0
    detail = client.get(f"/api/v1/admin/payments/{order['payment']['id']}", headers=operator).json()
    assert detail["refundable_amount"] == 0 and len(detail["refunds"]) == 1
    again = f.refund(client, operator, order["payment"]["id"], 1)
    assert (again.status_code, again.json()["code"]) == (409, "refund_exceeds_refundable")


def test_partial_refunds_take_back_data_in_proportion_rounded_against_the_customer(
    client, operator, paid
) -> None:
    headers, line, order = paid
    r = f.refund(client, operator, order["payment"]["id"], 1000)  # 10/58 of the pack
    withdrawn = -(-1000 * 5 * GB // 5800)
    assert r.json()["bytes_withdrawn"] == withdrawn
    assert remaining(client, headers, line) == 5 * GB - withdrawn
    r = f.refund(client, operator, order["payment"]["id"], 4800)
    assert r.status_code == 201 and remaining(client, headers, line) == 0


def test_data_already_used_is_not_refunded(client, sessions, operator, paid) -> None:
    headers, line, order = paid
    with transaction(sessions) as s:  # the customer used 4 GB of the 5
        bucket = s.get(Bucket, uuid.UUID(order["bucket_id"]))
        ledger.transfer(
            s,
            bucket.account,
            ledger.system_account(s, "data_used", "bytes"),
            4 * GB,
            reason="usage",
            reference="test",
        )
    detail = client.get(f"/api/v1/admin/payments/{order['payment']['id']}", headers=operator).json()
    assert detail["refundable_amount"] == 5800 // 5 and detail["unused_bytes"] == GB
    r = f.refund(client, operator, order["payment"]["id"], 1161)
    assert (r.status_code, r.json()["code"]) == (409, "refund_exceeds_refundable")
    assert "HK$11.60" in r.json()["detail"]
    assert f.refund(client, operator, order["payment"]["id"], 1160).status_code == 201
    assert remaining(client, headers, line) == 0


def test_a_retry_with_the_same_key_refunds_once(client, sessions, operator, paid) -> None:
    _headers, _line, order = paid
    first = f.refund(client, operator, order["payment"]["id"], 500, key="once")
    second = f.refund(client, operator, order["payment"]["id"], 500, key="once")
    assert first.json() == second.json()
    other = f.refund(client, operator, order["payment"]["id"], 600, key="once")
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    with sessions() as s:
        entries = s.scalars(select(Transfer).where(Transfer.reason == "refund")).all()
    assert len(entries) == 2  # money back and data back, once


def test_only_operators_refund(client, paid) -> None:
    headers, _line, order = paid
    r = f.refund(client, headers, order["payment"]["id"], 100)
    assert (r.status_code, r.json()["code"]) == (401, "staff_session_invalid")
    assert (
        client.get(f"/api/v1/admin/payments/{order['payment']['id']}", headers=headers).status_code
        == 401
    )


def test_unpaid_and_unknown_payments(client, sessions, operator, paid) -> None:
    headers, line, _order = paid
    unpaid = f.order(client, headers, line["id"], code="hk-1gb-7d")
    r = f.refund(client, operator, unpaid["payment"]["id"], 100)
    assert (r.status_code, r.json()["code"]) == (409, "payment_not_refundable")
    r = f.refund(client, operator, str(uuid.uuid4()), 100)
    assert (r.status_code, r.json()["code"]) == (404, "payment_not_found")
    r = f.refund(client, operator, unpaid["payment"]["id"], 0)
    assert r.status_code == 422


@pytest.mark.usefixtures(
    "generic_sandbox"
)  # the CLI reaches providers over the network, which tests have not
def test_the_cli_refunds(client, cli, operator, paid) -> None:
    headers, line, order = paid
    result = cli(
        "payments",
        "refund",
        order["payment"]["id"],
        "--amount",
        "5800",
        "--reason",
        "duplicate purchase",
        "--key",
        "k1",
    )
    assert result.exit_code == 0, result.output
    assert "5800 HKD succeeded" in result.output and remaining(client, headers, line) == 0
    again = cli(
        "payments",
        "refund",
        order["payment"]["id"],
        "--amount",
        "5800",
        "--reason",
        "duplicate purchase",
        "--key",
        "k1",
    )
    assert again.exit_code == 0  # the same key: the same refund, nothing more
    refused = cli(
        "payments", "refund", order["payment"]["id"], "--amount", "1", "--reason", "again"
    )
    assert refused.exit_code == 2 and "refused" in refused.output
