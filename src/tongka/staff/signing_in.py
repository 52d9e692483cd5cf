"""A staff log-in over the network, in three steps like a subscriber's (`account.signing_in`): the
try counted in a short write, the password (Argon2) and code checked with no transaction open,
then a short write that uses the code and makes the channel's answer (`then`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tongka.account.service import HashingPolicy
from tongka.db import transaction
from tongka.gate import Gate
from tongka.staff import service
from tongka.staff.models import StaffMember

T = TypeVar("T")


async def log_in(
    sessions: sessionmaker[Session],
    gate: Gate,
    *,
    username: str,
    password: str,
    code: str | None,
    address: str | None,
    hashing: HashingPolicy,
    secret_key: str,
    then: Callable[[Session, StaffMember], T],
) -> T:
    """`then` gets the member once the password and (when enrolled) the code are right;
    `StaffLoginFailed` never says which was wrong."""

    def start() -> service.LoginAttempt:
        with transaction(sessions) as session:
            return service.start_login(session, username, address)

    def finish(attempt: service.LoginAttempt) -> T:
        with transaction(sessions) as session:
            member = service.finish_login(session, attempt, code, secret_key)
            return then(session, member)

    async with gate.enter(write=True):
        attempt = await run_in_threadpool(start)
    if not await run_in_threadpool(service.password_matches, attempt, password, hashing):
        raise service.StaffLoginFailed()  # the try stays counted
    async with gate.enter(write=True):
        return await run_in_threadpool(finish, attempt)
