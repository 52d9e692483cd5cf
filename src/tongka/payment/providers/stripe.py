"""Stripe, for cards on the web: the PaymentIntents API and signed webhooks, through the official SDK.

Wire protocol (https://docs.stripe.com/api):
  POST /v1/payment_intents              form-encoded, `Authorization: Bearer sk_...`, `Idempotency-Key`
  GET  /v1/payment_intents/{id}         query
  POST /v1/payment_intents/{id}/cancel  close
  POST /v1/refunds                      refund, with `Idempotency-Key` made from our refund id
Webhooks go to the endpoint configured at Stripe (`/api/v1/payments/callbacks/stripe`), signed
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under whsec_...>` and
checked by `stripe.WebhookSignature.verify_header` (five minutes' tolerance, which the SDK applies
to the past only: a time more than five minutes ahead is refused here). The signature covers the
whole body, so the event id (the inbox key) is Stripe's; an event of the other mode (`livemode`
against our key's `sk_live_`/`sk_test_`) is refused, so test payments never fulfil live orders. We read
`payment_intent.succeeded`, `payment_intent.payment_failed` and `charge.refunded`; our payment
id travels as the PaymentIntent's `metadata[payment_id]` (copied by Stripe onto its charge),
our refund id as the refund's `metadata[refund_id]`.

In sandbox mode the API base is the simulator (`sandbox/stripe.py`), which also
serves the card form the payer fills in; live, tongka must host a Stripe Elements form
with the PaymentIntent's client secret (not written yet: `checkout_url` is None).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
import stripe
import structlog

from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentStatus,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    RefundState,
    SavedCard,
    SavingStarted,
)

log = structlog.get_logger()

TOLERANCE_SECONDS = 300
# Decimal places of Stripe's "smallest currency unit" per currency (docs.stripe.com/currencies).
STRIPE_EXPONENT: dict[str, int] = {"CNY": 2, "HKD": 2}


def to_stripe(amount: int, currency: str) -> tuple[int, str]:
    """tongka minor units -> Stripe's integer amount and lowercase currency, by integer scaling only."""
    shift = STRIPE_EXPONENT[currency] - EXPONENT[currency]
    if shift < 0 and amount % 10**-shift:
        raise ValueError(f"{amount} {currency} cannot be expressed in Stripe's unit")
    return (amount * 10**shift if shift >= 0 else amount // 10**-shift), currency.lower()


def from_stripe(amount: int, currency: str) -> tuple[int, str]:
    code = currency.upper()
    if (
        code not in STRIPE_EXPONENT
        or code not in EXPONENT
        or isinstance(amount, bool)
        or not isinstance(amount, int)
    ):
        raise ValueError(f"unexpected amount {amount!r} {currency!r}")
    shift = EXPONENT[code] - STRIPE_EXPONENT[code]
    if shift < 0 and amount % 10**-shift:
        raise ValueError(f"{amount} {currency} is not a whole number of tongka minor units")
    return (amount * 10**shift if shift >= 0 else amount // 10**-shift), code


class _InjectedHTTP(stripe.HTTPClient):
    """The SDK's transport over the httpx.Client we are given (the app's, or the tests' in-process one)."""

    name = "tongka-httpx"

    def __init__(self, http: httpx.Client) -> None:
        super().__init__()
        self._http = http

    # stripe's base class says the body is a str; its own clients answer bytes, as this one does.
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = self._http.request(
                method, url, headers=dict(headers or {}), content=post_data
            )
        except httpx.HTTPError as e:
            raise stripe.APIConnectionError(
                f"Stripe unreachable: {type(e).__name__}", should_retry=True
            ) from e
        return response.content, response.status_code, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        raise NotImplementedError("tongka makes no streaming Stripe calls")

    def close(self) -> None:
        pass  # the httpx.Client belongs to whoever passed it in


def build(settings: Settings, http: httpx.Client) -> StripeProvider | None:
    if settings.stripe_secret_key is None or settings.stripe_webhook_secret is None:
        return None
    if settings.stripe_api_base:
        return StripeProvider(
            settings.stripe_secret_key.get_secret_value(),
            settings.stripe_webhook_secret.get_secret_value(),
            settings.stripe_api_base,
            http,
        )
    if not settings.sandbox_enabled:
        return None  # no live API and no simulator to call
    base = f"{settings.public_base_url.rstrip('/')}/sandbox/stripe"
    return StripeProvider(
        settings.stripe_secret_key.get_secret_value(),
        settings.stripe_webhook_secret.get_secret_value(),
        base,
        http,
        card_page_base=base,
    )


class StripeProvider:
    name = "stripe"

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str,
        http: httpx.Client,
        card_page_base: str | None = None,
    ) -> None:
        self._webhook_secret = webhook_secret
        # Restricted keys (rk_) name their mode the same way; a key naming none takes test events only.
        self._livemode = secret_key.startswith(("sk_live_", "rk_live_"))
        self._card_page_base = card_page_base
        # One retry: calls are idempotent, and we sit inside a request's transaction meanwhile.
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=_InjectedHTTP(http),
            max_network_retries=1,
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as e:
            log.warning(
                "stripe_call_failed",
                call=what,
                status=e.http_status,
                error_code=e.code,
                error=str(e)[:200],
            )
            raise ProviderUnavailable() from e

    def start(self, request: PaymentRequest) -> Checkout:
        amount, currency = to_stripe(request.amount, request.currency)
        intent = self._call(
            "create_payment_intent",
            self._client.v1.payment_intents.create,
            params={
                "amount": amount,
                "currency": currency,
                "payment_method_types": ["card"],
                "description": request.description,
                "metadata": {"payment_id": request.payment_id},
            },
            # A retried start for the same payment gets the same PaymentIntent back.
            options={"idempotency_key": f"tongka-payment-{request.payment_id}"},
        )
        url = None
        if self._card_page_base:
            query = httpx.QueryParams(
                {"client_secret": intent.client_secret, "return_url": request.return_url}
            )
            url = f"{self._card_page_base}/pay/{intent.id}?{query}"
        return Checkout(provider_reference=intent.id, checkout_url=url)

    # -- cards saved for auto-renew: a SetupIntent (usage off_session), then PaymentIntents
    # confirmed off-session with the saved PaymentMethod (docs.stripe.com/payments/save-and-reuse)

    def start_saving(self, *, reference: str, email: str, return_url: str) -> SavingStarted:
        customer = self._call(
            "create_customer",
            self._client.v1.customers.create,
            params={"email": email, "metadata": {"account_id": reference}},
            options={"idempotency_key": f"tongka-customer-{reference}-{int(time.time())}"},
        )
        setup = self._call(
            "create_setup_intent",
            self._client.v1.setup_intents.create,
            params={
                "customer": customer.id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": {"account_id": reference},
            },
        )
        url = None
        if self._card_page_base:
            query = httpx.QueryParams(
                {"client_secret": setup.client_secret, "return_url": return_url}
            )
            url = f"{self._card_page_base}/setup/{setup.id}?{query}"
        return SavingStarted(customer=customer.id, setup_reference=setup.id, url=url)

    def saved_card(self, setup_reference: str) -> SavedCard | None:
        setup = self._call(
            "retrieve_setup_intent", self._client.v1.setup_intents.retrieve, setup_reference
        )
        if setup.status != "succeeded" or not setup.payment_method:
            return None
        method = self._call(
            "retrieve_payment_method",
            self._client.v1.payment_methods.retrieve,
            str(setup.payment_method),
        )
        card = method.card
        return SavedCard(
            customer=str(setup.customer),
            method=method.id,
            label=f"{card.brand} {card.last4}" if card else "card",
            owner=setup.metadata.to_dict().get("account_id") if setup.metadata else None,
        )

    def charge_saved(self, request: PaymentRequest, customer: str, method: str) -> PaymentStatus:
        amount, currency = to_stripe(request.amount, request.currency)
        try:
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": amount,
                    "currency": currency,
                    "customer": customer,
                    "payment_method": method,
                    "off_session": True,
                    "confirm": True,
                    "description": request.description,
                    "metadata": {"payment_id": request.payment_id},
                },
                options={"idempotency_key": f"tongka-payment-{request.payment_id}"},
            )
        except stripe.CardError as e:  # declined: Stripe answers 402 with the PaymentIntent
            log.info("stripe_saved_card_declined", error_code=e.code, payment_id=request.payment_id)
            declined = e.error.payment_intent if e.error else None
            reference = declined.id if declined else None
            return PaymentStatus("failed", reference, request.amount, request.currency)
        except stripe.StripeError as e:
            log.warning(
                "stripe_call_failed", call="charge_saved", status=e.http_status, error_code=e.code
            )
            raise ProviderUnavailable() from e
        return _status(intent)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        header = {k.lower(): v for k, v in headers.items()}.get("stripe-signature")
        if header is None:
            raise InvalidCallback()
        try:
            stripe.WebhookSignature.verify_header(
                body, header, self._webhook_secret, TOLERANCE_SECONDS
            )
            # The first timestamp, the one verify_header checked.
            signed_at = int(next((p[2:] for p in header.split(",") if p.startswith("t=")), ""))
        except (stripe.SignatureVerificationError, ValueError):  # ValueError: not UTF-8
            raise InvalidCallback() from None
        if signed_at > time.time() + TOLERANCE_SECONDS:
            raise InvalidCallback()
        try:
            event = json.loads(body)
            if event["livemode"] is not self._livemode:
                log.warning("stripe_event_of_other_mode", livemode=event["livemode"])
                raise InvalidCallback()
            return _read_event(event)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidCallback() from None

    def acknowledge(self) -> CallbackAnswer:
        # Stripe wants any 2xx, quickly; the body is ignored.
        return CallbackAnswer(200, '{"received": true}')

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        if not provider_reference:
            return PaymentStatus(
                "pending", None
            )  # no PaymentIntent id to ask about: Stripe cannot tell
        intent = self._call(
            "retrieve_payment_intent", self._client.v1.payment_intents.retrieve, provider_reference
        )
        try:
            return _status(intent)
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # an answer we cannot read
            log.warning("stripe_call_failed", call="retrieve_payment_intent", error=str(e)[:200])
            raise ProviderUnavailable() from e

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        if not provider_reference:
            return
        try:
            self._client.v1.payment_intents.cancel(provider_reference)
        except stripe.InvalidRequestError as e:
            if e.code != "payment_intent_unexpected_state":
                log.warning(
                    "stripe_call_failed",
                    call="cancel_payment_intent",
                    status=e.http_status,
                    error_code=e.code,
                )
                raise ProviderUnavailable() from e
            # Already canceled, or already paid (its webhook brings the success): nothing to close.
            log.info("stripe_close_not_open", payment_id=payment_id, reference=provider_reference)
        except stripe.StripeError as e:
            log.warning(
                "stripe_call_failed",
                call="cancel_payment_intent",
                status=e.http_status,
                error_code=e.code,
            )
            raise ProviderUnavailable() from e

    def refund(self, request: RefundRequest) -> RefundResult:
        amount, _currency = to_stripe(request.amount, request.currency)
        refund = self._call(
            "create_refund",
            self._client.v1.refunds.create,
            params={
                "payment_intent": request.provider_reference,
                "amount": amount,
                "reason": "requested_by_customer",  # Stripe takes only its own reason codes
                "metadata": {
                    "refund_id": request.refund_id,
                    "payment_id": request.payment_id,
                    "reason": request.reason[:500],
                },
            },
            # Stripe replays the first answer for a repeated key: one refund per refund id.
            options={"idempotency_key": f"tongka-refund-{request.refund_id}"},
        )
        states: dict[str, RefundState] = {
            "succeeded": "succeeded",
            "failed": "failed",
            "canceled": "failed",
        }
        return RefundResult(
            provider_refund_id=refund.id, status=states.get(str(refund.status), "pending")
        )


