"""Receipts API. Who may call: the signed-in subscriber, for their own receipts (another's is 404)."""

from __future__ import annotations

from fastapi import APIRouter

from tongka.deps import CurrentAccount, SessionDep, SettingsDep
from tongka.receipt import service
from tongka.receipt.schemas import ReceiptOut

router = APIRouter(prefix="/api/v1", tags=["receipts"])


@router.get("/receipts", response_model=list[ReceiptOut])
def list_receipts(
    account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> list[ReceiptOut]:
    """The signed-in subscriber's receipts, newest first."""
    return [
        ReceiptOut.of(r, settings.public_base_url) for r in service.receipts_of(session, account)
    ]


@router.get("/receipts/{number}", response_model=ReceiptOut)
def get_receipt(
    number: str, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> ReceiptOut:
    """The signed-in subscriber, for a receipt of their own: one receipt by its number (`ONL-00000042`)."""
    return ReceiptOut.of(service.own_receipt(session, account, number), settings.public_base_url)
