"""Idempotency keys for mutating API calls (Stripe's convention).

The first request with a key claims it and stores its response in the same
transaction; a replay with the same body gets the stored response; the same key with
another body is refused with 409. Two concurrent requests with one key meet at the
unique primary key, so only one does the work.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from tongka.db import Base, CreatedMixin
from tongka.errors import BadRequest, Conflict, TongkaError
from tongka.i18n import _


class IdempotencyRecord(CreatedMixin, Base):
    __tablename__ = "idempotency_records"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
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
    if not key or len(key) > 255:
        raise KeyMissing()
    record = IdempotencyRecord(account_id=account_id, key=key, fingerprint=fp)
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        existing = session.get(IdempotencyRecord, (account_id, key), populate_existing=True)
        if existing is None or existing.fingerprint != fp or existing.status_code is None:
            raise KeyReused() from None
        return existing.status_code, existing.response
    try:
        status, body = produce()
    except TongkaError as refusal:
        if refusal.commit_anyway:
            # The refusal's own count is kept, the claim is not: a retry with this key runs again.
            session.delete(record)
            session.flush()
        raise
    record.status_code, record.response = status, body
    session.flush()
    return status, body