def _status(intent: Any) -> PaymentStatus:
    if intent.status == "succeeded":
        amount, currency = from_stripe(intent.amount_received, intent.currency)
        return PaymentStatus("succeeded", intent.id, amount, currency)
    amount, currency = from_stripe(intent.amount, intent.currency)
    if intent.status == "canceled":
        return PaymentStatus("closed", intent.id, amount, currency)
    if intent.status == "requires_payment_method" and intent.last_payment_error:
        return PaymentStatus(
            "failed", intent.id, amount, currency
        )  # the last card was declined (it may be retried)
    return PaymentStatus("pending", intent.id, amount, currency)


def _read_event(event: dict[str, Any]) -> PaymentEvent:
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        succeeded = kind == "payment_intent.succeeded"
        amount, currency = from_stripe(
            obj["amount_received" if succeeded else "amount"], obj["currency"]
        )
        return PaymentEvent(
            event_id=str(event["id"]),
            payment_id=str(obj["metadata"]["payment_id"]),
            provider_reference=str(obj["id"]),
            outcome="succeeded" if succeeded else "failed",
            amount=amount,
            currency=currency,
        )
    if kind == "charge.refunded":
        # A charge.refunded event comes per refund; what this one refunded is the growth of amount_refunded.
        before = event["data"].get("previous_attributes", {}).get("amount_refunded", 0)
        amount, currency = from_stripe(obj["amount_refunded"] - before, obj["currency"])
        if amount <= 0:
            raise ValueError("a refund event that refunds nothing")
        # The charge's refunds, newest first, are listed only on some API versions.
        refunds = (obj.get("refunds") or {}).get("data") or [{}]
        return PaymentEvent(
            event_id=str(event["id"]),
            payment_id=str(obj["metadata"]["payment_id"]),
            provider_reference=str(obj["payment_intent"]),
            outcome="refunded",
            amount=amount,
            currency=currency,
            refund_id=(refunds[0].get("metadata") or {}).get("refund_id"),
        )
    raise ValueError(f"unhandled Stripe event type {kind}")  # not one we subscribe to: refused
