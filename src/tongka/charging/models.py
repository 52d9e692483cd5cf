"""Charging tables: the network registry, charging sessions and the grants they hold.

Names follow 3GPP TS 32.291 (Nchf_ConvergedCharging): a charging session is one
charging data resource (its `chargingDataRef`); a grant answers one `ratingGroup`'s
`requestedUnit` with a `grantedUnit` and is settled by the `usedUnit` reported for it.
A grant's volume is held as ledger reservations, one per bucket it draws on.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime
from tongka.ledger.models import BigId


class Network(CreatedMixin, Base):
    """A network a line may roam on, by PLMN ("460-00"), and the zone its usage counts in.

    Operator data: seeded by the migration, edited by the operator. A PLMN that is not
    here, or not active, is refused, never guessed from its country code.
    """

    __tablename__ = "networks"
    __table_args__ = (CheckConstraint("zone IN ('mainland', 'hk')", name="zone"),)

    plmn: Mapped[str] = mapped_column(String(7), primary_key=True)  # "<mcc>-<mnc>"
    mcc: Mapped[str] = mapped_column(String(3))
    mnc: Mapped[str] = mapped_column(String(3))
    operator: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(16))  # mainland | hk
    active: Mapped[bool] = mapped_column(default=True)


class RatingGroup(CreatedMixin, Base):
    """A 3GPP rating group the operator names, and whether its usage is free (zero-rated).

    Zero-rated groups (the self-service site, the official app) are granted to any active line,
    even one with no data and no wallet, so a customer can always renew; their usage is counted
    (`UsageDay.zero_rated_bytes`) but never charged. A rating group not configured here is charged
    as internet data.
    """

    __tablename__ = "rating_groups"
    __table_args__ = (
        CheckConstraint("rating_group >= 0 AND rating_group <= 4294967295", name="uint32"),
    )

    rating_group: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(64))
    zero_rated: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChargingSession(IdMixin, CreatedMixin, Base):
    """One charging data resource opened by the network for a line's data session."""

    __tablename__ = "charging_sessions"
    __table_args__ = (CheckConstraint("status IN ('open', 'released')", name="status"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    charging_data_ref: Mapped[str] = mapped_column(String(64), unique=True)
    plmn: Mapped[str] = mapped_column(ForeignKey("networks.plmn"))
    # The network the session is on now and its zone: the create's, then each border crossing's.
    zone: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where the network wants to hear of new quota (REAUTHORIZATION), if it said.
    notify_uri: Mapped[str | None] = mapped_column(String(2048))
    # What makes a create request the same request again: a retransmitted create finds its session.
    create_key: Mapped[str | None] = mapped_column(String(64), unique=True)


class Grant(IdMixin, CreatedMixin, Base):
    """The quota granted for one rating group's request, held as reservations on buckets.

    `used_bytes` is what the network reported (`usedUnit`); of it, `unreserved_bytes`
    could not be charged to the reservations (beyond the grant, or after they expired)
    and is left for the caller to charge.
    """

    __tablename__ = "grants"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'settled')", name="status"),
        CheckConstraint("granted_bytes > 0", name="granted_positive"),
        CheckConstraint("used_bytes >= 0 AND unreserved_bytes >= 0", name="usage_not_negative"),
        Index("ix_grants_session_rating_group", "charging_session_id", "rating_group"),
    )

    charging_session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charging_sessions.id"))
    rating_group: Mapped[int] = mapped_column(BigInteger)  # 3GPP ratingGroup: uint32
    granted_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    unreserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when its reservations lapse
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    reservations: Mapped[list[GrantReservation]] = relationship(
        lazy="selectin", order_by="GrantReservation.pending_transfer_id"
    )


