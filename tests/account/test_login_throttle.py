"""Log-in throttled per username and per client address (in the database, so every process counts),
password hashing capped per process, and sessions that end: log-out, password change, staff tokens."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests import factories as f
from tests.account.factories import assert_problem
from tongka import i18n
from tongka.account import service
from tongka.app import create_app

TOKEN = "/api/v1/auth/token"
ACCOUNTS = "/api/v1/accounts"
ME = "/api/v1/me"
LOGOUT = "/api/v1/auth/logout"
PASSWORD = "/api/v1/account/password"
NEW_PASSWORD = "a new and longer secret"


def log_in(client: TestClient, username: str, password: str = f.PASSWORD):  # type: ignore[no-untyped-def]
    return client.post(TOKEN, data={"username": username, "password": password})


def retry_after(r) -> int:  # type: ignore[no-untyped-def]
    body = assert_problem(r, 429, "login_throttled")
    seconds = int(r.headers["Retry-After"])
    assert f"Try again in {i18n.wait(seconds, 'en')}." in body["detail"]
    return seconds


class CountingHasher(PasswordHasher):
    """Argon2 at its cheapest, counting its checks and how many ran at once."""

    def __init__(self, pause: float = 0.0) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.pause = pause
        self.checks = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.checks += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.pause)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def frozen_clock(frozen_clock):  # type: ignore[no-untyped-def]
    """At 10:00 in Hong Kong, hours from the end of the counters' day."""
    frozen_clock.now = frozen_clock.now.replace(hour=2, minute=0, second=0)
    return frozen_clock


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(service, "_hasher", counting)
    return counting


# --- per username, with backoff ------------------------------------------------------------------


def test_after_five_failures_each_try_waits_doubling_and_a_success_clears(
    client, frozen_clock, hasher
) -> None:
    username = f.register(client)["username"]
    for _ in range(5):
        assert_problem(log_in(client, username, "wrong password"), 401, "bad_credentials")

    checks = hasher.checks
    assert retry_after(log_in(client, username)) == 1  # even the right password waits
    assert hasher.checks == checks  # refused before any hashing
    frozen_clock.advance(1)
    assert_problem(log_in(client, username, "wrong again"), 401, "bad_credentials")
    assert retry_after(log_in(client, username)) == 2
    frozen_clock.advance(2)
    assert_problem(log_in(client, username, "wrong again"), 401, "bad_credentials")
    assert retry_after(log_in(client, username)) == 4
    frozen_clock.advance(4)
    assert log_in(client, username).status_code == 200

    # the success cleared the username's count: five more failures before any wait
    for _ in range(5):
        assert_problem(log_in(client, username, "wrong password"), 401, "bad_credentials")
    assert retry_after(log_in(client, username)) == 1


def test_the_wait_stops_doubling_at_fifteen_minutes(client, frozen_clock) -> None:
    username = f.register(client)["username"]
    waits = []
    for _ in range(5 + 12):
        r = log_in(client, username, "wrong password")
        if r.status_code == 429:
            waits.append(retry_after(r))
            frozen_clock.advance(waits[-1])
            assert_problem(log_in(client, username, "wrong password"), 401, "bad_credentials")
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]


def test_an_unknown_username_is_throttled_alike(client, frozen_clock) -> None:
    for _ in range(5):
        assert_problem(log_in(client, "nobody-at-all", "guess"), 401, "bad_credentials")
    assert retry_after(log_in(client, "Nobody-At-All", "guess")) == 1


def test_failures_are_counted_in_the_database_for_every_process(
    client, settings, frozen_clock
) -> None:
    username = f.register(client)["username"]
    for _ in range(5):
        assert_problem(log_in(client, username, "wrong password"), 401, "bad_credentials")
    other_process = create_app(settings)  # another server over the same database
    try:
        assert retry_after(log_in(TestClient(other_process), username)) == 1
    finally:
        other_process.state.engine.dispose()


# --- per client address --------------------------------------------------------------------------


def test_twenty_failures_from_one_address_hold_back_every_username_from_it(
    client, app, frozen_clock
) -> None:
    victim = f.register(client)["username"]
    attacker = TestClient(app, client=("203.0.113.7", 40000))
    for n in range(20):  # four usernames, so no username reaches its own limit
        assert_problem(log_in(attacker, f"target-{n % 4}", "guess"), 401, "bad_credentials")

    assert (
        retry_after(log_in(attacker, victim)) == 1
    )  # from that address, even a right password waits
    assert log_in(client, victim).status_code == 200  # from another address, it is let in
    frozen_clock.advance(1)
    assert log_in(attacker, victim).status_code == 200
    # ... and a success there does not clear the address's count (it was a try: the wait restarts)
    frozen_clock.advance(1)
    assert_problem(log_in(attacker, "target-0", "guess"), 401, "bad_credentials")
    assert retry_after(log_in(attacker, victim)) == 2


