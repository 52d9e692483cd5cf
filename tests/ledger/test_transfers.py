"""Transfers, reservations and their resolution, on each backend.

Each test commits its work, so the `db_url` fixture's final `ledger verify` checks it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.ledger import factories as f
from tests.ledger.factories import T0
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount, Transfer
from tongka.ledger.service import InsufficientBalance, ReservationExpired, ReservationResolved

# --- accounts -----------------------------------------------------------------------------


def test_a_new_account_is_empty_and_may_not_go_negative(session) -> None:
    account = ledger.open_account(session, unit="bytes", kind="bucket")
    session.commit()

    assert f.balances(session, account) == (0, 0, 0, 0)
    assert (account.code, account.must_not_go_negative, account.available) == (None, True, 0)


def test_system_account_is_made_on_first_use_and_found_after(sessions) -> None:
    with transaction(sessions) as s:
        made = ledger.system_account(s, "data_issued", "bytes")
        assert ledger.system_account(s, "data_issued", "bytes") is made
        assert (made.code, made.kind, made.unit, made.must_not_go_negative) == (
            "system:data_issued:bytes",
            "system",
            "bytes",
            False,
        )
    with transaction(sessions) as s:
        assert ledger.system_account(s, "data_issued", "bytes").id == made.id
        assert ledger.system_account(s, "data_issued", "HKD").id != made.id
        assert ledger.system_account(s, "data_used", "bytes").id != made.id
    with sessions() as s:
        count = s.scalar(
            select(func.count()).where(LedgerAccount.code == "system:data_issued:bytes")
        )
    assert count == 1


def test_an_operator_account_made_in_a_transaction_rolled_back_is_made_again(sessions) -> None:
    """Operator accounts' ids are kept for the process: one that was never committed is not trusted."""
    with sessions() as s:
        gone = ledger.system_account(s, "data_rolled_back", "bytes").id
        s.rollback()
    with transaction(sessions) as s:
        made = ledger.system_account(s, "data_rolled_back", "bytes")
        assert made.code == "system:data_rolled_back:bytes" and made in s
    with transaction(sessions) as s:  # another session: found by its id, the same row
        assert ledger.system_account(s, "data_rolled_back", "bytes").id == made.id
        # The id first given (SQLite may give it again to another row) names no other account.
        other = s.get(LedgerAccount, gone)
        assert other is None or other.id == made.id


def test_credited_tells_whether_a_reference_credited_an_account(session) -> None:
    a = f.funded_account(session, 1000)
    b = ledger.open_account(session, unit="bytes", kind="bucket")
    ledger.transfer(session, a, b, 300, reason="correction", reference="ticket:8")
    assert ledger.credited(session, b, "ticket:8")
    assert not ledger.credited(session, a, "ticket:8")  # debited, not credited
    assert not ledger.credited(session, b, "ticket:9")
    session.commit()


# --- posted transfers ---------------------------------------------------------------------


def test_transfer_moves_the_amount_now(session) -> None:
    a = f.funded_account(session, 1000)
    b = ledger.open_account(session, unit="bytes", kind="bucket")

    entry = ledger.transfer(session, a, b, 300, reason="correction", reference="ticket:7")
    session.commit()

    assert f.balances(session, a) == (300, 1000, 0, 0)
    assert f.balances(session, b) == (0, 300, 0, 0)
    assert (a.available, b.available) == (700, 300)
    stored = session.get(Transfer, entry.id)
    assert (stored.kind, stored.debit_account_id, stored.credit_account_id) == (
        "posted",
        a.id,
        b.id,
    )
    assert (stored.amount, stored.reason, stored.reference) == (300, "correction", "ticket:7")
    assert (stored.pending_id, stored.expires_at) == (None, None)


