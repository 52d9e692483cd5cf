"""Buckets: granting data to a line, its balance by zone, and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.ledger import factories as f
from tests.ledger.factories import T0
from tongka.account.models import Line
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, Transfer
from tongka.money import GB, MB

DAY = timedelta(days=1)


def grant(
    session: Session, line: Line, zone: str, amount: int, valid_from: datetime = T0, days: int = 30
) -> Bucket:
    return buckets.grant(
        session,
        line_id=line.id,
        zone=zone,
        amount=amount,
        valid_from=valid_from,
        expires_at=valid_from + days * DAY,
        reason="pack_purchase",
        reference=f"order:{zone}-{amount}",
    )


def test_grant_credits_a_new_bucket_from_data_issued(session) -> None:
    line = f.line(session)
    bucket = grant(session, line, "hk", 5 * GB)
    session.commit()

    issued = ledger.system_account(session, "data_issued", "bytes")
    assert f.balances(session, bucket.account) == (0, 5 * GB, 0, 0)
    assert ledger.balances(session, issued).available == -5 * GB
    assert (bucket.account.kind, bucket.account.unit, bucket.account.must_not_go_negative) == (
        "bucket",
        "bytes",
        True,
    )
    assert (bucket.line_id, bucket.zone, bucket.unit, bucket.reason) == (
        line.id,
        "hk",
        "bytes",
        "pack_purchase",
    )
    assert (bucket.valid_from, bucket.expires_at) == (T0, T0 + 30 * DAY)
    [entry] = session.scalars(
        select(Transfer).where(Transfer.credit_account_id == bucket.ledger_account_id)
    )
    assert (entry.kind, entry.debit_account_id, entry.amount) == ("posted", issued.id, 5 * GB)
    assert (entry.reason, entry.reference) == ("pack_purchase", "order:hk-5368709120")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"zone": "macau"}, "unknown zone"),
        ({"expires_at": T0}, "expires after it starts"),
        ({"expires_at": T0 - DAY}, "expires after it starts"),
        ({"amount": 0}, "positive integer"),
    ],
)
def test_grant_refuses_what_makes_no_bucket(session, changes, message) -> None:
    line = f.line(session)
    args = {"zone": "hk", "amount": GB, "valid_from": T0, "expires_at": T0 + DAY} | changes
    with pytest.raises(ValueError, match=message):
        buckets.grant(session, line_id=line.id, reason="pack_purchase", reference="order:x", **args)
    assert session.scalars(select(Bucket)).all() == []


def test_a_both_bucket_counts_in_each_zone_and_a_zone_bucket_in_its_own(session) -> None:
    line = f.line(session)
    both = grant(session, line, "both", 10 * GB, days=30)
    hk = grant(session, line, "hk", 2 * GB, days=7)
    mainland = grant(session, line, "mainland", 3 * GB, days=14)
    grant(session, f.line(session), "both", 50 * GB)  # another line's
    session.commit()

    balance = buckets.line_balance(session, line.id, T0 + DAY)

    assert balance.as_of == T0 + DAY
    assert balance.zones["hk"] == buckets.ZoneView(
        remaining_bytes=12 * GB,
        total_bytes=12 * GB,
        reserved_bytes=0,
        bucket_count=2,
        next_expiry=hk.expires_at,
    )
    assert balance.zones["mainland"] == buckets.ZoneView(
        remaining_bytes=13 * GB,
        total_bytes=13 * GB,
        reserved_bytes=0,
        bucket_count=2,
        next_expiry=mainland.expires_at,
    )
    assert [v.id for v in balance.buckets] == [hk.id, mainland.id, both.id]  # soonest expiry first


def test_only_buckets_in_force_are_counted(session, frozen_clock) -> None:
    line = f.line(session)
    grant(session, line, "hk", 1 * GB, valid_from=T0 - 30 * DAY, days=30)  # expires exactly at T0
    grant(session, line, "hk", 2 * GB, valid_from=T0 + DAY)  # not valid yet
    starts_now = grant(session, line, "hk", 4 * GB, valid_from=T0)
    session.commit()

    balance = buckets.line_balance(session, line.id)  # the clock says T0

    assert balance.as_of == T0
    assert [v.id for v in balance.buckets] == [starts_now.id]
    assert (balance.zones["hk"].remaining_bytes, balance.zones["hk"].bucket_count) == (4 * GB, 1)
    assert balance.zones["mainland"] == buckets.ZoneView(0, 0, 0, 0, None)
    assert buckets.line_balance(session, line.id, T0 + DAY).zones["hk"].remaining_bytes == 6 * GB


def test_reserved_and_used_bytes_reduce_what_remains(session, frozen_clock) -> None:
    line = f.line(session)
    small = grant(session, line, "both", 100 * MB, days=7)
    big = grant(session, line, "hk", 1 * GB, days=30)
    f.reserve(session, big.account, 300 * MB)
    ledger.post(session, f.reserve(session, big.account, 200 * MB).id, 150 * MB)
    ledger.post(session, f.reserve(session, small.account, 100 * MB).id)  # all of it used
    session.commit()

    balance = buckets.line_balance(session, line.id, T0)

    big_view = next(v for v in balance.buckets if v.id == big.id)
    assert (big_view.total_bytes, big_view.reserved_bytes, big_view.remaining_bytes) == (
        GB,
        300 * MB,
        GB - 450 * MB,
    )
    assert balance.zones["hk"] == buckets.ZoneView(
        remaining_bytes=GB - 450 * MB,
        total_bytes=GB + 100 * MB,
        reserved_bytes=300 * MB,
        bucket_count=2,
        next_expiry=big.expires_at,  # the emptied bucket expires sooner, but has nothing left
    )
    assert balance.zones["mainland"] == buckets.ZoneView(0, 100 * MB, 0, 1, None)


def test_expire_buckets_moves_what_is_left_to_data_expired(session, frozen_clock) -> None:
    line = f.line(session)
    used_some = grant(session, line, "hk", 1000, days=7)
    ledger.post(session, f.reserve(session, used_some.account, 400).id)
    untouched = grant(session, line, "both", 2000, days=7)
    used_all = grant(session, line, "mainland", 500, days=7)
    ledger.post(session, f.reserve(session, used_all.account, 500).id)
    later = grant(session, line, "hk", 3000, days=30)
    session.commit()

    assert buckets.expire_buckets(session, T0 + 7 * DAY) == 2
    session.commit()

    expired = ledger.system_account(session, "data_expired", "bytes")
    assert f.balances(session, expired) == (0, 600 + 2000, 0, 0)
    assert [
        a.available for a in (used_some.account, untouched.account, used_all.account, later.account)
    ] == [
        0,
        0,
        0,
        3000,
    ]
    moves = session.scalars(
        select(Transfer).where(Transfer.reason == "bucket_expiry").order_by(Transfer.amount)
    ).all()
    assert [(m.debit_account_id, m.amount, m.reference) for m in moves] == [
        (used_some.ledger_account_id, 600, f"bucket:{used_some.id}"),
        (untouched.ledger_account_id, 2000, f"bucket:{untouched.id}"),
    ]
    assert buckets.expire_buckets(session, T0 + 7 * DAY) == 0  # nothing left to move


def test_expire_buckets_releases_expired_reservations_first(session, frozen_clock) -> None:
    line = f.line(session)
    bucket = grant(session, line, "hk", 1000, days=7)
    pending = f.reserve(session, bucket.account, 700, expires_at=T0 + 7 * DAY)
    session.commit()

    frozen_clock.now = T0 + 7 * DAY
    assert buckets.expire_buckets(session) == 1
    session.commit()

    [resolution] = f.resolutions_of(session, pending)
    assert (resolution.kind, resolution.amount) == ("expire_pending", 700)
    assert f.balances(session, bucket.account) == (1000, 1000, 0, 0)
    assert (
        ledger.balances(session, ledger.system_account(session, "data_expired", "bytes")).available
        == 1000
    )


def test_a_reservation_outliving_its_bucket_keeps_its_bytes_until_resolved(session) -> None:
    line = f.line(session)
    bucket = grant(session, line, "hk", 1000, days=7)
    pending = f.reserve(session, bucket.account, 700, expires_at=T0 + 8 * DAY)
    session.commit()

    assert buckets.expire_buckets(session, T0 + 7 * DAY) == 1
    assert f.balances(session, bucket.account) == (300, 1000, 700, 0)
    # Once the reservation is given back, the next run moves those bytes too.
    ledger.void(session, pending.id)
    assert buckets.expire_buckets(session, T0 + 7 * DAY) == 1
    session.commit()
    assert f.balances(session, bucket.account) == (1000, 1000, 0, 0)
    assert (
        ledger.balances(session, ledger.system_account(session, "data_expired", "bytes")).available
        == 1000
    )


# --- drawing ------------------------------------------------------------------------------


def test_draw_takes_what_each_bucket_has_in_order_until_the_amount_is_reached() -> None:
    from dataclasses import dataclass

    @dataclass
    class Held:
        available: int

    @dataclass
    class Drawn:
        name: str
        account: Held

    empty, small, large, unused = (
        Drawn("empty", Held(0)),
        Drawn("small", Held(3)),
        Drawn("large", Held(10)),
        Drawn("unused", Held(5)),
    )
    plan, left = buckets.draw([empty, small, large, unused], 8)
    assert ([(b.name, take) for b, take in plan], left) == ([("small", 3), ("large", 5)], 0)
    plan, left = buckets.draw([small, unused], 20)
    assert ([(b.name, take) for b, take in plan], left) == ([("small", 3), ("unused", 5)], 12)
    assert buckets.draw([], 5) == ([], 5)


def test_drawing_order_is_soonest_expiry_then_the_narrower_zone_then_the_oldest() -> None:
    import uuid

    soon, later = T0 + DAY, T0 + 2 * DAY
    ids = sorted(uuid.uuid4() for _ in range(4))
    found = [
        ("both-soon", soon, "both", T0, ids[0]),
        ("hk-later", later, "hk", T0, ids[1]),
        ("hk-soon-newer", soon, "hk", T0 + DAY, ids[2]),
        ("hk-soon-older", soon, "hk", T0, ids[3]),
    ]
    ordered = sorted(found, key=lambda b: buckets.drawing_order(*b[1:]))
    assert [b[0] for b in ordered] == ["hk-soon-older", "hk-soon-newer", "both-soon", "hk-later"]
    assert buckets.counts_in("both", "hk") and buckets.counts_in("hk", "hk")
    assert not buckets.counts_in("mainland", "hk")