# --- password hashing capped per process ---------------------------------------------------------


def test_no_more_hashes_at_once_than_the_slots(client, settings, monkeypatch) -> None:
    settings.password_hashing_slots = 2
    settings.password_hashing_wait_seconds = 30
    usernames = [f.register(client)["username"] for _ in range(6)]
    slow = CountingHasher(pause=0.1)
    monkeypatch.setattr(service, "_hasher", slow)
    answers: list[int] = []

    def one(username: str) -> None:
        answers.append(log_in(client, username).status_code)

    threads = [threading.Thread(target=one, args=(username,)) for username in usernames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 6
    assert (
        slow.most_at_once == 2
    )  # hashing runs outside any transaction, so the slots are the only bound


def test_a_log_in_that_cannot_start_a_hash_soon_is_503_not_queued(client, settings, hasher) -> None:
    settings.password_hashing_slots = 1
    settings.password_hashing_wait_seconds = 0.05
    username = f.register(client)["username"]
    busy = service._SLOTS.setdefault(1, threading.BoundedSemaphore(1))
    assert busy.acquire(timeout=5)  # another request is hashing
    try:
        checks = hasher.checks
        r = log_in(client, username)
        assert_problem(r, 503, "hashing_busy")
        assert r.headers["Retry-After"] == "1"
        r = client.post(
            ACCOUNTS, json={"username": "waiting", "password": f.PASSWORD, "email": "w@example.com"}
        )
        assert_problem(r, 503, "hashing_busy")  # registration hashes too
        assert hasher.checks == checks
    finally:
        busy.release()
    assert (
        log_in(client, username).status_code == 200
    )  # a busy refusal was not counted as a failure


# --- sessions that end ---------------------------------------------------------------------------


def test_logout_ends_only_the_presented_token(client) -> None:
    username = f.register(client)["username"]
    phone, laptop = f.login(client, username), f.login(client, username)
    r = client.post(LOGOUT, headers=phone)
    assert r.status_code == 204 and r.content == b""
    assert_problem(client.get(ME, headers=phone), 401, "invalid_token")
    assert_problem(client.post(LOGOUT, headers=phone), 401, "invalid_token")
    assert client.get(ME, headers=laptop).status_code == 200


def test_logout_needs_a_token(client) -> None:
    assert_problem(client.post(LOGOUT), 401, "not_authenticated")


def change(client: TestClient, headers: dict[str, str], current: str, new: str = NEW_PASSWORD):  # type: ignore[no-untyped-def]
    return client.post(
        PASSWORD, json={"current_password": current, "new_password": new}, headers=headers
    )


def test_a_password_change_ends_every_session_and_answers_a_fresh_token(client, settings) -> None:
    username = f.register(client)["username"]
    phone, laptop = f.login(client, username), f.login(client, username)
    r = change(client, phone, f.PASSWORD)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert (
        body["token_type"] == "bearer" and body["expires_in"] == settings.access_token_ttl_seconds
    )
    for old in (phone, laptop):
        assert_problem(client.get(ME, headers=old), 401, "invalid_token")
    assert (
        client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"}).status_code
        == 200
    )
    assert_problem(log_in(client, username), 401, "bad_credentials")
    assert log_in(client, username, NEW_PASSWORD).status_code == 200


def test_a_password_change_needs_the_current_password_and_counts_wrong_ones(
    client, frozen_clock
) -> None:
    username = f.register(client)["username"]
    headers = f.login(client, username)
    assert_problem(change(client, headers, f.PASSWORD, "short"), 422, "weak_password")
    for _ in range(5):
        assert_problem(change(client, headers, "not my password"), 403, "wrong_password")
    assert client.get(ME, headers=headers).status_code == 200  # a wrong password ends nothing
    assert (
        retry_after(change(client, headers, f.PASSWORD)) == 1
    )  # a stolen token cannot guess faster
    assert retry_after(log_in(client, username)) == 1


def test_a_password_change_needs_a_token(client) -> None:
    r = client.post(PASSWORD, json={"current_password": f.PASSWORD, "new_password": NEW_PASSWORD})
    assert_problem(r, 401, "not_authenticated")


def test_subscribers_tokens_last_twenty_four_hours(client, settings, frozen_clock) -> None:
    """(Staff sessions are shorter and end when idle: tests/staff.)"""
    assert settings.access_token_ttl_seconds == 24 * 3600
    subscriber = log_in(client, f.register(client)["username"]).json()
    assert subscriber["expires_in"] == 24 * 3600
    headers = {"Authorization": f"Bearer {subscriber['access_token']}"}
    frozen_clock.advance(24 * 3600 - 1)
    assert client.get(ME, headers=headers).status_code == 200
    frozen_clock.advance(1)
    assert_problem(client.get(ME, headers=headers), 401, "invalid_token")


def test_twenty_accounts_a_day_from_one_address_then_429(client) -> None:
    for _ in range(20):
        f.register(client)
    r = client.post(
        ACCOUNTS,
        json={
            "username": "one-too-many",
            "password": f.PASSWORD,
            "email": "x@example.com",
            "language": "en",
        },
    )
    body = assert_problem(r, 429, "registrations_used_up_today")
    assert 0 < int(r.headers["Retry-After"]) <= 86_400 and "Try again in" in body["detail"]


def test_a_log_in_hashes_outside_the_write_turn_so_other_writers_do_not_wait_for_it(
    client, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite one request writes at a time per process (tongka.gate): a log-in whose password
    check takes a second must not hold that turn meanwhile."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no write turn: writers wait only on the rows they share")
    user = f.register(client)["username"]
    other = f.login(client, f.register(client)["username"])
    monkeypatch.setattr(service, "_hasher", CountingHasher(pause=1.0))
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(log_in(client, user).status_code))
    slow.start()
    time.sleep(0.3)  # the log-in is hashing now
    started = time.monotonic()
    assert client.post(LOGOUT, headers=other).status_code == 204  # a write
    took = time.monotonic() - started
    slow.join()
    assert answers == [200]
    assert took < 0.5, f"a write waited {took:.2f} s behind a log-in's hashing"


