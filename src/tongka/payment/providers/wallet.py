"""Payments from the customer's tongka wallet (auto-renew): nobody outside is asked.

The money moves in the ledger: the renewal flow takes it from the wallet into
`system:clearing.wallet` (`wallet.service.pay`) and confirms the payment in the same
transaction, whose settlement books it from there as a sale. So this provider only names the
attempt; nothing calls back, and a pending one is settled by the flow, not by asking here.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from tongka.config import Settings
from tongka.errors import Unprocessable
from tongka.i18n import _
from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentStatus,
    RefundRequest,
    RefundResult,
)


class WalletRefundUnsupported(Unprocessable):
    code = "wallet_refund_unsupported"
    message = _("A payment from the wallet cannot be refunded through tongka yet.")


class WalletProvider:
    name = "wallet"

    def start(self, request: PaymentRequest) -> Checkout:
        return Checkout(provider_reference="WL-" + request.payment_id.replace("-", "")[:16].upper())

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        raise InvalidCallback()

    def acknowledge(self) -> CallbackAnswer:
        return CallbackAnswer(200, "")

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        return PaymentStatus("pending", provider_reference)

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        return None

    def refund(self, request: RefundRequest) -> RefundResult:
        # Money back into the wallet would be a ledger move this provider cannot make.
        raise WalletRefundUnsupported()


def build(settings: Settings, http: httpx.Client) -> WalletProvider:
    return WalletProvider()
