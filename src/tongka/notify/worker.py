"""The delivery worker: takes due messages from the outbox and hands each to its channel's sender.

Several workers (threads, `tongka worker` processes, servers) may run over one database. A worker
*claims* a small batch of due messages (`pending`, `next_attempt_at` empty or past, no live lease)
by writing its id and a lease (`claimed_until`) on them in one short transaction:
`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers take disjoint batches without
waiting for each other; on SQLite (one writer at a time) a conditional UPDATE per message, whose
row count says which worker won it. Each try is counted when claimed, so a message that kills its
worker still runs out of tries. Then, outside any transaction, it sends them one by one and
records each outcome, guarded by its own claim: `sent` (with the server's id for it); a temporary
failure tried again after an exponential backoff with jitter (capped); `failed` after
`message_max_attempts` tries, or at once on a permanent failure. A worker that dies mid-send
leaves its lease to run out; then another worker takes the message.

The guarantee is *at least once*: a worker that dies (or stalls past its lease) after the server
took a message but before recording it leaves it to be sent again. A repeat is harmless: an email
keeps its Message-ID on every try (mail software folds the two), a bind code SMS repeats the same
code, and receipts are numbered once, whatever their emails do (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.config import Settings
from tongka.db import matched, transaction
from tongka.notify import service
from tongka.notify.models import OutboxMessage
from tongka.notify.senders import (
    Outgoing,
    PermanentFailure,
    Sender,
    TemporaryFailure,
    senders_from,
)

log = structlog.get_logger()


@dataclass(frozen=True)
class Policy:
    """How many to claim, for how long, and how to retry (the settings' `message_*`)."""

    batch_size: int = 10
    lease: timedelta = timedelta(seconds=120)
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    # A send is not started unless this much of its lease is left (the senders' timeout, twice).
    send_margin: timedelta = timedelta(seconds=40)

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            batch_size=settings.message_batch_size,
            lease=timedelta(seconds=settings.message_lease_seconds),
            max_attempts=settings.message_max_attempts,
            retry_base_seconds=settings.message_retry_base_seconds,
            retry_cap_seconds=settings.message_retry_cap_seconds,
            send_margin=timedelta(seconds=2 * settings.smtp_timeout_seconds),
        )

    def backoff(self, attempts: int) -> timedelta:
        """The pause after the `attempts`-th try failed: base × 2^(attempts−1), capped, then
        between half and all of it at random, so messages that failed together spread out."""
        ceiling = min(self.retry_cap_seconds, self.retry_base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def new_worker_id() -> str:
    """Unique among the workers of every machine: host, process and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Claimed:
    message: Outgoing
    attempts: int  # this try included
    until: datetime  # the lease


def _due(now: datetime, channels: list[str]) -> ColumnElement[bool]:
    m = OutboxMessage
    return and_(
        m.status == "pending",
        m.channel.in_(channels),
        or_(m.next_attempt_at.is_(None), m.next_attempt_at <= now),
        or_(m.claimed_until.is_(None), m.claimed_until <= now),
    )


def claim(
    sessions: sessionmaker[Session],
    channels: list[str],
    *,
    worker_id: str,
    policy: Policy,
) -> list[Claimed]:
    """Take up to `policy.batch_size` due messages of `channels` for this worker, oldest first."""
    if not channels:
        return []
    now = clock.now()
    until = now + policy.lease
    values = {
        "claimed_by": worker_id,
        "claimed_until": until,
        "attempts": OutboxMessage.attempts + 1,
    }
    oldest = (OutboxMessage.created_at, OutboxMessage.id)
    with sessions() as probe:
        postgresql = probe.get_bind().dialect.name == "postgresql"
    if postgresql:
        with transaction(sessions) as session:
            ids = list(
                session.scalars(
                    select(OutboxMessage.id)
                    .where(_due(now, channels))
                    .order_by(*oldest)
                    .limit(policy.batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            return _claimed(session, ids, until)
    # SQLite: a read first (polled every second, it takes the write lock only when something is due),
    # then each message won by a conditional UPDATE: a row count of 1 says this worker has it.
    with transaction(sessions, read_only=True) as session:
        candidates = list(
            session.scalars(
                select(OutboxMessage.id)
                .where(_due(now, channels))
                .order_by(*oldest)
                .limit(policy.batch_size)
            )
        )
    if not candidates:
        return []
    with transaction(sessions) as session:
        won = [
            message_id
            for message_id in candidates
            if matched(
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id, _due(now, channels))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            )
            == 1
        ]
        return _claimed(session, won, until)


def _claimed(session: Session, ids: list[uuid.UUID], until: datetime) -> list[Claimed]:
    if not ids:
        return []
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [
        Claimed(
            Outgoing(
                id=m.id,
                channel=m.channel,
                to=m.to,
                subject=m.subject,
                text=m.body,
                html=m.html,
                language=m.language,
            ),
            attempts=m.attempts,
            until=until,
        )
        for m in rows
    ]


def deliver_due(
    sessions: sessionmaker[Session],
    senders: Mapping[str, Sender],
    *,
    worker_id: str,
    policy: Policy | None = None,
    max_batches: int = 100,
) -> int:
    """Send what is due on the channels that have a sender, batch after batch until none is left
    (or `max_batches`). Returns how many messages were sent."""
    policy = policy or Policy()
    channels = sorted(senders)
    sent = 0
    for _batch in range(max_batches):
        batch = claim(sessions, channels, worker_id=worker_id, policy=policy)
        if not batch:
            break
        for position, claimed in enumerate(batch):
            if clock.now() + policy.send_margin > claimed.until:
                # Too little of the lease left to send safely (slow servers): give the rest back at
                # once, and end this pass.
                _release(sessions, batch[position:], worker_id)
                return sent
            sent += _deliver(sessions, senders[claimed.message.channel], claimed, worker_id, policy)
    return sent


def _deliver(
    sessions: sessionmaker[Session],
    sender: Sender,
    claimed: Claimed,
    worker_id: str,
    policy: Policy,
) -> int:
    message = claimed.message
    try:
        provider_id = sender.send(message)
    except PermanentFailure as failure:
        _record(sessions, claimed, worker_id, status="failed", last_error=str(failure))
        log.warning(
            "message_failed", id=str(message.id), channel=message.channel, error=str(failure)
        )
        return 0
    except (
        Exception
    ) as failure:  # TemporaryFailure, or a sender's bug: tried again later either way
        error = str(failure) if isinstance(failure, TemporaryFailure) else repr(failure)
        if not isinstance(failure, TemporaryFailure):
            log.exception("message_sender_error", id=str(message.id), channel=message.channel)
        if claimed.attempts >= policy.max_attempts:
            _record(sessions, claimed, worker_id, status="failed", last_error=error)
            log.warning(
                "message_failed",
                id=str(message.id),
                channel=message.channel,
                attempts=claimed.attempts,
                error=error,
            )
        else:
            later = clock.now() + policy.backoff(claimed.attempts)
            _record(
                sessions,
                claimed,
                worker_id,
                status="pending",
                last_error=error,
                next_attempt_at=later,
            )
        return 0
    _record(
        sessions,
        claimed,
        worker_id,
        status="sent",
        sent_at=clock.now(),
        provider_message_id=provider_id[:128],
        last_error=None,
    )
    return 1


def _record(
    sessions: sessionmaker[Session], claimed: Claimed, worker_id: str, **values: object
) -> None:
    """Write an outcome, if this worker still holds the message (its lease may have been taken over)."""
    values = {
        **values,
        "claimed_by": None,
        "claimed_until": None,
        "last_error": _short(values.get("last_error")),
    }
    with transaction(sessions) as session:
        mine = matched(
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == claimed.message.id,
                    OutboxMessage.status == "pending",
                    OutboxMessage.claimed_by == worker_id,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    if not mine:
        log.warning("message_lease_lost", id=str(claimed.message.id), outcome=values.get("status"))


def _short(error: object) -> str | None:
    return None if error is None else str(error)[:500]


def _release(sessions: sessionmaker[Session], batch: list[Claimed], worker_id: str) -> None:
    """Give unsent messages back now, their try not counted."""
    with transaction(sessions) as session:
        for claimed in batch:
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == claimed.message.id,
                    OutboxMessage.status == "pending",
                    OutboxMessage.claimed_by == worker_id,
                )
                .values(claimed_by=None, claimed_until=None, attempts=OutboxMessage.attempts - 1)
                .execution_options(synchronize_session=False)
            )


def run(stop: threading.Event, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Deliver until `stop` is set: at once when this process queues a message, else every
    `message_poll_seconds`; what is due is sent batch after batch. For the runner (`tongka worker`,
    `tongka serve`)."""
    worker_id = new_worker_id()
    policy = Policy.of(settings)
    senders = senders_from(settings, on_receipt=service.receipt_recorder(sessions))
    for channel in ("email", "sms"):
        if channel not in senders:
            log.warning("message_channel_off", channel=channel, note="its messages stay pending")
    log.info("message_worker_started", worker=worker_id, channels=sorted(senders))
    try:
        while not stop.is_set():
            service.queued.clear()
            try:
                deliver_due(sessions, senders, worker_id=worker_id, policy=policy)
            except Exception:  # a database hiccup must not end the worker: logged, tried next round
                log.exception("message_worker_error", worker=worker_id)
            _wait(stop, settings.message_poll_seconds)
    finally:
        for sender in senders.values():
            sender.close()
        log.info("message_worker_stopped", worker=worker_id)


def _wait(stop: threading.Event, seconds: float) -> None:
    """Until `seconds` pass, `stop` is set or a message is queued in this process."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if service.queued.wait(min(left, 0.1)):
            return
