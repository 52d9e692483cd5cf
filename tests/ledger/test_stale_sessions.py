"""A session that loaded accounts earlier must not act on, or report, balances another transaction has since changed."""

from __future__ import annotations

from datetime import timedelta

from tests.ledger import factories as lf
from tongka.db import transaction
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import LedgerAccount


def test_verify_reads_the_stored_totals_as_they_are_now(sessions) -> None:
    with transaction(sessions) as s:
        account_id = lf.funded_account(s, 1000).id
    with sessions() as stale:
        held = stale.get(
            LedgerAccount, account_id
        )  # held: the identity map keeps only referenced objects
        stale.commit()
        with transaction(sessions) as other:
            lf.reserve(other, other.get(LedgerAccount, account_id), 100)
        assert ledger.verify(stale) == []
        assert held.debits_pending == 100


def test_expiry_sweeps_what_is_available_when_it_holds_the_lock(sessions, frozen_clock) -> None:
    with transaction(sessions) as s:
        line = lf.line(s)
        bucket = buckets.grant(
            s,
            line_id=line.id,
            zone="hk",
            amount=1000,
            valid_from=lf.T0,
            expires_at=lf.T0 + timedelta(days=1),
            reason="test",
            reference="test",
        )
        account_id = bucket.ledger_account_id
    with sessions() as job:
        held = job.get(LedgerAccount, account_id)  # the job saw 1000 available...
        job.commit()
        with transaction(sessions) as other:  # ...then a session reserved 100 of it
            lf.reserve(
                other,
                other.get(LedgerAccount, account_id),
                100,
                expires_at=lf.T0 + timedelta(days=2),
            )
        frozen_clock.advance(days=1)
        assert buckets.expire_buckets(job) == 1 and held.available == 0
        job.commit()
    with sessions() as s:
        account = s.get(LedgerAccount, account_id)
        assert (account.available, account.debits_pending) == (0, 100)
        assert (
            ledger.balances(s, ledger.system_account(s, "data_expired", "bytes")).credits_posted
            == 900
        )
