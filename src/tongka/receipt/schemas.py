from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tongka.receipt import service
from tongka.receipt.models import Receipt


class ReceiptOut(BaseModel):
    id: uuid.UUID
    number: str = Field(
        description="`ONL-00000042` online, `<STORE>-00000007` in a store: sequential per issuer"
    )
    issuer: str
    issued_at: datetime
    order_id: uuid.UUID
    payment_id: uuid.UUID
    content: dict[str, Any] = Field(
        description="What the receipt says; money in minor units, data in bytes"
    )
    signed_content: str = Field(description="The exact canonical JSON that was signed (UTF-8)")
    signature: str = Field(
        description="Ed25519 signature of signed_content, base64url without padding"
    )
    page_url: str = Field(description="The printable receipt with its QR code")
    verify_url: str = Field(description="The public verification link the QR code holds")

    @classmethod
    def of(cls, receipt: Receipt, base_url: str) -> ReceiptOut:
        return cls(
            id=receipt.id,
            number=receipt.number,
            issuer=receipt.issuer,
            issued_at=receipt.issued_at,
            order_id=receipt.order_id,
            payment_id=receipt.payment_id,
            content=receipt.content,
            signed_content=receipt.signed_bytes,
            signature=receipt.signature,
            page_url=f"{base_url.rstrip('/')}/receipts/{receipt.id}",
            verify_url=service.verify_url(base_url, receipt),
        )
