"""The one protocol every payment provider speaks to the core, in plain dataclasses.

A provider starts a payment (returning what the payer needs: a page, a QR code),
verifies and parses the provider's callbacks, answers them the way the provider
expects, asks for a payment's state, closes an unpaid payment and refunds. Providers are
registered in a plain dict built from the settings (`providers/__init__.py`).

Each provider module `providers/<name>.py` has `build(settings, http) -> Provider | None`
(None when it is not configured). `http` is an `httpx.Client`; calls go to the live API
base from the settings, or in sandbox mode to the provider's simulator under
`{public_base_url}/sandbox/<name>` (`sandbox/<name>.py`), which speaks the
same wire format with the sandbox keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from tongka.errors import BadRequest, TongkaError
from tongka.i18n import _

# What a callback reports; what a payment is, asked; what a refund came to.
EventOutcome = Literal["succeeded", "failed", "refunded"]
PaymentState = Literal["pending", "succeeded", "failed", "closed"]
RefundState = Literal["succeeded", "pending", "failed"]


class InvalidCallback(BadRequest):
    code = "invalid_callback"
    message = _("The payment notification could not be verified.")


class ProviderUnavailable(TongkaError):
    """The provider could not be reached or refused our call: not the customer's fault, try again."""

    status = 502
    code = "provider_unavailable"
    message = _("The payment provider did not answer. Nothing was charged; try again in a moment.")


@dataclass(frozen=True)
class PaymentRequest:
    payment_id: str  # ours; the provider echoes it back
    amount: int  # minor units
    currency: str
    method: str
    description: str
    notify_url: str  # where the provider's callbacks go
    return_url: str  # where the payer goes afterwards
    # The payer's address, for a method the provider asks it of (WeChat Pay H5's scene_info).
    payer_ip: str | None = None


@dataclass(frozen=True)
class Checkout:
    provider_reference: str
    checkout_url: str | None = None  # a page the payer opens
    qr_content: str | None = None  # what a QR code shows, for wallets


@dataclass(frozen=True)
class PaymentEvent:
    event_id: str  # unique per provider: the inbox key
    payment_id: str  # ours
    provider_reference: str
    # succeeded / failed: the payment's outcome; refunded: a refund of `amount` went through
    outcome: EventOutcome
    amount: int
    currency: str
    refund_id: str | None = None  # ours, for outcome "refunded"


@dataclass(frozen=True)
class PaymentStatus:
    """What the provider says of a payment when asked (reconciliation, expiry)."""

    status: PaymentState
    provider_reference: str | None
    amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str  # ours; providers take it as the idempotency key of the refund
    payment_id: str
    provider_reference: str
    amount: int
    currency: str
    payment_amount: int  # the whole payment, which some providers want alongside
    reason: str


@dataclass(frozen=True)
class RefundResult:
    provider_refund_id: str
    status: RefundState


@dataclass(frozen=True)
class CallbackAnswer:
    status_code: int
    body: str
    media_type: str = "application/json"


class Provider(Protocol):
    name: str

    def start(self, request: PaymentRequest) -> Checkout: ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        """Verify the signature and read the event; InvalidCallback if it is not genuine."""
        ...

    def acknowledge(self) -> CallbackAnswer:
        """What the provider expects to hear once an event is safely stored."""
        ...

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        """Ask the provider for the payment's state (ProviderUnavailable if it cannot be asked)."""
        ...

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        """Tell the provider the payment may no longer be paid (the order expired or was cancelled)."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a succeeded payment; calling twice with one refund_id refunds once."""
        ...


@dataclass(frozen=True)
class SavingStarted:
    """A card being saved for payments without the payer (auto-renew): where the payer enters it."""

    customer: str  # the provider's customer the card is saved to
    setup_reference: str  # the provider's id of the saving (Stripe's SetupIntent)
    url: str | None  # the page the payer enters the card on (None: the app's own form)


@dataclass(frozen=True)
class SavedCard:
    customer: str
    method: str  # the provider's id of the saved card (Stripe's PaymentMethod)
    label: str  # e.g. "visa 4242"
    owner: str | None  # the `reference` it was started with (our account id)


@runtime_checkable
class SavesCards(Protocol):
    """A provider that can save a card and charge it later with nobody at the screen."""

    def start_saving(self, *, reference: str, email: str, return_url: str) -> SavingStarted: ...

    def saved_card(self, setup_reference: str) -> SavedCard | None:
        """The card saved by that setup, once the payer entered it (None: not yet, or refused)."""
        ...

    def charge_saved(self, request: PaymentRequest, customer: str, method: str) -> PaymentStatus:
        """Charge a saved card now, off-session: succeeded or failed (declined), once per payment id."""
        ...


@dataclass(frozen=True)
class Agreement:
    """A password-free payment agreement the payer signed on the wallet's page (Alipay's 代扣,
    WeChat Pay's 委托代扣 contract)."""

    agreement_no: str  # the wallet's number for it, quoted when charging
    reference: str  # what it was started with (our account id)
    status: str  # NORMAL: in force; anything else: not usable
    label: str  # e.g. the payer's masked wallet account


@runtime_checkable
class SignsAgreements(Protocol):
    """A wallet whose payer can sign an agreement to be charged later with nobody at the screen."""

    def agreement_sign_url(self, *, reference: str, notify_url: str, return_url: str) -> str:
        """The wallet's page where the payer signs; `reference` comes back with the agreement."""
        ...

    def parse_agreement(self, params: Mapping[str, str]) -> Agreement:
        """A signed agreement notice (notification or return), verified; InvalidCallback if not."""
        ...

    def charge_agreement(self, request: PaymentRequest, agreement_no: str) -> PaymentStatus:
        """Charge under the agreement now: succeeded or failed (declined), once per payment id."""
        ...


@runtime_checkable
class NotifiesAgreements(Protocol):
    """A wallet that tells of a signed agreement only by a signed notification with a body
    (WeChat Pay's papay contract: headers signed, resource encrypted); its return carries nothing."""

    def parse_agreement_notice(self, headers: Mapping[str, str], body: bytes) -> Agreement:
        """The signing notification, verified and decrypted; InvalidCallback if not genuine."""
        ...
