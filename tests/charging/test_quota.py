"""Quota from buckets across zones, usage against grants, release, expiry: on each backend.

Each test commits its work, so the `db_url` fixture's final `ledger verify` checks it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.charging import calls
from tests.charging import factories as f
from tests.charging.calls import ChargingSessionReleased
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tests.ledger.factories import T0
from tongka.charging import service as charging
from tongka.charging.models import Grant, GrantReservation
from tongka.ledger import service as ledger
from tongka.ledger.models import Transfer
from tongka.money import MB

RG = 10  # a rating group


def request(session, cs, amount: int, *, validity: int = 600):  # type: ignore[no-untyped-def]
    return calls.request_quota(session, cs, RG, amount, validity, T0)


def drawn(session, grant: Grant) -> list[tuple[object, int]]:  # type: ignore[no-untyped-def]
    return [(r.bucket_id, r.amount) for r in grant.reservations]


def used_total(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return ledger.balances(
        session, ledger.system_account(session, "data_used", "bytes")
    ).credits_posted


# --- which buckets a grant draws on -------------------------------------------------------


def test_hk_usage_draws_hk_buckets_then_both(session) -> None:
    line = f.line(session)
    both = f.bucket(session, line, "both", 100 * MB, days=10)
    hk = f.bucket(session, line, "hk", 50 * MB, days=10)
    mainland = f.bucket(session, line, "mainland", 500 * MB, days=1)
    result = request(session, f.open_session(session, line, HK_PLMN), 120 * MB)
    session.commit()

    assert (result.result_code, result.granted_bytes, result.final_unit) == (
        "SUCCESS",
        120 * MB,
        False,
    )
    assert drawn(session, result.grant) == [(hk.id, 50 * MB), (both.id, 70 * MB)]
    assert (
        f.remaining(session, hk),
        f.remaining(session, both),
        f.remaining(session, mainland),
    ) == (
        0,
        30 * MB,
        500 * MB,
    )


def test_mainland_usage_draws_mainland_buckets_then_both(session) -> None:
    line = f.line(session)
    both = f.bucket(session, line, "both", 100 * MB, days=10)
    mainland = f.bucket(session, line, "mainland", 50 * MB, days=10)
    hk = f.bucket(session, line, "hk", 500 * MB, days=1)
    result = request(session, f.open_session(session, line, MAINLAND_PLMN), 80 * MB)
    session.commit()

    assert drawn(session, result.grant) == [(mainland.id, 50 * MB), (both.id, 30 * MB)]
    assert f.remaining(session, hk) == 500 * MB


def test_the_soonest_expiring_bucket_goes_first_whatever_its_zone(session) -> None:
    line = f.line(session)
    hk_late = f.bucket(session, line, "hk", 100 * MB, days=30)
    both_soon = f.bucket(session, line, "both", 10 * MB, days=3)
    hk_sooner = f.bucket(session, line, "hk", 10 * MB, days=2)
    result = request(session, f.open_session(session, line, HK_PLMN), 30 * MB)
    session.commit()

    assert drawn(session, result.grant) == [
        (hk_sooner.id, 10 * MB),
        (both_soon.id, 10 * MB),
        (hk_late.id, 10 * MB),
    ]


def test_on_an_expiry_tie_the_narrower_zone_goes_before_both(session) -> None:
    line = f.line(session)
    both = f.bucket(session, line, "both", 10 * MB, days=7)  # made first, same expiry
    hk = f.bucket(session, line, "hk", 10 * MB, days=7)
    result = request(session, f.open_session(session, line, HK_PLMN), 15 * MB)
    session.commit()

    assert drawn(session, result.grant) == [(hk.id, 10 * MB), (both.id, 5 * MB)]


def test_buckets_not_yet_valid_or_expired_are_not_drawn(session) -> None:
    line = f.line(session)
    f.bucket(session, line, "hk", 10 * MB, valid_from=T0 + timedelta(hours=1))
    f.bucket(session, line, "hk", 10 * MB, valid_from=T0 - timedelta(days=2), days=1)
    current = f.bucket(session, line, "hk", 10 * MB)
    result = request(session, f.open_session(session, line, HK_PLMN), 30 * MB)
    session.commit()

    assert (result.granted_bytes, result.final_unit) == (10 * MB, True)
    assert drawn(session, result.grant) == [(current.id, 10 * MB)]


def test_a_grant_spans_buckets_and_grants_only_what_is_left(session) -> None:
    line = f.line(session)
    a = f.bucket(session, line, "hk", 3 * MB, days=1)
    b = f.bucket(session, line, "hk", 4 * MB, days=2)
    c = f.bucket(session, line, "both", 5 * MB, days=3)
    cs = f.open_session(session, line, HK_PLMN)
    result = request(session, cs, 100 * MB)
    session.commit()

    assert (result.result_code, result.granted_bytes, result.final_unit) == (
        "SUCCESS",
        12 * MB,
        True,
    )
    assert drawn(session, result.grant) == [(a.id, 3 * MB), (b.id, 4 * MB), (c.id, 5 * MB)]
    pendings = [session.get(Transfer, r.pending_transfer_id) for r in result.grant.reservations]
    assert all(
        (p.kind, p.reason, p.reference, p.expires_at)
        == ("pending", "usage", f"grant:{result.grant.id}", result.grant.expires_at)
        for p in pendings
    )
    assert result.grant.expires_at == T0 + timedelta(seconds=600) + charging.RESERVATION_MARGIN


def test_nothing_left_means_quota_limit_reached_and_no_reservation(session) -> None:
    line = f.line(session)
    f.bucket(session, line, "mainland", 100 * MB)  # the wrong zone for a Hong Kong network
    cs = f.open_session(session, line, HK_PLMN)
    result = request(session, cs, MB)
    session.commit()

    assert (result.result_code, result.granted_bytes, result.grant, result.final_unit) == (
        "QUOTA_LIMIT_REACHED",
        0,
        None,
        True,
    )
    assert session.scalars(select(Grant)).all() == []
    assert session.scalars(select(Transfer).where(Transfer.kind == "pending")).all() == []


def test_a_second_request_sees_what_the_first_reserved(session) -> None:
    line = f.line(session)
    f.bucket(session, line, "hk", 10 * MB)
    cs = f.open_session(session, line, HK_PLMN)
    first, second, third = (
        request(session, cs, 6 * MB),
        request(session, cs, 6 * MB),
        request(session, cs, 6 * MB),
    )
    session.commit()

    assert [first.granted_bytes, second.granted_bytes, third.granted_bytes] == [6 * MB, 4 * MB, 0]
    assert third.result_code == "QUOTA_LIMIT_REACHED"


# --- usage --------------------------------------------------------------------------------


def test_partial_usage_posts_in_drawing_order_and_releases_the_rest(session) -> None:
    line = f.line(session)
    a = f.bucket(session, line, "hk", 3 * MB, days=1)
    b = f.bucket(session, line, "hk", 4 * MB, days=2)
    c = f.bucket(session, line, "both", 5 * MB, days=3)
    grant = request(session, f.open_session(session, line, HK_PLMN), 12 * MB).grant
    usage = calls.report_usage(session, grant, 5 * MB)
    session.commit()

    assert (
        usage.used_bytes,
        usage.charged_bytes,
        usage.unreserved_bytes,
        usage.already_settled,
    ) == (5 * MB, 5 * MB, 0, False)
    assert [f.remaining(session, x) for x in (a, b, c)] == [0, 2 * MB, 5 * MB]
    kinds = [
        session.scalar(select(Transfer.kind).where(Transfer.pending_id == r.pending_transfer_id))
        for r in grant.reservations
    ]
    assert kinds == ["post_pending", "post_pending", "void_pending"]
    assert (grant.status, grant.used_bytes, grant.unreserved_bytes, grant.settled_at) == (
        "settled",
        5 * MB,
        0,
        T0,
    )
    assert used_total(session) == 5 * MB


def test_usage_beyond_the_grant_posts_all_granted_and_returns_the_excess(session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    spare = f.bucket(session, line, "both", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 4 * MB).grant
    usage = calls.report_usage(session, grant, 7 * MB)
    session.commit()

    assert (usage.charged_bytes, usage.unreserved_bytes) == (4 * MB, 3 * MB)
    assert (f.remaining(session, hk), f.remaining(session, spare)) == (
        6 * MB,
        10 * MB,
    )  # nothing overdrawn
    assert (grant.used_bytes, grant.unreserved_bytes) == (7 * MB, 3 * MB)
    assert used_total(session) == 4 * MB


def test_a_grant_is_settled_exactly_once(session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 4 * MB).grant
    calls.report_usage(session, grant, 3 * MB)
    session.commit()
    count = session.scalar(select(Transfer.id).order_by(Transfer.id.desc()).limit(1))

    again = calls.report_usage(session, grant, 4 * MB)
    session.commit()
    assert (
        again.already_settled,
        again.used_bytes,
        again.charged_bytes,
        again.unreserved_bytes,
    ) == (True, 3 * MB, 3 * MB, 0)
    assert session.scalar(select(Transfer.id).order_by(Transfer.id.desc()).limit(1)) == count
    assert f.remaining(session, hk) == 7 * MB


def test_a_grant_settled_by_another_session_is_not_settled_again(sessions, frozen_clock) -> None:
    with sessions() as s:
        f.ensure_networks(s)
        line = f.line(s)
        f.bucket(s, line, "hk", 10 * MB)
        grant_id = request(s, f.open_session(s, line, HK_PLMN), 4 * MB).grant.id
        s.commit()
    with sessions() as first, sessions() as second:
        stale = second.get(Grant, grant_id)  # loaded while still open
        second.commit()  # kept as loaded (no expiry on commit); SQLite lets one writer at a time
        assert stale.status == "open"
        calls.report_usage(first, first.get(Grant, grant_id), 4 * MB)
        first.commit()
        assert calls.report_usage(second, stale, 1 * MB).already_settled
        second.commit()
        assert used_total(second) == 4 * MB


def test_zero_usage_voids_everything(session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 4 * MB).grant
    usage = calls.report_usage(session, grant, 0)
    session.commit()

    assert (usage.charged_bytes, usage.unreserved_bytes) == (0, 0)
    assert f.remaining(session, hk) == 10 * MB


def test_negative_usage_is_refused(session) -> None:
    line = f.line(session)
    f.bucket(session, line, "hk", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 4 * MB).grant
    with pytest.raises(ValueError):
        calls.report_usage(session, grant, -1)
    session.commit()
    assert grant.status == "open"


# --- release ------------------------------------------------------------------------------


def test_release_settles_open_grants_and_refuses_new_requests(session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    cs = f.open_session(session, line, HK_PLMN)
    reported = request(session, cs, 2 * MB).grant
    calls.report_usage(session, reported, 2 * MB)
    other_group = calls.request_quota(session, cs, 20, 3 * MB, 600, T0).grant
    assert calls.release(session, cs) == 1
    session.commit()

    assert (cs.status, cs.released_at) == ("released", T0)
    assert (other_group.status, other_group.used_bytes) == ("settled", 0)
    assert f.remaining(session, hk) == 8 * MB
    assert calls.release(session, cs) == 0  # a second release changes nothing
    with pytest.raises(ChargingSessionReleased):
        request(session, cs, MB)
    session.commit()
    assert f.remaining(session, hk) == 8 * MB


# --- expiry -------------------------------------------------------------------------------


def test_the_ledger_expiry_job_releases_a_grant_nobody_reported(session, frozen_clock) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    both = f.bucket(session, line, "both", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 15 * MB, validity=60).grant
    session.commit()

    frozen_clock.advance(seconds=60 + charging.RESERVATION_MARGIN.total_seconds())
    assert ledger.expire_reservations(session) == 2
    session.commit()
    assert (f.remaining(session, hk), f.remaining(session, both)) == (10 * MB, 10 * MB)

    # A late report finds the reservations gone: nothing is charged from the buckets, all is returned.
    usage = calls.report_usage(session, grant, 5 * MB)
    session.commit()
    assert (usage.charged_bytes, usage.unreserved_bytes, usage.already_settled) == (
        0,
        5 * MB,
        False,
    )
    assert (f.remaining(session, hk), f.remaining(session, both)) == (10 * MB, 10 * MB)


def test_a_report_after_the_grant_lapsed_but_before_the_job_voids_it(session, frozen_clock) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 10 * MB)
    grant = request(session, f.open_session(session, line, HK_PLMN), 4 * MB, validity=60).grant
    session.commit()

    frozen_clock.advance(minutes=5)
    usage = calls.report_usage(session, grant, 3 * MB)
    session.commit()
    assert (usage.charged_bytes, usage.unreserved_bytes) == (0, 3 * MB)
    [reservation] = session.scalars(select(GrantReservation)).all()
    resolution = session.scalars(
        select(Transfer).where(Transfer.pending_id == reservation.pending_transfer_id)
    ).one()
    assert (resolution.kind, resolution.reason) == ("void_pending", "usage_late")
    assert f.remaining(session, hk) == 10 * MB
    assert ledger.expire_reservations(session) == 0
    session.commit()
