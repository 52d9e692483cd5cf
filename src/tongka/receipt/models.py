"""Receipts: one per confirmed payment, numbered in sequence per issuer, signed with Ed25519."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime


class ReceiptCounter(Base):
    """The last number an issuer gave; locked while the next receipt is numbered, so numbers have no gaps."""

    __tablename__ = "receipt_counters"

    issuer: Mapped[str] = mapped_column(String(32), primary_key=True)  # "online", or a store's code
    last_sequence: Mapped[int] = mapped_column(default=0)


class Receipt(IdMixin, CreatedMixin, Base):
    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("issuer", "sequence"),)

    number: Mapped[str] = mapped_column(
        String(40), unique=True
    )  # e.g. "ONL-00000042", "MK01-00000007" (see receipt/service.py)
    issuer: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int]
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # Exactly what was signed: the receipt's fields as canonical JSON, and the Ed25519 signature of it.
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    signed_bytes: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(100))  # base64url, unpadded
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
