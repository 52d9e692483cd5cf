"""Which charging sessions count as silent (`charging/stale.py`), and what closing one settles."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.charging import calls
from tests.charging import factories as cf
from tongka.charging import stale
from tongka.charging.models import ChargingSession, Grant
from tongka.ledger import service as ledger
from tongka.ledger.models import Transfer
from tongka.money import MB

GRACE = timedelta(minutes=5)
VALIDITY = 600


def test_a_session_is_silent_after_its_validity_time_and_the_grace(
    sessions, frozen_clock, networks
) -> None:
    with sessions() as s:
        line = cf.line(s)
        bucket = cf.bucket(s, line, "hk", 100 * MB, valid_from=frozen_clock.now - timedelta(days=1))
        held = cf.open_session(s, line)
        calls.request_quota(s, held, 10, 30 * MB, VALIDITY, frozen_clock.now)
        idle = cf.open_session(s, line)  # granted nothing: waits for a renewal
        s.commit()
        held_id, idle_id = held.id, idle.id

        frozen_clock.advance(seconds=VALIDITY)
        frozen_clock.advance(seconds=GRACE.total_seconds() - 1)
        assert stale.close_silent(s, grace=GRACE) == 0  # a second early
        frozen_clock.advance(seconds=1)
        assert [x.session_id for x in stale.silent_sessions(s, grace=GRACE)] == [held_id]
        assert stale.close_silent(s, grace=GRACE) == 1
        s.commit()

        assert s.get_one(ChargingSession, held_id).status == "released"
        [grant] = s.scalars(select(Grant).where(Grant.charging_session_id == held_id)).all()
        assert (grant.status, grant.used_bytes) == ("settled", 0)
        assert cf.remaining(s, bucket) == 100 * MB  # the reservation voided, as a release does
        voids = s.scalars(select(Transfer).where(Transfer.kind == "void_pending")).all()
        assert len(voids) == 1
        assert stale.close_silent(s, grace=GRACE) == 0  # closed once

        # The session holding nothing is left a day: its SMF may be waiting for a renewal.
        assert s.get_one(ChargingSession, idle_id).status == "open"
        frozen_clock.advance(seconds=stale.QUIET_WITHOUT_QUOTA.total_seconds() - VALIDITY - 300)
        assert stale.close_silent(s, grace=GRACE) == 1
        s.commit()
        assert s.get_one(ChargingSession, idle_id).status == "released"
        assert ledger.verify(s) == []


def test_a_reservation_the_expiry_job_took_first_is_left_as_it_resolved_it(
    sessions, frozen_clock, networks
) -> None:
    with sessions() as s:
        line = cf.line(s)
        bucket = cf.bucket(
            s, line, "mainland", 50 * MB, valid_from=frozen_clock.now - timedelta(days=1)
        )
        charging_session = cf.open_session(s, line, cf.MAINLAND_PLMN)
        calls.request_quota(s, charging_session, 10, 20 * MB, VALIDITY, frozen_clock.now)
        s.commit()
        frozen_clock.advance(seconds=VALIDITY + GRACE.total_seconds() + 1)
        assert ledger.expire_reservations(s) == 1  # `ledger-expire` ran first
        s.commit()
        assert stale.close_silent(s, grace=GRACE) == 1
        s.commit()
        kinds = sorted(t.kind for t in s.scalars(select(Transfer).where(Transfer.kind != "posted")))
        assert kinds == ["expire_pending", "pending"]  # resolved once, by the expiry
        assert cf.remaining(s, bucket) == 50 * MB
        assert ledger.verify(s) == []


def test_sessions_that_still_talk_do_not_hide_a_silent_one(
    sessions, frozen_clock, networks
) -> None:
    with sessions() as s:
        line = cf.line(s)
        cf.bucket(s, line, "hk", 100 * MB, valid_from=frozen_clock.now - timedelta(days=1))
        talking = cf.open_session(s, line)  # the oldest
        calls.request_quota(s, talking, 10, MB, VALIDITY, frozen_clock.now)
        frozen_clock.advance(seconds=1)
        silent = cf.open_session(s, line)
        calls.request_quota(s, silent, 10, MB, VALIDITY, frozen_clock.now)
        s.commit()
        frozen_clock.advance(seconds=VALIDITY + GRACE.total_seconds())
        # The older session's SMF asked again a moment ago: a new grant, valid for 600 s more.
        [grant] = calls.open_grants(s, talking)
        calls.report_usage(s, grant, MB // 2)
        calls.request_quota(s, talking, 10, MB, VALIDITY, frozen_clock.now)
        s.commit()
        found = stale.silent_sessions(s, grace=GRACE, limit=1)
        assert [x.session_id for x in found] == [silent.id]
        assert stale.close_silent(s, grace=GRACE, limit=1) == 1
        s.commit()
        assert ledger.verify(s) == []
