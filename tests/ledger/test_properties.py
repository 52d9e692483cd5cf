"""Property test: random interleavings of ledger operations keep its invariants.

A state machine drives three customer accounts through transfers, reservations, posts
(for a random part), voids, the passing of time on a fake clock and the expiry job,
some asking for more than is available. Beside the ledger it keeps a plain model of
what each balance should be.
After every step: the stored balances equal the model, no customer account is below
zero, each unit sums to zero, each reservation has at most one resolution (and exactly
the one the model expects), and `verify()` finds nothing.

SQLite only, each example on a fresh copy of the migrated database: the invariants are
about the service's arithmetic, which does not depend on the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.ledger.factories import T0
from tongka import clock
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount, Transfer
from tongka.ledger.service import (
    InsufficientBalance,
    ReservationExpired,
    ReservationResolved,
)

CUSTOMERS = 3
SINK = CUSTOMERS  # index of the operator's `data_used` account among the destinations
amounts = st.integers(min_value=1, max_value=1200)  # now and then more than an account holds


@dataclass
class Reservation:
    id: int
    debit: int
    credit: int
    amount: int
    expires_at: datetime
    resolved_by: str | None = None  # post_pending | void_pending | expire_pending


class LedgerMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.now = T0
        with transaction(self.sessions) as s:
            self.customers = [
                ledger.open_account(s, unit="bytes", kind="bucket").id for _ in range(CUSTOMERS)
            ]
            self.issued = ledger.system_account(s, "data_issued", "bytes").id
            self.used = ledger.system_account(s, "data_used", "bytes").id
        # The model: posted balance (credits less debits) and amount reserved, per customer.
        self.balance = dict.fromkeys(self.customers, 0)
        self.held = dict.fromkeys(self.customers, 0)
        self.open: dict[int, Reservation] = {}
        self.all: dict[int, Reservation] = {}

    def teardown(self) -> None:
        self.engine.dispose()

    # --- helpers ----------------------------------------------------------------------

    def available(self, account_id: int) -> int:
        return self.balance[account_id] - self.held[account_id]

    def destination(self, index: int) -> int:
        return self.used if index == SINK else self.customers[index]

    def credit(self, account_id: int, amount: int) -> None:
        if account_id in self.balance:
            self.balance[account_id] += amount

    def snapshot(self, s: Session) -> list[tuple[int, ...]]:
        rows = s.execute(
            select(
                LedgerAccount.id,
                LedgerAccount.debits_posted,
                LedgerAccount.credits_posted,
                LedgerAccount.debits_pending,
                LedgerAccount.credits_pending,
            ).order_by(LedgerAccount.id)
        ).all()
        return [tuple(r) for r in rows] + [
            (s.scalar(select(func.count()).select_from(Transfer)) or 0,)
        ]

    def refused(self, s: Session, error: type[Exception], call) -> None:  # type: ignore[no-untyped-def]
        """`call` must raise `error` having changed nothing, not even in the session (no rollback here)."""
        before = self.snapshot(s)
        with pytest.raises(error):
            call()
        assert not s.new and not s.dirty
        assert self.snapshot(s) == before  # a SELECT autoflushes: a half-made change would show

    # --- rules ------------------------------------------------------------------------

    @initialize(funds=st.lists(st.integers(0, 3000), min_size=CUSTOMERS, max_size=CUSTOMERS))
    def start_funded(self, funds: list[int]) -> None:
        for who, amount in enumerate(funds):
            if amount:
                self.fund(who, amount)

    @rule(who=st.integers(0, CUSTOMERS - 1), amount=st.integers(1, 1000))
    def fund(self, who: int, amount: int) -> None:
        account = self.customers[who]
        with transaction(self.sessions) as s:
            ledger.transfer(
                s,
                s.get(LedgerAccount, self.issued),
                s.get(LedgerAccount, account),
                amount,
                reason="pack_purchase",
                reference="test",
            )
        self.balance[account] += amount

    @rule(who=st.integers(0, CUSTOMERS - 1), to=st.integers(0, SINK), amount=amounts)
    def transfer(self, who: int, to: int, amount: int) -> None:
        debit, credit = self.customers[who], self.destination(to)
        if credit == debit:
            credit = self.used
        with transaction(self.sessions) as s:
            call = lambda: ledger.transfer(  # noqa: E731
                s,
                s.get(LedgerAccount, debit),
                s.get(LedgerAccount, credit),
                amount,
                reason="usage",
                reference="test",
            )
            if amount > self.available(debit):
                return self.refused(s, InsufficientBalance, call)
            call()
        self.balance[debit] -= amount
        self.credit(credit, amount)

    @rule(
        target=reservations,
        who=st.integers(0, CUSTOMERS - 1),
        to=st.integers(0, SINK),
        amount=amounts,
        minutes=st.integers(1, 60),
    )
    def reserve(self, who: int, to: int, amount: int, minutes: int):  # type: ignore[no-untyped-def]
        debit, credit = self.customers[who], self.destination(to)
        if credit == debit:
            credit = self.used
        expires_at = self.now + timedelta(minutes=minutes)
        with transaction(self.sessions) as s:
            call = lambda: ledger.reserve(  # noqa: E731
                s,
                s.get(LedgerAccount, debit),
                s.get(LedgerAccount, credit),
                amount,
                reason="usage",
                reference="test",
                expires_at=expires_at,
            )
            if amount > self.available(debit):
                self.refused(s, InsufficientBalance, call)
                return multiple()
            pending_id = call().id
        self.held[debit] += amount
        self.all[pending_id] = self.open[pending_id] = Reservation(
            pending_id, debit, credit, amount, expires_at
        )
        return pending_id

    @rule(pending_id=reservations, data=st.data())
    def post(self, pending_id: int, data: st.DataObject) -> None:
        r = self.all[pending_id]
        amount = data.draw(st.one_of(st.none(), st.integers(0, r.amount)), label="post amount")
        with transaction(self.sessions) as s:
            call = lambda: ledger.post(s, pending_id, amount)  # noqa: E731
            if r.resolved_by:
                return self.refused(s, ReservationResolved, call)
            if self.now >= r.expires_at:
                return self.refused(s, ReservationExpired, call)
            call()
        posted = r.amount if amount is None else amount
        self.held[r.debit] -= r.amount
        self.balance[r.debit] -= posted
        self.credit(r.credit, posted)
        self.resolve(r, "post_pending")

    @rule(pending_id=reservations)
    def void(self, pending_id: int) -> None:
        r = self.all[pending_id]
        with transaction(self.sessions) as s:
            call = lambda: ledger.void(s, pending_id)  # noqa: E731
            if r.resolved_by:
                return self.refused(s, ReservationResolved, call)
            call()
        self.held[r.debit] -= r.amount
        self.resolve(r, "void_pending")

    @rule(minutes=st.integers(0, 60), run_the_job=st.booleans())
    def time_passes(self, minutes: int, run_the_job: bool) -> None:
        # Without the job, reservations past due stay open a while: post is then refused, void is not.
        self.now += timedelta(minutes=minutes)
        if not run_the_job:
            return
        due = [r for r in self.open.values() if r.expires_at <= self.now]
        with transaction(self.sessions) as s:
            assert ledger.expire_reservations(s) == len(due)
        for r in due:
            self.held[r.debit] -= r.amount
            self.resolve(r, "expire_pending")

    def resolve(self, r: Reservation, kind: str) -> None:
        r.resolved_by = kind
        del self.open[r.id]

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def ledger_holds_together(self) -> None:
        with self.sessions() as s:
            accounts = {a.id: a for a in s.scalars(select(LedgerAccount))}
            for account_id in self.customers:
                a = accounts[account_id]
                assert a.available >= 0
                assert (a.credits_posted - a.debits_posted, a.debits_pending) == (
                    self.balance[account_id],
                    self.held[account_id],
                )
            # One unit, bytes; operator accounts' totals are summed from their transfers.
            assert (
                sum(
                    (b := ledger.balances(s, a)).credits_posted - b.debits_posted
                    for a in accounts.values()
                )
                == 0
            )

            resolutions = s.execute(
                select(Transfer.pending_id, func.count(), func.min(Transfer.kind))
                .where(Transfer.pending_id.is_not(None))
                .group_by(Transfer.pending_id)
            ).all()
            assert all(count == 1 for _, count, _ in resolutions)
            assert {p: kind for p, _, kind in resolutions} == {
                r.id: r.resolved_by for r in self.all.values() if r.resolved_by
            }
            assert ledger.verify(s) == []


def test_random_operations_keep_the_ledger_whole(
    fresh_database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def new_machine() -> LedgerMachine:
        machine = LedgerMachine(fresh_database())
        monkeypatch.setattr(clock, "now", lambda: machine.now)
        return machine

    run_state_machine_as_test(
        new_machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
