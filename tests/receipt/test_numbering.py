"""Receipt numbers: sequential per issuer with no gaps, under concurrent issuers.

On PostgreSQL the threads really race for the counter row (and for making it, on first
use); SQLite serialises every writer at BEGIN IMMEDIATE, so there it checks the same
outcome without the race.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from tests import factories as f

from tongka.db import transaction
from tongka.order.models import Order
from tongka.payment.models import Payment
from tongka.receipt import service as receipts
from tongka.receipt.models import Receipt, ReceiptCounter
from tongka.renewal import flow

ISSUERS = 20
DUPLICATES = 4  # extra threads issuing the first payment's receipt again, at the same time

pytestmark = pytest.mark.usefixtures("generic_sandbox")


def test_numbers_are_sequential_per_issuer_with_twenty_concurrent_issuers(
    client, sessions, signing_key, owner
) -> None:
    payment_ids = []
    for _ in range(ISSUERS):
        order = f.order(client, owner.headers, owner.line["id"], code="hk-1gb-7d")
        payment_ids.append(uuid.UUID(order["payment"]["id"]))
        with transaction(sessions) as s:  # paid without a key: no receipt yet
            payment = s.get(Payment, payment_ids[-1])
            result = flow.confirm(s, payment, "succeeded", payment.amount, payment.currency)  # type: ignore[arg-type]
            assert result == "applied"

    # Half online, half in a store that has never issued one (its counter row is made under the race).
    work = [(pid, "online" if i % 2 else "mk01") for i, pid in enumerate(payment_ids)]
    work += [(payment_ids[0], "mk01")] * DUPLICATES
    start = threading.Barrier(len(work))

    def issue(job: tuple[uuid.UUID, str]) -> tuple[str, str]:
        payment_id, issuer = job
        start.wait(timeout=30)
        with transaction(sessions) as s:
            payment = s.get(Payment, payment_id)
            receipt = flow.issue_receipt(
                s,
                payment,  # type: ignore[arg-type]
                signing_key=signing_key,
                issuer=issuer,
                store=issuer.upper(),  # type: ignore[arg-type]
            )
            return str(payment_id), receipt.number

    with ThreadPoolExecutor(len(work)) as pool:
        results = list(pool.map(issue, work))

    assert (
        len({number for pid, number in results if pid == str(payment_ids[0])}) == 1
    )  # duplicates got the same one
    with sessions() as s:
        rows = s.execute(select(Receipt.issuer, Receipt.sequence, Receipt.number)).all()
        counters = dict(
            s.execute(select(ReceiptCounter.issuer, ReceiptCounter.last_sequence)).all()
        )
        by_payment = s.scalar(select(func.count(func.distinct(Receipt.payment_id))))
    per_issuer: dict[str, list[int]] = {}
    for issuer, sequence, number in rows:
        per_issuer.setdefault(issuer, []).append(sequence)
        assert number == receipts.number_for(issuer, sequence)
    # online: the demo subscriber's receipt, then ten; the store: one to ten. No gaps, no repeats.
    assert sorted(per_issuer["online"]) == list(range(1, 12))
    assert sorted(per_issuer["mk01"]) == list(range(1, 11))
    assert counters == {"online": 11, "mk01": 10}
    assert by_payment == len(rows) == ISSUERS + 1
    assert {n for _pid, n in results} == {number for _issuer, _seq, number in rows} - {
        "ONL-00000001"
    }


def test_concurrent_callbacks_number_online_receipts_without_gaps(
    client, app, sessions, settings, owner
) -> None:
    """The real path: 20 provider callbacks for 20 orders at once, each in its own transaction."""
    from tests.payment.test_callbacks import event, signed

    orders = [
        f.order(client, owner.headers, owner.line["id"], code="hk-1gb-7d") for _ in range(ISSUERS)
    ]
    bodies = [event(o) for o in orders]
    key = settings.receipt_signing_key.get_secret_value()
    start = threading.Barrier(ISSUERS)

    def deliver(body: bytes) -> str:
        start.wait(timeout=30)
        with transaction(sessions) as s:
            flow.handle_callback(
                s, app.state.providers, "sandbox", signed(settings, body), body, receipt_key=key
            )
        return "ok"

    with ThreadPoolExecutor(ISSUERS) as pool:
        assert list(pool.map(deliver, bodies)) == ["ok"] * ISSUERS
    with sessions() as s:
        sequences = sorted(s.scalars(select(Receipt.sequence).where(Receipt.issuer == "online")))
        assert (
            s.scalar(select(func.count()).select_from(Order).where(Order.status == "fulfilled"))
            == ISSUERS + 1
        )
    assert sequences == list(range(1, ISSUERS + 2))
