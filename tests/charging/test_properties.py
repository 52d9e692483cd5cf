"""Property test: random interleavings of quota requests, usage reports, releases, expiry,
renewals and overage switched on and off.

A state machine drives two lines with buckets in each zone (and more bought along the
way) through charging sessions on mainland and Hong Kong networks, while a fake clock
moves on and the ledger's expiry job runs now and then. Each line's owner has a wallet
and a monthly cap, and turns overage on and off. Beside it a plain model keeps the
bytes reported.
After every step: with overage off no grant ever exceeded what the line had available
in the session's zone when it was asked (less what it owed), and with it on the rest
never cost more than the wallet held; no bucket or wallet is below zero; no month's
overage (charged and held) is above the cap; every settled grant's reservations are
resolved (each exactly once); a grant reported twice charges once; every reported byte
is charged — from buckets, as overage, or owed — never free; and `ledger.verify` finds
nothing.

SQLite only, each example on a fresh copy of the migrated database: these invariants
are about the service's arithmetic, not the backend.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from tests.charging import calls
from tests.charging import factories as f
from tests.charging.calls import ChargingSessionReleased
from tests.ledger.factories import T0
from tests.wallet import factories as wallet
from tongka import clock
from tongka.account.models import Account, Line
from tongka.charging import overage
from tongka.charging.models import (
    ChargingSession,
    Grant,
    GrantReservation,
    LineOverage,
    OverageMonth,
)
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.ledger import buckets as line_buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, LedgerAccount, Transfer
from tongka.money import MB
from tongka.wallet import service as wallets

PLMNS = ("454-00", "454-12", "460-00", "460-01")  # two Hong Kong networks, two mainland ones
ZONES = ("hk", "mainland", "both")
volumes = st.integers(min_value=1, max_value=400)
CAP = 300  # cents a month; overage costs a cent a byte in Hong Kong, two on the mainland (tiny volumes here)
WALLET = 400


class ChargingMachine(RuleBasedStateMachine):
    sessions_ = Bundle("charging_sessions")
    grants = Bundle("grants")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.now = T0
        self.refs = itertools.count(1)
        self.reported = 0  # bytes reported: every one must be charged somewhere
        self.released: set[object] = set()
        with transaction(self.sessions) as s:
            overage.set_rate(s, "hk", "HKD", MB)
            overage.set_rate(s, "mainland", "HKD", 2 * MB)
            self.lines = [f.line(s).id, f.line(s).id]
            for n, line_id in enumerate(self.lines):
                owner = Account(
                    username=f"owner{n}", email="o@example.com", password_hash="x", language="en"
                )
                s.add(owner)
                s.flush()
                line = s.get_one(Line, line_id)
                line.account_id = owner.id
                wallets.credit(s, owner, WALLET, "HKD", reference=f"topup-{n}")
                overage.configure(s, line, owner, enabled=False, monthly_cap=CAP, currency="HKD")
                for zone, days in zip(ZONES, (1, 2, 2), strict=True):
                    self._bucket(s, line_id, zone, 150, days)  # small: running out is common

    def teardown(self) -> None:
        self.engine.dispose()

    def _bucket(self, s, line_id, zone: str, amount: int, days: float) -> None:  # type: ignore[no-untyped-def]
        from tongka.account.models import Line

        f.bucket(s, s.get(Line, line_id), zone, amount, days=days, valid_from=self.now)

    def wallet_available(self, s, line_id) -> int:  # type: ignore[no-untyped-def]
        return wallet.available(s, s.get_one(Line, line_id).account_id)

    def zone_available(self, s, cs: ChargingSession) -> int:  # type: ignore[no-untyped-def]
        rows = s.scalars(
            select(Bucket)
            .where(
                Bucket.line_id == cs.line_id,
                Bucket.zone.in_((cs.zone, "both")),
                Bucket.valid_from <= self.now,
                Bucket.expires_at > self.now,
            )
            .execution_options(populate_existing=True)
        ).all()
        return sum(
            s.get(LedgerAccount, b.ledger_account_id, populate_existing=True).available
            for b in rows
        )

    # --- rules ------------------------------------------------------------------------

    @rule(target=sessions_, line=st.integers(0, 1), plmn=st.sampled_from(PLMNS))
    def open_session(self, line: int, plmn: str):  # type: ignore[no-untyped-def]
        from tongka.account.models import Line

        with transaction(self.sessions) as s:
            return calls.open_session(
                s, s.get(Line, self.lines[line]), plmn, f"ref-{next(self.refs)}"
            ).id

    @rule(
        target=grants,
        cs_id=sessions_,
        rating_group=st.integers(1, 3),
        requested=volumes,
        validity=st.integers(30, 900),
    )
    def request(self, cs_id, rating_group: int, requested: int, validity: int):  # type: ignore[no-untyped-def]
        with transaction(self.sessions) as s:
            cs = s.get(ChargingSession, cs_id)
            before = self.zone_available(s, cs)
            if cs_id in self.released:
                with pytest.raises(ChargingSessionReleased):
                    calls.request_quota(s, cs, rating_group, requested, validity, self.now)
                return None
            owed = line_buckets.owed(s, cs.line_id, cs.zone)
            overage_on = s.get_one(LineOverage, cs.line_id).enabled
            wallet_before = self.wallet_available(s, cs.line_id)
            result = calls.request_quota(s, cs, rating_group, requested, validity, self.now)
            from_buckets = min(requested, max(0, before - owed))
            from_wallet = result.granted_bytes - from_buckets
            if not overage_on:
                assert from_wallet == 0
            assert 0 <= from_wallet <= requested - from_buckets
            assert self.zone_available(s, cs) == max(0, before - owed) - from_buckets
            if result.granted_bytes == 0:
                assert result.result_code == "QUOTA_LIMIT_REACHED" and result.grant is None
                return None
            assert sum(r.volume_bytes for r in result.grant.reservations) == result.granted_bytes
            assert sum(r.volume_bytes for r in result.grant.reservations if r.per_mb) == from_wallet
            assert wallet_before - self.wallet_available(s, cs.line_id) == sum(
                r.amount for r in result.grant.reservations if r.per_mb
            )
            return result.grant.id

    @rule(grant_id=grants, used=st.integers(0, 500))
    def report(self, grant_id, used: int) -> None:  # type: ignore[no-untyped-def]
        if grant_id is None:
            return
        with transaction(self.sessions) as s:
            grant = s.get(Grant, grant_id)
            was_open = grant.status == "open"
            result = calls.report_usage(s, grant, used)
            assert result.already_settled == (not was_open)
            if was_open:
                assert result.charged_bytes <= min(used, grant.granted_bytes)
                assert result.charged_bytes + result.unreserved_bytes == used
                self.reported += used
                if result.unreserved_bytes:  # as the API does: beyond the grant is still charged
                    cs = s.get_one(ChargingSession, grant.charging_session_id)
                    calls.charge_usage(
                        s,
                        s.get_one(Line, cs.line_id),
                        cs.zone,
                        result.unreserved_bytes,
                        self.now,
                        reference="test",
                    )

    @rule(cs_id=sessions_, rating_group=st.integers(1, 3), used=st.integers(0, 600))
    def report_for_the_session(self, cs_id, rating_group: int, used: int) -> None:  # type: ignore[no-untyped-def]
        """As an update does: the usage of a rating group settles its open grants, the excess is charged."""
        with transaction(self.sessions) as s:
            cs = s.get(ChargingSession, cs_id)
            calls.settle_usage(s, cs, rating_group, used)
            self.reported += used

    @rule(line=st.integers(0, 1), enabled=st.booleans())
    def switch_overage(self, line: int, enabled: bool) -> None:
        with transaction(self.sessions) as s:
            row = s.get_one(Line, self.lines[line])
            owner = s.get_one(Account, row.account_id)
            overage.configure(s, row, owner, enabled=enabled, monthly_cap=CAP, currency="HKD")

    @rule(cs_id=sessions_)
    def release(self, cs_id) -> None:  # type: ignore[no-untyped-def]
        with transaction(self.sessions) as s:
            cs = s.get(ChargingSession, cs_id)
            open_before = len(calls.open_grants(s, cs))
            settled = calls.release(s, cs)
            assert settled == (0 if cs_id in self.released else open_before)
        self.released.add(cs_id)

    @rule(seconds=st.integers(0, 1200), run_the_job=st.booleans())
    def time_passes(self, seconds: int, run_the_job: bool) -> None:
        self.now += timedelta(seconds=seconds)
        if run_the_job:
            with transaction(self.sessions) as s:
                ledger.expire_reservations(s, self.now)

    @rule(
        line=st.integers(0, 1), zone=st.sampled_from(ZONES), amount=volumes, days=st.integers(1, 3)
    )
    def renewal(self, line: int, zone: str, amount: int, days: int) -> None:
        with transaction(self.sessions) as s:
            self._bucket(s, self.lines[line], zone, amount, days)
            line_buckets.expire_buckets(
                s, self.now
            )  # as the daily job does: what expired leaves the buckets

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def ledger_holds_together(self) -> None:
        with self.sessions() as s:
            assert (
                s.scalar(
                    select(
                        func.min(
                            LedgerAccount.credits_posted
                            - LedgerAccount.debits_posted
                            - LedgerAccount.debits_pending
                        )
                    ).where(LedgerAccount.must_not_go_negative)
                )
                >= 0
            )
            # Every reported byte is charged: posted to data_used (from buckets or owed) or sold as overage.
            used = ledger.balances(s, ledger.system_account(s, "data_used", "bytes")).credits_posted
            sold = s.scalar(select(func.coalesce(func.sum(OverageMonth.volume_bytes), 0)))
            assert (used or 0) + sold == self.reported
            for line_id in self.lines:
                month = overage.month_of(self.now)
                assert (
                    overage.charged_in(s, line_id, month) + overage.held(s, line_id, self.now)
                    <= CAP
                )
            # Every reservation of a settled grant is resolved, and none twice.
            resolved_count = (
                select(func.count())
                .select_from(Transfer)
                .where(Transfer.pending_id == GrantReservation.pending_transfer_id)
                .scalar_subquery()
            )
            for status, count in s.execute(
                select(Grant.status, resolved_count).join(
                    GrantReservation, GrantReservation.grant_id == Grant.id
                )
            ):
                assert count <= 1
                assert status == "open" or count == 1
            assert ledger.verify(s) == []


def test_random_charging_keeps_grants_within_balances(
    fresh_database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def new_machine() -> ChargingMachine:
        machine = ChargingMachine(fresh_database())
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
