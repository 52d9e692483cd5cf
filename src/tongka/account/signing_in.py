"""Registering and logging in over the network, each in three steps with the slow one (Argon2, a
quarter second) outside any transaction: on SQLite a request holding the write turn while it hashed
would make every other writer wait (tongka.gate). The app's API and the web site both go through
here; `then` makes the channel's answer (a token, a session cookie) in the last step's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tongka import throttle
from tongka.account import service
from tongka.account.models import Account
from tongka.db import transaction
from tongka.gate import Gate

T = TypeVar("T")


async def register(
    sessions: sessionmaker[Session],
    gate: Gate,
    *,
    username: str,
    password: str,
    email: str,
    language: str,
    region: str,
    address: str | None,
    hashing: service.HashingPolicy,
    then: Callable[[Session, Account], T],
) -> T:
    """A new subscriber account: refused before hashing when the client address is over its day's
    limit; hashed outside any transaction; then one short write."""

    def over_limit() -> None:
        if address is not None:
            with transaction(sessions, read_only=True) as session:
                throttle.check(session, service.REGISTER_BY_ADDRESS, address)

    def create(password_hash: str) -> T:
        with transaction(sessions) as session:
            account = service.create_account(
                session,
                username=username,
                password_hash=password_hash,
                email=email,
                language=language,
                region=region,
                address=address,
            )
            return then(session, account)

    async with gate.enter(write=False):
        await run_in_threadpool(over_limit)
    password_hash = await run_in_threadpool(service.new_password_hash, username, password, hashing)
    async with gate.enter(write=True):
        return await run_in_threadpool(create, password_hash)


async def log_in(
    sessions: sessionmaker[Session],
    gate: Gate,
    *,
    username: str,
    password: str,
    address: str | None,
    hashing: service.HashingPolicy,
    then: Callable[[Session, Account], T],
) -> T:
    """The account, once its password is right; throttled per username and per client address
    (`BadCredentials` never says which of the two was wrong, `LoginThrottled` says when to retry)."""

    def start() -> service.LoginAttempt:
        with transaction(sessions) as session:
            return service.start_login(session, username, address=address)

    def finish(attempt: service.LoginAttempt, right: bool) -> T:
        with transaction(sessions) as session:
            account = service.finish_login(session, attempt, password, right, hashing=hashing)
            return then(session, account)

    async with gate.enter(write=True):
        attempt = await run_in_threadpool(start)
    right = await run_in_threadpool(service.password_matches, attempt, password, hashing)
    async with gate.enter(write=True):
        return await run_in_threadpool(finish, attempt, right)
