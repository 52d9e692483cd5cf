"""100 concurrent orders on an offer with 10 redemptions left: exactly 10 get the discount, on both backends.

SQLite serialises writers (every transaction begins IMMEDIATE); on PostgreSQL the orders
queue on the offer's row, each re-reading the count when its turn comes.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select, update

from tests.promotion.factories import make_offer, offer_row
from tongka.account.models import Account, Line
from tongka.catalog.models import Pack
from tongka.db import transaction
from tongka.order.models import Order
from tongka.promotion.models import Offer, Redemption
from tongka.renewal import flow

ORDERS = 100
LEFT = 10


def customers(sessions, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:  # type: ignore[no-untyped-def]
    """(account id, line id) of `count` new subscribers, each with a bound line (made directly: quicker)."""
    made = []
    with transaction(sessions) as s:
        for i in range(count):
            account = Account(
                username=f"race{i}", email=f"race{i}@example.com", password_hash="-", language="en"
            )
            s.add(account)
            s.flush()
            line = Line(iccid=f"89852999{i:011d}", account_id=account.id)
            s.add(line)
            s.flush()
            made.append((account.id, line.id))
    return made


def test_exactly_the_redemptions_left_get_the_discount(client, sessions, catalog, settings) -> None:
    offer_id = make_offer(
        sessions, code="race", kind="first_topup", amount_off={"HKD": 1000}, max_redemptions=15
    )
    with transaction(sessions) as s:  # 5 of 15 already given: 10 left
        s.execute(update(Offer).where(Offer.id == offer_id).values(redeemed=5))
        pack_id = s.scalars(select(Pack.id).where(Pack.code == "hk-5gb-30d")).one()
    people = customers(sessions, ORDERS)
    start = threading.Barrier(ORDERS)

    def buy(who: tuple[uuid.UUID, uuid.UUID]) -> int:
        start.wait(timeout=60)
        with transaction(sessions) as s:
            account = s.get(Account, who[0])
            made = flow.make_order(
                s,
                account,
                line_id=who[1],
                pack_id=pack_id,
                currency="HKD",
                channel="app",
                payment_ttl_seconds=1800,
            )
            return made.amount

    with ThreadPoolExecutor(ORDERS) as pool:
        amounts = list(pool.map(buy, people))

    assert sorted(amounts) == [4800] * LEFT + [5800] * (ORDERS - LEFT)
    assert offer_row(sessions, offer_id) == (15, {"CNY": 0, "HKD": LEFT * 1000})
    with sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Order)) == ORDERS + 1
        )  # and the demo subscriber's
        held = s.scalars(select(Redemption).where(Redemption.offer_id == offer_id)).all()
        assert len(held) == LEFT and all(r.status == "held" and r.order_id for r in held)
        assert len({r.account_id for r in held}) == LEFT


def test_one_customer_racing_gets_a_once_per_customer_offer_once(client, sessions, catalog) -> None:
    offer_id = make_offer(sessions, code="once", kind="first_topup", amount_off={"HKD": 1000})
    with transaction(sessions) as s:
        pack_id = s.scalars(select(Pack.id).where(Pack.code == "hk-5gb-30d")).one()
    [(account_id, line_id)] = customers(sessions, 1)
    tries = 20
    start = threading.Barrier(tries)

    def buy(_: int) -> int:
        start.wait(timeout=60)
        with transaction(sessions) as s:
            made = flow.make_order(
                s,
                s.get(Account, account_id),
                line_id=line_id,
                pack_id=pack_id,
                currency="HKD",
                channel="app",
                payment_ttl_seconds=1800,
            )
            return made.amount

    with ThreadPoolExecutor(tries) as pool:
        amounts = list(pool.map(buy, range(tries)))

    assert sorted(amounts) == [4800] + [5800] * (tries - 1)
    assert offer_row(sessions, offer_id) == (1, {"CNY": 0, "HKD": 1000})