def test_transfer_beyond_available_is_refused_before_anything_changes(session) -> None:
    a = f.funded_account(session, 1000)
    b = ledger.open_account(session, unit="bytes", kind="bucket")
    f.reserve(session, a, 400)  # available is now 600, though 1000 are posted
    before = (f.balances(session, a), f.balances(session, b), f.transfer_count(session))

    with pytest.raises(InsufficientBalance) as refused:
        ledger.transfer(session, a, b, 601, reason="correction", reference="ticket:8")

    assert refused.value.params == {"available": 600, "requested": 601}
    assert refused.value.status == 409 and refused.value.code == "insufficient_balance"
    assert not session.dirty and not session.new
    assert (f.balances(session, a), f.balances(session, b), f.transfer_count(session)) == before

    ledger.transfer(session, a, b, 600, reason="correction", reference="ticket:8")
    session.commit()
    assert a.available == 0 and f.balances(session, a) == (600, 1000, 400, 0)


def test_operator_accounts_may_go_negative(session) -> None:
    issued = ledger.system_account(session, "data_issued", "bytes")
    f.funded_account(session, 5000)
    assert ledger.balances(session, issued).available == -5000

    # Also when spending from them directly, posted or reserved.
    other = ledger.system_account(session, "data_adjusted", "bytes")
    ledger.transfer(session, issued, other, 10**12, reason="correction", reference="ticket:9")
    f.reserve(session, issued, 10**12)
    session.commit()

    assert ledger.balances(session, issued).available == -5000 - 2 * 10**12
    assert f.balances(session, issued) == (5000 + 10**12, 0, 10**12, 0)


def test_an_account_opened_without_a_floor_may_go_negative(session) -> None:
    wallet = ledger.open_account(session, unit="HKD", kind="wallet", must_not_go_negative=False)
    ledger.transfer(
        session,
        wallet,
        ledger.system_account(session, "revenue", "HKD"),
        250,
        reason="r",
        reference="x",
    )
    session.commit()
    assert wallet.available == -250


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "10"])
def test_non_positive_or_non_integer_amounts_are_refused(session, amount) -> None:
    a = f.funded_account(session, 1000)
    b = ledger.open_account(session, unit="bytes", kind="bucket")
    session.commit()

    with pytest.raises(ValueError, match="positive integer"):
        ledger.transfer(session, a, b, amount, reason="r", reference="x")
    with pytest.raises(ValueError, match="positive integer"):
        f.reserve(session, a, amount)
    assert f.balances(session, a) == (0, 1000, 0, 0)


def test_units_must_match(session) -> None:
    data = f.funded_account(session, 1000)
    money = ledger.open_account(session, unit="HKD", kind="wallet")
    session.commit()

    with pytest.raises(ValueError, match="unit mismatch"):
        ledger.transfer(session, data, money, 10, reason="r", reference="x")
    with pytest.raises(ValueError, match="unit mismatch"):
        ledger.reserve(session, data, money, 10, reason="r", reference="x", expires_at=T0)
    with pytest.raises(
        ValueError, match="unit mismatch"
    ):  # even from an account allowed to go negative
        issued_hkd = ledger.system_account(session, "data_issued", "HKD")
        ledger.transfer(session, issued_hkd, data, 10, reason="r", reference="x")


def test_an_account_cannot_pay_itself(session) -> None:
    a = f.funded_account(session, 1000)
    with pytest.raises(ValueError, match="two different accounts"):
        ledger.transfer(session, a, a, 10, reason="r", reference="x")


# --- reservations -------------------------------------------------------------------------


def test_reserve_holds_the_amount_without_moving_it(session) -> None:
    a = f.funded_account(session, 1000)
    used = f.sink(session)
    pending = f.reserve(session, a, 300, expires_at=T0 + timedelta(minutes=5), reason="usage")
    session.commit()
    session.expire_all()  # read expires_at back from the database

    assert f.balances(session, a) == (0, 1000, 300, 0)
    assert f.balances(session, used) == (0, 0, 0, 300)
    assert a.available == 700
    stored = session.get(Transfer, pending.id)
    assert (stored.kind, stored.amount, stored.pending_id, stored.reason) == (
        "pending",
        300,
        None,
        "usage",
    )
    assert stored.expires_at == T0 + timedelta(minutes=5) and stored.expires_at.tzinfo is not None


