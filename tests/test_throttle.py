"""The throttle's counters: windows from Hong Kong midnight, backoff, spacing, atomic counting, dead rows forgotten."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tongka import throttle
from tongka.db import transaction
from tongka.errors import TooManyRequests

DAILY = throttle.Limit("test_daily", allowed=3, window_seconds=86_400)
BACKOFF = throttle.Limit(
    "test_backoff", allowed=2, window_seconds=86_400, backoff_seconds=1, backoff_cap_seconds=5
)
SPACED = throttle.Limit("test_spaced", allowed=5, window_seconds=86_400, spacing_seconds=60)
NOON_HK = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def test_a_daily_window_is_a_hong_kong_day() -> None:
    assert throttle.window_start(DAILY, NOON_HK) == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert throttle.window_start(DAILY, datetime(2026, 3, 2, 15, 59, 59, tzinfo=UTC)) == datetime(
        2026, 3, 1, 16, 0, tzinfo=UTC
    )
    assert throttle.window_start(DAILY, datetime(2026, 3, 2, 16, 0, tzinfo=UTC)) == datetime(
        2026, 3, 2, 16, 0, tzinfo=UTC
    )


def test_take_refuses_past_the_cap_until_the_window_ends(sessions) -> None:
    with transaction(sessions) as s:
        for _ in range(3):
            throttle.take(s, DAILY, "k", NOON_HK)
    with pytest.raises(TooManyRequests) as refused, transaction(sessions) as s:
        throttle.take(s, DAILY, "k", NOON_HK)
    assert refused.value.headers() == {"Retry-After": str(12 * 3600)}
    with sessions() as s:
        assert throttle.hits(s, DAILY, "k", NOON_HK) == 3  # the refused try was not counted
    with transaction(sessions) as s:
        throttle.take(s, DAILY, "k", NOON_HK + timedelta(hours=12))  # a new day


def test_backoff_doubles_from_the_last_hit_up_to_its_cap(sessions) -> None:
    now = NOON_HK
    waits = []
    with transaction(sessions) as s:
        for _ in range(2):
            throttle.hit(s, BACKOFF, "k", now)
        for _ in range(5):
            wait, _spacing = throttle.wait_seconds(s, BACKOFF, "k", now)
            waits.append(wait)
            now += timedelta(seconds=wait)
            throttle.hit(s, BACKOFF, "k", now)
    assert waits == [1, 2, 4, 5, 5]


def test_spacing_between_hits(sessions) -> None:
    with transaction(sessions) as s:
        throttle.take(s, SPACED, "k", NOON_HK)
        assert throttle.wait_seconds(s, SPACED, "k", NOON_HK + timedelta(seconds=20)) == (40, True)
        assert throttle.wait_seconds(s, SPACED, "k", NOON_HK + timedelta(seconds=60)) == (0, False)


def test_hits_at_once_from_many_connections_all_count(sessions) -> None:
    def one() -> None:
        with transaction(sessions) as s:
            throttle.hit(s, DAILY, "shared", NOON_HK)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as s:
        assert throttle.hits(s, DAILY, "shared", NOON_HK) == 8


def test_counters_nobody_hit_for_two_days_are_forgotten(sessions) -> None:
    with transaction(sessions) as s:
        for n in range(5):
            throttle.hit(s, DAILY, f"made-up-{n}", NOON_HK - timedelta(days=3))
        throttle.hit(s, DAILY, "yesterday", NOON_HK - timedelta(days=1))
    with transaction(sessions) as s:
        throttle.hit(s, DAILY, "today", NOON_HK)
    with sessions() as s:
        keys = set(s.scalars(select(throttle.ThrottleCounter.key)))
        assert keys == {"yesterday", "today"}
        assert s.scalar(select(func.count()).select_from(throttle.ThrottleCounter)) == 2


def test_long_keys_are_hashed_to_fit(sessions) -> None:
    key = "x" * 200
    with transaction(sessions) as s:
        throttle.hit(s, DAILY, key, NOON_HK)
        throttle.hit(s, DAILY, key, NOON_HK)
    with sessions() as s:
        assert throttle.hits(s, DAILY, key, NOON_HK) == 2
