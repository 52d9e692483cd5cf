"""`verify()` and `tongka ledger verify` catch a ledger changed behind the service's back.

Each tampering is undone when its block ends, pass or fail: the `db_url` fixture then
checks the ledger is clean, and a failing test should not also report a dirty ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.ledger import factories as f
from tests.ledger.factories import T0
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount
from tongka.ledger.service import Mismatch

pytestmark = pytest.mark.usefixtures("frozen_clock")


def _some_history(sessions) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A customer account with every kind of entry (credited 1000, posted 150, 250 still reserved).

    Returns its id and its sink's.
    """
    with transaction(sessions) as s:
        a = f.funded_account(s, 1000)
        f.reserve(s, a, 300)  # expired below
        f.reserve(s, a, 250, expires_at=T0 + timedelta(days=3650))  # stays open
        ledger.post(s, f.reserve(s, a, 200, expires_at=T0 + timedelta(days=3650)).id, 150)
        ledger.void(s, f.reserve(s, a, 100, expires_at=T0 + timedelta(days=3650)).id)
        ledger.expire_reservations(s, T0 + timedelta(days=1))  # expires the first
        return a.id, f.sink(s).id


def _execute(sessions, sql: str, **params: object) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        s.execute(text(sql), params)


@contextmanager
def _tampered(sessions, sql: str, undo: str, **params: object) -> Iterator[None]:  # type: ignore[no-untyped-def]
    _execute(sessions, sql, **params)
    try:
        yield
    finally:
        _execute(sessions, undo, **params)


_UNDO_FORGED = "DELETE FROM ledger_transfers WHERE reason = 'forged'"


def _verify(sessions) -> list[Mismatch]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return ledger.verify(s)


def test_a_clean_ledger_verifies(sessions, cli) -> None:
    _some_history(sessions)
    assert _verify(sessions) == []
    result = cli("ledger", "verify")
    assert result.exit_code == 0, result.output
    assert "every balance matches its entries" in result.stdout


@pytest.mark.parametrize(
    "column", ["debits_posted", "credits_posted", "debits_pending", "credits_pending"]
)
def test_a_changed_balance_is_named_by_account_and_column(sessions, cli, column) -> None:
    account_id, _ = _some_history(sessions)
    with sessions() as s:
        stored = s.scalar(
            text(f"SELECT {column} FROM ledger_accounts WHERE id = :id"), {"id": account_id}
        )

    with _tampered(
        sessions,
        f"UPDATE ledger_accounts SET {column} = {column} + 7 WHERE id = :id",
        f"UPDATE ledger_accounts SET {column} = {column} - 7 WHERE id = :id",
        id=account_id,
    ):
        problem = Mismatch(account_id, column, stored + 7, stored)
        assert _verify(sessions) == [problem]
        result = cli("ledger", "verify")
        assert result.exit_code == 1
        assert str(problem) in result.stderr
        assert (
            f"account {account_id}: {column}: stored {stored + 7}, recomputed {stored}"
            in result.stderr
        )
        assert "ledger: 1 problem(s)" in result.stderr

    assert _verify(sessions) == []
    assert cli("ledger", "verify").exit_code == 0


def test_an_entry_written_behind_the_ledger_is_caught(sessions, cli) -> None:
    account_id, sink_id = _some_history(sessions)
    # 5000 bytes out of an account credited with 1000, without touching the cached totals.
    with _tampered(
        sessions, _FORGED_POSTED, _UNDO_FORGED, d=account_id, c=sink_id, amount=5000, now=T0
    ):
        problems = _verify(sessions)
        assert Mismatch(account_id, "debits_posted", 150, 5150) in problems
        assert Mismatch(account_id, "spent beyond its credits", 1000, 5150 + 250) in problems
        # The sink is an operator account, whose totals are its transfers: nothing cached to disagree.
        # The entry balances, so each unit still sums to zero.
        assert len(problems) == 2
        assert cli("ledger", "verify").exit_code == 1


def test_an_operator_account_keeps_no_totals_and_one_written_there_is_caught(sessions) -> None:
    _account_id, sink_id = _some_history(sessions)
    with sessions() as s:
        sink = s.get_one(LedgerAccount, sink_id)
        assert (
            sink.debits_posted,
            sink.credits_posted,
            sink.debits_pending,
            sink.credits_pending,
        ) == (0, 0, 0, 0)
        assert ledger.balances(s, sink) == ledger.Balances(0, 150, 0, 250)
    with _tampered(
        sessions,
        "UPDATE ledger_accounts SET credits_posted = 150 WHERE id = :a",
        "UPDATE ledger_accounts SET credits_posted = 0 WHERE id = :a",
        a=sink_id,
    ):
        assert _verify(sessions) == [Mismatch(sink_id, "credits_posted", 150, 0)]


_FORGED_POSTED = (
    "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount, reason, reference, created_at)"
    " VALUES ('posted', :d, :c, :amount, 'forged', 'forged', :now)"
)
_FORGED_RESOLUTION = (
    "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount, pending_id, reason, reference,"
    " created_at) VALUES (:kind, :d, :c, :amount, :p, 'forged', 'forged', :now)"
)


@pytest.mark.parametrize(
    ("kind", "amount", "of", "swapped", "complaint", "values"),
    [
        ("post_pending", 251, "pending", False, "posts more than reserved", (250, 251)),
        ("void_pending", 249, "pending", False, "releases another amount", (250, 249)),
        ("void_pending", 250, "pending", True, "names other accounts than {p}", (None, None)),
        (
            "post_pending",
            1,
            "posted",
            False,
            "resolves a non-reservation {p}",
            ("posted", "pending"),
        ),
    ],
)
def test_a_resolution_that_does_not_match_its_reservation_is_caught(
    sessions, kind, amount, of, swapped, complaint, values
) -> None:
    account_id, sink_id = _some_history(sessions)
    with sessions() as s:  # the open reservation of 250, or the funding of 1000
        target = s.scalar(
            text("SELECT id FROM ledger_transfers WHERE kind = :of AND amount IN (250, 1000)"),
            {"of": of},
        )
    d, c = (sink_id, account_id) if swapped else (account_id, sink_id)
    with _tampered(
        sessions,
        _FORGED_RESOLUTION,
        _UNDO_FORGED,
        kind=kind,
        d=d,
        c=c,
        amount=amount,
        p=target,
        now=T0,
    ):
        with sessions() as s:
            forged = s.scalar(text("SELECT id FROM ledger_transfers WHERE reason = 'forged'"))
        ledger_wide = [p for p in _verify(sessions) if p.account_id is None]
        assert ledger_wide == [
            Mismatch(None, f"transfer {forged} {complaint.format(p=target)}", *values)
        ]


def test_an_entry_mixing_units_is_caught(sessions) -> None:
    account_id, _ = _some_history(sessions)
    with transaction(sessions) as s:
        wallet = ledger.open_account(s, unit="HKD", kind="wallet").id
    with _tampered(
        sessions, _FORGED_POSTED, _UNDO_FORGED, d=account_id, c=wallet, amount=5, now=T0
    ):
        ledger_wide = {
            p.what: (p.stored, p.recomputed) for p in _verify(sessions) if p.account_id is None
        }
        [mixing] = [what for what in ledger_wide if what.endswith("mixes units")]
        assert ledger_wide[mixing] == ("bytes", "HKD")
        assert ledger_wide["bytes does not sum to zero"] == (0, -5)
        assert ledger_wide["HKD does not sum to zero"] == (0, 5)
