"""Alerts test helpers: a subscriber's line with a bucket, data used on it, and what was sent."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.charging import calls
from tests.charging import factories as cf
from tests.ledger import factories as lf
from tongka import clock
from tongka.account.models import Account, Line
from tongka.alerts.models import AlertEvent
from tongka.ledger import buckets
from tongka.ledger.models import Bucket
from tongka.money import GB
from tongka.notify.models import OutboxMessage

_refs = itertools.count(1)


def owner(session: Session, language: str = "en") -> tuple[Account, Line]:
    """A subscriber (in `language`) with one line."""
    n = next(_refs)
    account = Account(
        username=f"alerted{n}",
        email=f"alerted{n}@example.com",
        password_hash="x",
        language=language,
    )
    session.add(account)
    session.flush()
    line = lf.line(session)
    line.account_id = account.id
    session.flush()
    return account, line


def bucket(session: Session, line: Line, amount: int = 10 * GB, days: float = 30) -> Bucket:
    now = clock.now()
    return buckets.grant(
        session,
        line_id=line.id,
        zone="hk",
        amount=amount,
        valid_from=now,
        expires_at=now + timedelta(days=days),
        reason="pack_purchase",
        reference=f"order:alerts-{next(_refs)}",
    )


def use(session: Session, line: Line, amount: int, zone: str = "hk") -> None:
    """Data used on the line, charged as the network's usage is (`engine.ChargingBatch`)."""
    calls.charge_usage(session, line, zone, amount, clock.now(), reference=f"use:{next(_refs)}")


def events(session: Session, account: Account) -> list[tuple[str, str]]:
    return sorted(
        (kind, key)
        for kind, key in session.execute(
            select(AlertEvent.kind, AlertEvent.key).where(AlertEvent.account_id == account.id)
        )
    )


def sent(session: Session, account: Account) -> list[OutboxMessage]:
    """What was queued for the account, oldest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.account_id == account.id)
            .order_by(OutboxMessage.created_at, OutboxMessage.channel)
        )
    )


__all__ = ["GB", "bucket", "cf", "events", "owner", "sent", "use"]