def test_reservations_together_cannot_exceed_the_balance(session) -> None:
    a = f.funded_account(session, 1000)
    f.reserve(session, a, 600)
    before = (f.balances(session, a), f.transfer_count(session))

    with pytest.raises(InsufficientBalance) as refused:
        f.reserve(session, a, 401)

    assert refused.value.params == {"available": 400, "requested": 401}
    assert (f.balances(session, a), f.transfer_count(session)) == before
    f.reserve(session, a, 400)
    session.commit()
    assert a.available == 0


def test_post_settles_the_whole_reservation(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    used = f.sink(session)
    pending = f.reserve(session, a, 300, reason="usage")

    entry = ledger.post(session, pending.id)
    session.commit()

    assert f.balances(session, a) == (300, 1000, 0, 0)
    assert f.balances(session, used) == (0, 300, 0, 0)
    assert (entry.kind, entry.pending_id, entry.amount) == ("post_pending", pending.id, 300)
    assert (entry.debit_account_id, entry.credit_account_id) == (a.id, used.id)
    assert (entry.reason, entry.reference) == ("usage", pending.reference)


def test_post_for_less_releases_the_rest(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    used = f.sink(session)
    pending = f.reserve(session, a, 300)

    entry = ledger.post(session, pending.id, 120, reason="usage_final")
    session.commit()

    assert (entry.amount, entry.reason) == (120, "usage_final")
    assert f.balances(session, a) == (120, 1000, 0, 0)
    assert f.balances(session, used) == (0, 120, 0, 0)
    assert a.available == 880


def test_post_for_nothing_releases_everything(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    pending = f.reserve(session, a, 300)

    assert ledger.post(session, pending.id, 0).amount == 0
    session.commit()
    assert f.balances(session, a) == (0, 1000, 0, 0)


@pytest.mark.parametrize("amount", [-1, 301, True, 1.5])
def test_post_outside_the_reserved_amount_is_refused_and_leaves_it_open(
    session, frozen_clock, amount
) -> None:
    a = f.funded_account(session, 1000)
    pending = f.reserve(session, a, 300)
    before = (f.balances(session, a), f.transfer_count(session))

    with pytest.raises(ValueError, match="between zero and the reserved amount"):
        ledger.post(session, pending.id, amount)

    assert (f.balances(session, a), f.transfer_count(session)) == before
    ledger.post(session, pending.id, 300)  # still open
    session.commit()
    assert f.balances(session, a) == (300, 1000, 0, 0)


def test_void_gives_the_whole_amount_back(session) -> None:
    a = f.funded_account(session, 1000)
    used = f.sink(session)
    pending = f.reserve(session, a, 300)

    entry = ledger.void(session, pending.id, reason="session_cancelled")
    session.commit()

    assert (entry.kind, entry.pending_id, entry.amount) == ("void_pending", pending.id, 300)
    assert entry.reason == "session_cancelled"
    assert f.balances(session, a) == (0, 1000, 0, 0)
    assert f.balances(session, used) == (0, 0, 0, 0)


def _resolve(session, how: str, pending: Transfer, frozen_clock) -> int | None:  # type: ignore[no-untyped-def]
    """Resolve `pending` by post, void or the expiry job (which says how many it expired)."""
    if how == "post":
        ledger.post(session, pending.id)
    elif how == "void":
        ledger.void(session, pending.id)
    else:
        frozen_clock.now = pending.expires_at + timedelta(seconds=1)
        return ledger.expire_reservations(session)
    return None


@pytest.mark.parametrize("first", ["post", "void", "expire"])
@pytest.mark.parametrize("second", ["post", "void", "expire"])
def test_a_reservation_is_resolved_exactly_once(session, frozen_clock, first, second) -> None:
    a = f.funded_account(session, 1000)
    pending = f.reserve(session, a, 300)
    assert _resolve(session, first, pending, frozen_clock) == (1 if first == "expire" else None)
    session.commit()
    after_first = (f.balances(session, a), f.transfer_count(session))

    if second == "expire":
        assert _resolve(session, second, pending, frozen_clock) == 0  # nothing left to expire
    else:
        with pytest.raises(ReservationResolved):
            _resolve(session, second, pending, frozen_clock)
    session.commit()

    assert (f.balances(session, a), f.transfer_count(session)) == after_first
    [resolution] = f.resolutions_of(session, pending)
    assert (
        resolution.kind
        == {"post": "post_pending", "void": "void_pending", "expire": "expire_pending"}[first]
    )


def test_post_is_refused_from_the_moment_the_reservation_expires(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    on_time = f.reserve(session, a, 100, expires_at=T0 + timedelta(minutes=5))
    late = f.reserve(session, a, 200, expires_at=T0 + timedelta(minutes=5))
    session.commit()

    frozen_clock.now = T0 + timedelta(minutes=5) - timedelta(microseconds=1)
    ledger.post(session, on_time.id)
    frozen_clock.now = T0 + timedelta(minutes=5)
    with pytest.raises(ReservationExpired):
        ledger.post(session, late.id)

    # Refused, but still held until the expiry job (or a void) releases it.
    assert f.balances(session, a) == (100, 1000, 200, 0)
    assert ledger.expire_reservations(session) == 1
    session.commit()
    assert f.balances(session, a) == (100, 1000, 0, 0)
    [resolution] = f.resolutions_of(session, late)
    assert (resolution.kind, resolution.amount) == ("expire_pending", 200)


def test_void_is_allowed_after_expiry(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    pending = f.reserve(session, a, 200, expires_at=T0 + timedelta(minutes=5))
    frozen_clock.advance(hours=1)

    ledger.void(session, pending.id)
    assert ledger.expire_reservations(session) == 0
    session.commit()
    assert f.balances(session, a) == (0, 1000, 0, 0)


def test_expire_reservations_releases_only_those_due(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    soon = f.reserve(session, a, 100, expires_at=T0 + timedelta(minutes=1))
    exactly_now = f.reserve(session, a, 200, expires_at=T0 + timedelta(minutes=2))
    later = f.reserve(session, a, 300, expires_at=T0 + timedelta(minutes=10))
    settled = f.reserve(session, a, 50, expires_at=T0 + timedelta(minutes=1))
    ledger.post(session, settled.id)
    session.commit()

    frozen_clock.now = T0 + timedelta(minutes=2)
    assert ledger.expire_reservations(session) == 2
    session.commit()

    assert f.balances(session, a) == (50, 1000, 300, 0)
    for pending in (soon, exactly_now):
        [resolution] = f.resolutions_of(session, pending)
        assert (resolution.kind, resolution.amount) == ("expire_pending", pending.amount)
    assert f.resolutions_of(session, later) == []
    assert ledger.expire_reservations(session) == 0

    # An explicit `now` wins over the clock.
    assert ledger.expire_reservations(session, T0 + timedelta(minutes=10)) == 1
    session.commit()
    assert f.balances(session, a) == (50, 1000, 0, 0)


def test_only_reservations_can_be_resolved(session, frozen_clock) -> None:
    a = f.funded_account(session, 1000)
    pending = f.reserve(session, a, 100)
    resolution = ledger.post(session, pending.id)
    session.commit()
    funding = session.scalar(select(Transfer.id).where(Transfer.kind == "posted"))

    for not_a_reservation in (funding, resolution.id, 10**9):
        with pytest.raises(ValueError, match="is not a reservation"):
            ledger.post(session, not_a_reservation)
        with pytest.raises(ValueError, match="is not a reservation"):
            ledger.void(session, not_a_reservation)
