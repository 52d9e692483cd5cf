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


class ChargingSession(IdMixin, CreatedMixin, Base):
    """One charging data resource opened by the network for a line's data session."""

    __tablename__ = "charging_sessions"
    __table_args__ = (CheckConstraint("status IN ('open', 'released')", name="status"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    charging_data_ref: Mapped[str] = mapped_column(String(64), unique=True)
    plmn: Mapped[str] = mapped_column(ForeignKey("networks.plmn"))
    zone: Mapped[str] = mapped_column(String(16))  # the network's zone when the session opened
    status: Mapped[str] = mapped_column(String(16), default="open")
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    """One ledger reservation of a grant: `amount` held on one bucket. In drawing order by transfer id."""

    __tablename__ = "grant_reservations"

    pending_transfer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_transfers.id"), primary_key=True, autoincrement=False
    )
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("grants.id"), index=True)
    bucket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("buckets.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class ChargingAnswer(CreatedMixin, Base):
    """The answer given to one request of a charging session, by its `invocationSequenceNumber`.

    A request that arrives again with the same sequence number (a retransmission) gets
    this answer back and charges nothing again.
    """

    __tablename__ = "charging_answers"

    charging_session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charging_sessions.id"), primary_key=True)
    invocation_sequence_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
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
    )

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    # The calendar day in Hong Kong time (UTC+8, no daylight saving) when the usage was reported.
    day: Mapped[date]
    zone: Mapped[str] = mapped_column(String(16))  # the charging session's zone: mainland | hk
    plmn: Mapped[str] = mapped_column(ForeignKey("networks.plmn"))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
