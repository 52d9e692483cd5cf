"""Imports every domain's tables, so the metadata (and Alembic) sees them all."""

from tongka.account.models import AccessToken, Account, BindChallenge, Line, RealNameRecord
from tongka.alerts.models import AlertEvent, AlertPreference, AlertScan
from tongka.autorenew.models import (
    AutoRenewAgreement,
    AutoRenewAttempt,
    AutoRenewCard,
    AutoRenewRule,
)
from tongka.catalog.models import OverageRate, Pack, PackPrice, PackPriceChange
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
from tongka.counter.models import CommissionRate, CounterSale, Shift
from tongka.fx.models import ExchangeRate
from tongka.idempotency import IdempotencyRecord
from tongka.jobs.models import ScheduledJob
from tongka.ledger.models import Bucket, LedgerAccount, LineDebt, Transfer
from tongka.notify.models import AntiPhishingCode, OutboxMessage
from tongka.order.models import Order
from tongka.payment.models import Payment, PaymentCallback, Refund
from tongka.promotion.models import CouponCode, Offer, OfferBudget, Quote, Redemption
from tongka.receipt.models import Receipt, ReceiptCounter
from tongka.staff.models import AuditEntry, StaffMember, StaffSession
from tongka.stores.models import Store
from tongka.throttle import ThrottleCounter
from tongka.trust.models import OfficialChannel, ScamCampaign, ScamReport
from tongka.wallet.models import Wallet, WalletTopup

__all__ = [
    "AccessToken",
    "Account",
    "AlertEvent",
    "AlertPreference",
    "AlertScan",
    "AntiPhishingCode",
    "AuditEntry",
    "AutoRenewAgreement",
    "AutoRenewAttempt",
    "AutoRenewCard",
    "AutoRenewRule",
    "BindChallenge",
    "Bucket",
    "ChargingAnswer",
    "ChargingNotification",
    "ChargingSession",
    "CommissionRate",
    "CounterSale",
    "CouponCode",
    "ExchangeRate",
    "Grant",
    "GrantReservation",
    "IdempotencyRecord",
    "LedgerAccount",
    "Line",
    "LineDebt",
    "LineOverage",
    "Network",
    "Offer",
    "OfferBudget",
    "OfficialChannel",
    "Order",
    "OutboxMessage",
    "OverageMonth",
    "OverageRate",
    "Pack",
    "PackPrice",
    "PackPriceChange",
    "Payment",
    "PaymentCallback",
    "Quote",
    "RatingGroup",
    "RealNameRecord",
    "Receipt",
    "ReceiptCounter",
    "Redemption",
    "Refund",
    "ScamCampaign",
    "ScamReport",
    "ScheduledJob",
    "Shift",
    "StaffMember",
    "StaffSession",
    "Store",
    "ThrottleCounter",
    "Transfer",
    "UsageDay",
    "UsageRecord",
    "Wallet",
    "WalletTopup",
]
