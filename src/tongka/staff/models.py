"""Staff members, their sessions and the audit log. Separate from subscribers' accounts: a
subscriber's token or cookie is never a staff member's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

ROLES = ("agent", "manager", "admin")


class StaffMember(IdMixin, CreatedMixin, Base):
    """A store agent or manager (of one store), or an operator admin (of none)."""

    __tablename__ = "staff_members"
    __table_args__ = (
        CheckConstraint("role IN " + str(ROLES), name="role"),
        # An agent and a manager work at one store; an admin at none.
        CheckConstraint("(role = 'admin') = (store_id IS NULL)", name="store"),
    )

    username: Mapped[str] = mapped_column(String(32), unique=True)  # lower-case
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"), index=True)
    # The TOTP secret (base32), sealed with a key derived from the secret key: a copy of the
    # database alone makes no codes. None until enrolment is confirmed with a first code.
    totp_sealed: Mapped[str | None] = mapped_column(String(200))
    # A secret shown at enrolment, not yet confirmed by a code from the app.
    totp_pending: Mapped[str | None] = mapped_column(String(200))
    # The last TOTP time step used: a code works once (RFC 6238 §5.2).
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def enrolled(self) -> bool:
        return self.totp_sealed is not None


class StaffSession(CreatedMixin, Base):
    """A staff member's session (web cookie or API bearer token). Only its SHA-256 is kept; it ends
    at `expires_at` or after `idle` seconds without a request, whichever is first."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_members.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    address: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(IdMixin, Base):
    """One staff action: who (and in which role and store), what, on which object, before and
    after, when and from where. Append-only: nothing updates or deletes a row."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_object", "object_id"))

    at: Mapped[datetime] = mapped_column(UTCDateTime())
    staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_members.id"), index=True)
    username: Mapped[str] = mapped_column(String(32))  # "cli" for a command run on the server
    role: Mapped[str] = mapped_column(String(16))
    store_code: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(64))  # e.g. "sale.cash", "pack.price", "staff.add"
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    address: Mapped[str | None] = mapped_column(String(64))
