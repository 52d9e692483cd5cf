"""Subscriber accounts, their access tokens, lines (SIMs), line binding and real-name records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime


class Account(IdMixin, CreatedMixin, Base):
    __tablename__ = "accounts"

    username: Mapped[str] = mapped_column(String(32), unique=True)  # stored lower-case
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8))  # zh-Hans | zh-Hant | en
    # Where the customer lives: some payment methods and offers are for mainland customers only.
    region: Mapped[str] = mapped_column(
        String(8), default="hk", server_default="hk"
    )  # hk | mainland


class AccessToken(CreatedMixin, Base):
    """A bearer token. Only its SHA-256 is stored, so a copy of the database logs nobody in."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Line(IdMixin, CreatedMixin, Base):
    """One SIM or eSIM (ICCID) with up to two numbers, +852 and +86. It exists before anyone binds it."""

    __tablename__ = "lines"

    iccid: Mapped[str] = mapped_column(String(22), unique=True)
    imsi: Mapped[str | None] = mapped_column(String(15), unique=True)
    hk_number: Mapped[str | None] = mapped_column(String(16), unique=True)  # E.164
    cn_number: Mapped[str | None] = mapped_column(String(16), unique=True)  # E.164
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")

    real_name: Mapped[RealNameRecord | None] = relationship(lazy="selectin", uselist=False)

    @property
    def numbers(self) -> list[str]:
        return [n for n in (self.hk_number, self.cn_number) if n]


class BindChallenge(IdMixin, CreatedMixin, Base):
    """A one-time code sent by SMS to prove that the person binding a line holds it."""

    __tablename__ = "bind_challenges"
    __table_args__ = (Index("ix_bind_challenges_number_created", "number", "created_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    # None: a decoy, made for a number that cannot be bound, so the answer does not tell it apart
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    number: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(
        String(64)
    )  # HMAC of the code; the code itself is never stored
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RealNameRecord(IdMixin, CreatedMixin, Base):
    """The identity document registered for a line (实名).

    The full number is not kept: a keyed hash lets staff check a presented document
    against it, and a masked form is what anyone is ever shown.
    """

    __tablename__ = "real_name_records"

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), unique=True)
    document_type: Mapped[str] = mapped_column(String(16))  # identity.DOCUMENT_TYPES
    document_country: Mapped[str | None] = mapped_column(String(2))  # passports: ISO 3166 alpha-2
    document_number_masked: Mapped[str] = mapped_column(String(32))
    document_number_digest: Mapped[str] = mapped_column(String(64))
    holder_name_masked: Mapped[str] = mapped_column(String(64))
    holder_name_digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # import | app | store


class PasswordReset(IdMixin, CreatedMixin, Base):
    """A password reset link sent by email: used once, before it expires.

    Only the SHA-256 of the link's token is stored, so a copy of the database resets nothing.
    """

    __tablename__ = "password_resets"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