class GrantReservation(Base):
    """One ledger reservation of a grant, in drawing order by transfer id: `volume_bytes` of the
    grant held either as bytes on a bucket (`amount` = `volume_bytes`), or, for overage, as money
    on the wallet (`amount` minor units for `volume_bytes` at `per_mb`, rounded up).
    """

    __tablename__ = "grant_reservations"
    __table_args__ = (
        CheckConstraint("(bucket_id IS NULL) = (per_mb IS NOT NULL)", name="bucket_or_overage"),
    )

    pending_transfer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_transfers.id"), primary_key=True, autoincrement=False
    )
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("grants.id"), index=True)
    bucket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("buckets.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    volume_bytes: Mapped[int] = mapped_column(BigInteger)
    per_mb: Mapped[int | None] = mapped_column(
        BigInteger
    )  # overage: the rate charged, minor units per MB


class LineOverage(Base):
    """A line owner's choice to keep data flowing beyond the packs, charged to the wallet, up to a cap a month."""

    __tablename__ = "line_overage"
    __table_args__ = (CheckConstraint("monthly_cap >= 0", name="cap_not_negative"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    monthly_cap: Mapped[int] = mapped_column(
        BigInteger, default=0
    )  # minor units of `currency`, per Hong Kong month
    currency: Mapped[str] = mapped_column(String(3))  # the wallet's
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OverageMonth(Base):
    """Overage charged to a line in one Hong Kong calendar month (posted; what is held is in open grants)."""

    __tablename__ = "overage_months"
    __table_args__ = (CheckConstraint("charged >= 0 AND volume_bytes >= 0", name="not_negative"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    month: Mapped[date] = mapped_column(primary_key=True)  # the first day of the month
    currency: Mapped[str] = mapped_column(String(3))
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    volume_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class ChargingNotification(IdMixin, CreatedMixin, Base):
    """A ChargingNotifyRequest to send to a session's notifyUri after the commit that caused it (an outbox)."""

    __tablename__ = "charging_notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index("ix_charging_notifications_due", "status", "next_attempt_at"),
    )

    charging_session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charging_sessions.id"))
    uri: Mapped[str] = mapped_column(String(2048))
    body: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ChargingAnswer(CreatedMixin, Base):
    """The answer given to one request of a charging session, by its `invocationSequenceNumber`.

    A request that arrives again with the same sequence number (a retransmission) gets
    this answer back and charges nothing again.
    """

    __tablename__ = "charging_answers"

    charging_session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("charging_sessions.id"), primary_key=True
    )
    invocation_sequence_number: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    status_code: Mapped[int]
    answer: Mapped[Any] = mapped_column(JSON, nullable=True)  # None for 204 (release)


class UsageDay(IdMixin, Base):
    """The data a line used on one day, in one zone, on one network: every reported byte,
    including any beyond its grants. Added to as each grant is settled, in the same transaction.
    """

    __tablename__ = "usage_days"
    __table_args__ = (
        UniqueConstraint("line_id", "day", "zone", "plmn"),
        CheckConstraint("zone IN ('mainland', 'hk')", name="zone"),
        CheckConstraint("bytes >= 0", name="bytes_not_negative"),
        CheckConstraint("zero_rated_bytes >= 0", name="zero_rated_not_negative"),
    )

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    # The calendar day in Hong Kong time (UTC+8, no daylight saving) when the usage was reported.
    day: Mapped[date]
    zone: Mapped[str] = mapped_column(
        String(16)
    )  # the zone of the network the usage was on: mainland | hk
    plmn: Mapped[str] = mapped_column(ForeignKey("networks.plmn"))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # charged usage (internet data)
    # Usage of zero-rated rating groups: counted for the operator, never charged.
    # No Python default: statements built once from_select would send it as a NULL parameter (db.direct).
    zero_rated_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")


class UsageRecord(Base):
    """One usage record imported from a file (`tongka usage import`), kept so it is charged once.

    Written in the same transaction as its charge: if the row is here, the charge is too.
    `from_buckets + overage_bytes + owed_bytes` is the whole usage; zero-byte records are
    kept with nothing charged.
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint("zone IN ('mainland', 'hk')", name="zone"),
        CheckConstraint("ended_at >= started_at", name="ends_after_start"),
        CheckConstraint(
            "bytes_up >= 0 AND bytes_down >= 0 AND from_buckets >= 0 AND overage_bytes >= 0"
            " AND overage_amount >= 0 AND owed_bytes >= 0",
            name="not_negative",
        ),
        CheckConstraint(
            "from_buckets + overage_bytes + owed_bytes = bytes_up + bytes_down", name="all_charged"
        ),
        CheckConstraint(
            "(overage_amount = 0) OR (overage_currency IS NOT NULL)", name="overage_currency"
        ),
    )

    record_id: Mapped[str] = mapped_column(
        String(64), primary_key=True
    )  # the partner's id of the record
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    plmn: Mapped[str] = mapped_column(ForeignKey("networks.plmn"))
    zone: Mapped[str] = mapped_column(String(16))  # the network's zone when imported
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the instant the usage is charged at
    bytes_up: Mapped[int] = mapped_column(BigInteger)
    bytes_down: Mapped[int] = mapped_column(BigInteger)
    from_buckets: Mapped[int] = mapped_column(BigInteger)
    overage_bytes: Mapped[int] = mapped_column(BigInteger)
    overage_amount: Mapped[int] = mapped_column(BigInteger)  # minor units of overage_currency
    overage_currency: Mapped[str | None] = mapped_column(String(3))
    owed_bytes: Mapped[int] = mapped_column(BigInteger)
    # Which run imported it and from which line of its file: a record_id met again in the
    # same run is a duplicate within the file, in a later run it was already imported.
    import_id: Mapped[uuid.UUID]
    line_number: Mapped[int]
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())
