"""The one protocol every payment provider speaks to the core, in plain dataclasses.

A provider starts a payment (returning what the payer needs: a page, a QR code),
verifies and parses the provider's callbacks, and answers them the way the provider
expects. Providers are registered in a plain dict built from the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from tongka.errors import BadRequest
from tongka.i18n import _


class InvalidCallback(BadRequest):
    code = "invalid_callback"
    message = _("The payment notification could not be verified.")


@dataclass(frozen=True)
class PaymentRequest:
    payment_id: str  # ours; the provider echoes it back
    amount: int  # minor units
    currency: str
    method: str
    description: str
    notify_url: str  # where the provider's callbacks go
    return_url: str  # where the payer goes afterwards


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
    outcome: Literal["succeeded", "failed"]
    amount: int
    currency: str


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
