"""Idempotency keys for mutating API calls (Stripe's convention).

The first request with a key claims it and stores its response in the same
transaction; a replay with the same body gets the stored response; the same key with
another body is refused with 409. Two concurrent requests with one key meet at the
unique primary key, so only one does the work.

Work that spans two transactions (an order, then the provider asked outside any
transaction, then its answer recorded) claims the key with a note of what it made
(`claim`), and stores the response when done (`finish`). A request that finds the key
claimed but not finished (the first one crashed, or its provider did not answer, or it is
still on its way) gets the note and carries the same work on: the steps after the claim
must be safe to repeat.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from tongka.db import Base, CreatedMixin
from tongka.errors import BadRequest, Conflict, TongkaError
from tongka.i18n import _


class IdempotencyRecord(CreatedMixin, Base):
    __tablename__ = "idempotency_records"

    # Whose keys these are: a subscriber's account id or a staff member's id (no foreign key: either table).
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[Any] = mapped_column(JSON, nullable=True)


class KeyMissing(BadRequest):
    code = "idempotency_key_missing"
    message = _("Send an Idempotency-Key header (a new random value for each new request).")


class KeyReused(Conflict):
    code = "idempotency_key_reused"
    message = _("This Idempotency-Key was already used for a different request.")


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_once(
    session: Session,
    account_id: uuid.UUID,
    key: str | None,
    fp: str,
    produce: Callable[[], tuple[int, Any]],
) -> tuple[int, Any]:
    """Run `produce` once per (account, key); replays get its stored (status, body)."""
    claimed = claim(session, account_id, key, fp)
    if claimed.status_code is not None:
        return claimed.status_code, claimed.response
    if claimed.record is None:  # noted work of `claim`'s callers: not run here
        raise KeyReused()
    try:
        status, body = produce()
    except TongkaError as refusal:
        if refusal.commit_anyway:
            release(session, account_id, claimed.record.key)
        raise
    claimed.record.status_code, claimed.record.response = status, body
    session.flush()
    return status, body


@dataclass(frozen=True)
class Claim:
    """What `claim` found: a finished response to replay, or the note of unfinished work
    (None: the key is newly this request's; `note` it once the work has ids)."""

    status_code: int | None = None
    response: Any = None
    note: dict[str, Any] | None = None
    record: IdempotencyRecord | None = None  # the claim made now

    @property
    def finished(self) -> bool:
        return self.status_code is not None


def claim(session: Session, account_id: uuid.UUID, key: str | None, fp: str) -> Claim:
    """Claim (account, key) for work done over several transactions (see the module's docstring)."""
    if not key or len(key) > 255:
        raise KeyMissing()
    record = IdempotencyRecord(account_id=account_id, key=key, fingerprint=fp)
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        existing = session.get(IdempotencyRecord, (account_id, key), populate_existing=True)
        if existing is None or existing.fingerprint != fp:
            raise KeyReused() from None
        if existing.status_code is not None:
            return Claim(existing.status_code, existing.response)
        if existing.response is None:  # claimed, and its work refused: nothing to carry on
            raise KeyReused() from None
        return Claim(note=existing.response)
    return Claim(record=record)


def note(session: Session, claim: Claim, made: dict[str, Any]) -> None:
    """What the work claimed now made (ids), for a request that finds it unfinished."""
    assert claim.record is not None
    claim.record.response = made
    session.flush()


def finish(
    session: Session, account_id: uuid.UUID, key: str, status_code: int, response: Any
) -> None:
    record = session.get_one(IdempotencyRecord, (account_id, key))
    record.status_code, record.response = status_code, response
    session.flush()


def release(session: Session, account_id: uuid.UUID, key: str) -> None:
    """Give the key back after a refusal whose transaction commits anyway (its own count is kept,
    the claim is not): a retry with this key runs again."""
    record = session.get(IdempotencyRecord, (account_id, key))
    if record is not None:
        session.delete(record)
        session.flush()