def test_tries_at_the_same_moment_cannot_all_pass_one_check(client, settings, monkeypatch) -> None:
    """Each try is counted before its password is checked: a burst of simultaneous wrong guesses
    gets no more than the limit's 5 through, not one per hashing slot and process."""
    settings.password_hashing_wait_seconds = 30
    username = f.register(client)["username"]
    monkeypatch.setattr(service, "_hasher", CountingHasher(pause=0.2))
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(log_in(client, username, "a wrong guess").status_code)
        )
        for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [401] * 5 + [429] * 7


def test_a_taken_username_counts_against_the_address_too(client) -> None:
    """Else anyone could ask, without limit, which usernames exist (and make tongka hash each time)."""
    taken = f.register(client)["username"]
    for _ in range(19):
        r = client.post(
            ACCOUNTS,
            json={
                "username": taken,
                "password": f.PASSWORD,
                "email": "x@example.com",
                "language": "en",
            },
        )
        assert_problem(r, 409, "username_taken")
    r = client.post(
        ACCOUNTS,
        json={
            "username": "new-one",
            "password": f.PASSWORD,
            "email": "x@example.com",
            "language": "en",
        },
    )
    assert_problem(r, 429, "registrations_used_up_today")


def test_a_registration_hashes_outside_the_write_turn(
    client, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no write turn: writers wait only on the rows they share")
    other = f.login(client, f.register(client)["username"])

    class SlowToHash(CountingHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            time.sleep(1.0)
            return super().hash(password, salt=salt)

    monkeypatch.setattr(service, "_hasher", SlowToHash())
    slow = threading.Thread(target=lambda: f.register(client))
    slow.start()
    time.sleep(0.3)  # the registration is hashing now
    started = time.monotonic()
    assert client.post(LOGOUT, headers=other).status_code == 204  # a write
    took = time.monotonic() - started
    slow.join()
    assert took < 0.5, f"a write waited {took:.2f} s behind a registration's hashing"


def test_an_ipv6_client_is_counted_by_its_slash_64(app) -> None:
    def from_(host: str) -> TestClient:
        return TestClient(app, client=(host, 40000))

    for n in range(20):  # twenty addresses of one /64
        assert (
            from_(f"2001:db8:1:2::{n + 1:x}")
            .post(
                ACCOUNTS,
                json={
                    "username": f"v6-{n}",
                    "password": f.PASSWORD,
                    "email": "x@example.com",
                    "language": "en",
                },
            )
            .status_code
            == 201
        )
    r = from_("2001:db8:1:2:ffff::1").post(
        ACCOUNTS,
        json={
            "username": "v6-more",
            "password": f.PASSWORD,
            "email": "x@example.com",
            "language": "en",
        },
    )
    assert_problem(r, 429, "registrations_used_up_today")
    assert (
        from_("2001:db8:1:3::1")
        .post(  # the next /64 is another client
            ACCOUNTS,
            json={
                "username": "v6-next",
                "password": f.PASSWORD,
                "email": "x@example.com",
                "language": "en",
            },
        )
        .status_code
        == 201
    )
