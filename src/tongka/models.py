"""Imports every domain's tables, so the metadata (and Alembic) sees them all."""

from tongka.account.models import AccessToken, Account, BindChallenge, Line, RealNameRecord
from tongka.catalog.models import OverageRate, Pack, PackPrice
from tongka.charging.models import (
    ChargingAnswer,
    ChargingNotification,
    ChargingSession,
    Grant,
    GrantReservation,
    LineOverage,
    Network,
    OverageMonth,
    RatingGroup,
    UsageDay,
    UsageRecord,
)
from tongka.fx.models import ExchangeRate
from tongka.idempotency import IdempotencyRecord
from tongka.ledger.models import Bucket, LedgerAccount, LineDebt, Transfer
from tongka.notify.models import OutboxMessage
from tongka.order.models import Order
from tongka.payment.models import Payment, PaymentCallback, Refund
from tongka.promotion.models import CouponCode, Offer, OfferBudget, Quote, Redemption
from tongka.receipt.models import Receipt, ReceiptCounter
from tongka.throttle import ThrottleCounter
from tongka.wallet.models import Wallet

__all__ = [
    "AccessToken", "Account", "BindChallenge", "Bucket", "ChargingAnswer", "ChargingSession", "Grant", "GrantReservation", "Network", "ExchangeRate", "Receipt", "ReceiptCounter", "Refund", "IdempotencyRecord", "LedgerAccount", "Line",
    "OutboxMessage", "Order", "Pack", "PackPrice", "Payment", "PaymentCallback", "RealNameRecord", "Transfer",
    "UsageDay", "UsageRecord", "ChargingNotification", "LineDebt", "LineOverage", "OverageMonth", "OverageRate", "Wallet",
    "RatingGroup",
    "CouponCode", "Offer", "OfferBudget", "Quote", "Redemption", "ThrottleCounter",
]
