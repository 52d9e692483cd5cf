"""PayPal, for the web: REST Orders v2 and signed webhooks, spoken with httpx in PayPal's wire format.

Not through `paypal-server-sdk`: it sends only through `requests` (apimatic's RequestsClient),
its base URLs are a fixed enum (live or PayPal's sandbox, never our simulator) and it has no
webhook verification, so the few calls below are plain REST on the `httpx.Client` we are given.

Wire protocol (https://developer.paypal.com/docs/api/orders/v2/):
  POST  /v1/oauth2/token                          Basic client_id:secret, grant_type=client_credentials;
                                                  the Bearer token is kept until shortly before expiry
  POST  /v2/checkout/orders                       intent CAPTURE, one purchase unit: amount value/currency_code
                                                  as a decimal string, invoice_id and custom_id = our payment id;
                                                  `PayPal-Request-Id` = our payment id; the payer opens `approve`
  GET   /v2/checkout/orders/{id}                  query, and every webhook's confirmation
  PATCH /v2/checkout/orders/{id}                  close (see below)
  POST  /v2/checkout/orders/{id}/capture          capture, once the payer approved
  POST  /v2/payments/captures/{id}/refund         refund, `PayPal-Request-Id` = our refund id (PayPal replays it)
  GET   /v2/payments/refunds/{id}                 a refund webhook's confirmation

Capture: the payer's return lands on tongka's order page, which they may never reach, so the
`CHECKOUT.ORDER.APPROVED` webhook triggers it: we read the order afresh and capture it (a
second capture meets ORDER_ALREADY_CAPTURED and reads the order instead); the capture's outcome
is the event's outcome. `PAYMENT.CAPTURE.COMPLETED` / `.DENIED` then confirm it (the inbox
ignores the second word on a settled payment), `PAYMENT.CAPTURE.REFUNDED` reports a refund.

Webhooks are verified offline, as PayPal specifies: `PAYPAL-TRANSMISSION-SIG` is base64
RSA-SHA256 (`PAYPAL-AUTH-ALGO: SHA256withRSA`) over
`<transmission id>|<transmission time>|<our webhook id>|<CRC32 of the raw body, decimal>`,
checked with the certificate at `PAYPAL-CERT-URL`, which must be on PayPal's API host (or the
simulator's) over the API's scheme. Offline rather than POST /v1/notifications/verify-webhook-signature
because it checks the exact bytes received (the postback re-serialises the JSON).

That signature proves the headers, not the body: CRC32 is linear, so anyone holding one genuine
webhook can write another body with the same CRC32 under its headers. So:
- a transmission time more than TRANSMISSION_TOLERANCE_SECONDS from now is refused (PayPal signs
  each delivery, retries included, when it sends it);
- the inbox key is the transmission id, which the signature covers, never the body's event id;
- nothing in the body is believed: it only names an order (or a refund), and what PayPal answers
  for it (GET /v2/checkout/orders/{id}, GET /v2/payments/refunds/{id}) with our token is the event.
  A body naming an order PayPal did not capture is refused.

PayPal orders cannot be cancelled. `close` marks the order (custom_id -> "closed") so that an
approval arriving afterwards is not captured and reports the payment failed; an uncaptured order
moves no money and expires at PayPal.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tongka import clock
from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    RefundState,
)

log = structlog.get_logger()

CLOSED = "closed"  # custom_id of an order we closed
PURCHASE_UNIT = "/purchase_units/@reference_id=='default'"
# PayPal's currencies without decimals (developer.paypal.com/reference/currency-codes).
NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})
_VALUE = re.compile(r"^[0-9]{1,23}(\.[0-9]{1,8})?$")
# PayPal's own hosts, for certificate URLs when the API base is PayPal's.
PAYPAL_CERT_HOSTS = (
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
)
# A transmission time further than this from our clock is refused: PayPal signs every delivery
# (retries too) as it sends it, so only a replay or a clock far off is older.
TRANSMISSION_TOLERANCE_SECONDS = 300
# PayPal's ids (orders, captures, refunds, transmissions): they go into our API paths and the inbox.
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
CAPTURED = frozenset(
    {"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"}
)  # money taken (later refunds are their own events)
EVENTS = (
    "CHECKOUT.ORDER.APPROVED",
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.REFUNDED",
)


def _exponent(currency: str) -> int:
    return EXPONENT.get(currency, 0 if currency in NO_DECIMALS else 2)


def to_value(amount: int, currency: str) -> str:
    """Minor units -> PayPal's decimal string ("12.50"), exactly."""
    places = _exponent(currency)
    return f"{Decimal(amount).scaleb(-places):.{places}f}"


def from_value(value: object, currency: object) -> tuple[int, str]:
    """PayPal's {value, currency_code} -> minor units; ValueError unless it is a whole number of them."""
    if not isinstance(value, str) or not isinstance(currency, str) or not _VALUE.match(value):
        raise ValueError(f"not a PayPal amount: {value!r} {currency!r}")
    minor = Decimal(value).scaleb(_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value} {currency} is not a whole number of minor units")
    return int(minor), currency


def _amount(obj: Mapping[str, Any]) -> tuple[int, str]:
    return from_value(obj.get("value"), obj.get("currency_code"))


def build(settings: Settings, http: httpx.Client) -> PayPalProvider | None:
    if not (
        settings.paypal_client_id and settings.paypal_client_secret and settings.paypal_webhook_id
    ):
        return None
    if settings.paypal_api_base:
        base = settings.paypal_api_base
    elif settings.sandbox_enabled:
        base = f"{settings.public_base_url.rstrip('/')}/sandbox/paypal"
    else:
        return None
    return PayPalProvider(
        http,
        base,
        settings.paypal_client_id,
        settings.paypal_client_secret.get_secret_value(),
        settings.paypal_webhook_id,
    )


class PayPalProvider:
    name = "paypal"

    def __init__(
        self, http: httpx.Client, api_base: str, client_id: str, client_secret: str, webhook_id: str
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._client = (client_id, client_secret)
        self._webhook_id = webhook_id
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._lock = threading.Lock()
        self._certs: dict[str, x509.Certificate] = {}  # by URL: PayPal's certificates change rarely

    # --- the REST API ---

    def _access_token(self, renew: bool = False) -> str:
        with self._lock:
            if self._token and not renew and time.monotonic() < self._token[1]:
                return self._token[0]
            try:
                r = self._http.post(
                    f"{self._base}/v1/oauth2/token",
                    auth=self._client,
                    data={"grant_type": "client_credentials"},
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as e:
                raise ProviderUnavailable() from e
            if r.status_code != 200:
                log.error("paypal_token_refused", status=r.status_code, body=r.text[:300])
                raise ProviderUnavailable()
            try:
                answer = r.json()
                # Renew a minute early so a token never expires between our check and PayPal's.
                self._token = (
                    str(answer["access_token"]),
                    time.monotonic() + int(answer.get("expires_in", 0)) - 60,
                )
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ProviderUnavailable() from e
            return self._token[0]

    def _call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """One API call with our Bearer token (renewed once if PayPal says it lapsed); network trouble is 502."""
        for renew in (False, True):
            hdrs = {
                "Authorization": f"Bearer {self._access_token(renew)}",
                "Content-Type": "application/json",
            }
            try:
                r = self._http.request(
                    method, f"{self._base}{path}", json=body, headers={**hdrs, **(headers or {})}
                )
            except httpx.HTTPError as e:
                raise ProviderUnavailable() from e
            if r.status_code != 401:
                break
        if r.status_code >= 500 or r.status_code == 401:
            log.error("paypal_api_error", path=path, status=r.status_code, body=r.text[:300])
            raise ProviderUnavailable()
        return r

    @staticmethod
    def _body(r: httpx.Response) -> dict[str, Any]:
        try:
            answer = r.json()
        except ValueError as e:
            raise ProviderUnavailable() from e
        if not isinstance(answer, dict):
            raise ProviderUnavailable()
        return answer

    @staticmethod
    def _issue(r: httpx.Response) -> str:
        try:
            return str(r.json()["details"][0]["issue"])
        except (ValueError, KeyError, IndexError, TypeError):
            return ""

    def _refused(self, r: httpx.Response, path: str) -> ProviderUnavailable:
        log.error(
            "paypal_api_refused",
            path=path,
            status=r.status_code,
            issue=self._issue(r),
            body=r.text[:300],
        )
        return ProviderUnavailable()

    def _order(self, order_id: str) -> dict[str, Any] | None:
        """The order as PayPal has it now; None if PayPal no longer knows it (expired)."""
        path = f"/v2/checkout/orders/{order_id}"
        r = self._call("GET", path)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._refused(r, path)
        return self._body(r)

    # --- the Provider protocol ---

    def start(self, request: PaymentRequest) -> Checkout:
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": "default",
                    "amount": {
                        "currency_code": request.currency,
                        "value": to_value(request.amount, request.currency),
                    },
                    "description": request.description[:127],
                    "custom_id": request.payment_id,
                    "invoice_id": request.payment_id,
                }
            ],
            # The webhook configured at PayPal carries the events; request.notify_url is not PayPal's way.
            "application_context": {
                "brand_name": "tongka",
                "user_action": "PAY_NOW",
                "shipping_preference": "NO_SHIPPING",
                "return_url": request.return_url,
                "cancel_url": request.return_url,
            },
        }
        path = "/v2/checkout/orders"
        r = self._call("POST", path, body=body, headers={"PayPal-Request-Id": request.payment_id})
        if r.status_code not in (200, 201):
            raise self._refused(r, path)
        order = self._body(r)
        approve = next(
            (
                x.get("href")
                for x in order.get("links", ())
                if x.get("rel") in ("approve", "payer-action")
            ),
            None,
        )
        if not approve or not isinstance(order.get("id"), str):
            raise self._refused(r, path)
        return Checkout(provider_reference=order["id"], checkout_url=approve)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        transmission_id = self._verify({k.lower(): v for k, v in headers.items()}, body)
        try:
            event = _json_object(body)
            kind = event["event_type"]
            resource = event["resource"]
            if kind not in EVENTS:
                # Genuine, but not one the webhook should be subscribed to: nothing we can record.
                log.warning(
                    "paypal_event_not_handled", event_type=kind, transmission_id=transmission_id
                )
                raise InvalidCallback()
            # The body may not be the one PayPal signed (see the module's doc): it only names
            # what to ask PayPal about, and PayPal's answer is the event.
            if kind == "CHECKOUT.ORDER.APPROVED":
                return self._settle_approved(transmission_id, _paypal_id(resource["id"]))
            if kind == "PAYMENT.CAPTURE.REFUNDED":
                return self._confirmed_refund(transmission_id, _paypal_id(resource["id"]))
            order_id = _paypal_id(resource["supplementary_data"]["related_ids"]["order_id"])
            order = self._order(order_id)
            if order is None:
                raise InvalidCallback()  # PayPal does not know the order the body names
            return self._outcome(transmission_id, order_id, order)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise InvalidCallback() from None

    def acknowledge(self) -> CallbackAnswer:
        # PayPal wants any 2xx and reads nothing from the body.
        return CallbackAnswer(200, "", media_type="text/plain")

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        if provider_reference is None:
            return PaymentStatus("closed", None)  # no order was ever made at PayPal
        order = self._order(provider_reference)
        if order is None:
            return PaymentStatus("closed", provider_reference)
        try:
            return self._status(order, provider_reference)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise ProviderUnavailable() from e  # an answer we cannot read is no answer

    @staticmethod
    def _status(order: dict[str, Any], provider_reference: str) -> PaymentStatus:
        unit = order["purchase_units"][0]
        amount, currency = _amount(unit["amount"])
        capture = _capture_of(order)
        if capture is not None:
            states: dict[str, PaymentState] = {
                "COMPLETED": "succeeded",
                "PARTIALLY_REFUNDED": "succeeded",
                "REFUNDED": "succeeded",
                "DECLINED": "failed",
                "FAILED": "failed",
            }
            status = states.get(capture.get("status", ""), "pending")
            amount, currency = _amount(capture["amount"])
        elif order.get("status") == "VOIDED" or unit.get("custom_id") == CLOSED:
            status = "closed"
        else:
            status = "pending"  # CREATED, APPROVED (capture on its way), PAYER_ACTION_REQUIRED
        return PaymentStatus(status, provider_reference, amount, currency)

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        if provider_reference is None:
            return
        order = self._order(provider_reference)
        if order is None or order.get("status") in ("COMPLETED", "VOIDED"):
            if order is not None and order.get("status") == "COMPLETED":
                log.warning(
                    "paypal_close_after_capture", payment_id=payment_id, order_id=provider_reference
                )
            return  # expired at PayPal, or already settled: there is nothing left to close
        path = f"/v2/checkout/orders/{provider_reference}"
        patch = [{"op": "replace", "path": f"{PURCHASE_UNIT}/custom_id", "value": CLOSED}]
        r = self._call("PATCH", path, body=patch)
        if r.status_code != 204:
            raise self._refused(r, path)

    def refund(self, request: RefundRequest) -> RefundResult:
        order = self._order(request.provider_reference)
        capture = _capture_of(order) if order else None
        if capture is None:
            log.error("paypal_refund_without_capture", payment_id=request.payment_id)
            return RefundResult("", "failed")
        path = f"/v2/payments/captures/{capture['id']}/refund"
        body = {
            "amount": {
                "currency_code": request.currency,
                "value": to_value(request.amount, request.currency),
            },
            "custom_id": request.refund_id,
            "invoice_id": request.payment_id,
            "note_to_payer": request.reason[:255],
        }
        # PayPal answers a repeated PayPal-Request-Id with the first refund: one refund per refund_id.
        r = self._call("POST", path, body=body, headers={"PayPal-Request-Id": request.refund_id})
        if r.status_code == 422:
            log.warning("paypal_refund_refused", refund_id=request.refund_id, issue=self._issue(r))
            return RefundResult("", "failed")
        if r.status_code not in (200, 201):
            raise self._refused(r, path)
        answer = self._body(r)
        states: dict[str, RefundState] = {"COMPLETED": "succeeded", "PENDING": "pending"}
        return RefundResult(str(answer["id"]), states.get(str(answer.get("status")), "failed"))

    # --- webhooks ---

    def _verify(self, h: Mapping[str, str], body: bytes) -> str:
        """Check the signature and the transmission time; the transmission id, our inbox key."""
        try:
            transmission_id = _paypal_id(h["paypal-transmission-id"])
            transmission_time = h["paypal-transmission-time"]
            sent = datetime.fromisoformat(transmission_time)
            signature = base64.b64decode(h["paypal-transmission-sig"], validate=True)
            cert_url = h["paypal-cert-url"]
            algorithm = h["paypal-auth-algo"]
        except (KeyError, ValueError):
            raise InvalidCallback() from None
        if (
            sent.tzinfo is None
            or abs((clock.now() - sent).total_seconds()) > TRANSMISSION_TOLERANCE_SECONDS
        ):
            log.warning("paypal_webhook_stale", transmission_time=transmission_time[:40])
            raise InvalidCallback()
        if algorithm != "SHA256withRSA" or not self._trusted_cert_url(cert_url):
            raise InvalidCallback()
        key = self._cert_key(cert_url)
        message = (
            f"{transmission_id}|{transmission_time}|{self._webhook_id}|{zlib.crc32(body)}".encode()
        )
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise InvalidCallback() from None
        return transmission_id

    def _trusted_cert_url(self, url: str) -> bool:
        # Anyone can sign with a certificate of their own: only PayPal's host may serve it.
        parts = urlsplit(url)
        if ".." in parts.path or parts.query or parts.fragment or parts.username:
            return False
        base = urlsplit(self._base)
        hosts: tuple[str, ...]
        if base.hostname and base.hostname.endswith("paypal.com"):
            hosts = PAYPAL_CERT_HOSTS
            prefix = "/v1/notifications/certs/"
        else:
            hosts = (base.hostname or "",)
            prefix = f"{base.path}/v1/notifications/certs/"
        return (
            parts.scheme == base.scheme
            and parts.hostname in hosts
            and parts.port == base.port
            and parts.path.startswith(prefix)
        )

    def _cert_key(self, url: str) -> rsa.RSAPublicKey:
        cert = self._certs.get(url)
        if cert is None:
            try:
                r = self._http.get(url)
            except httpx.HTTPError as e:
                raise ProviderUnavailable() from e  # PayPal retries; the event is not lost
            if r.status_code != 200:
                raise InvalidCallback()
            try:
                cert = x509.load_pem_x509_certificate(r.content)
            except ValueError:
                raise InvalidCallback() from None
            if len(self._certs) > 16:
                self._certs.clear()
            self._certs[url] = cert
        now = datetime.now(UTC)
        key = cert.public_key()
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc) or not isinstance(
            key, rsa.RSAPublicKey
        ):
            raise InvalidCallback()
        return key

    def _settle_approved(self, event_id: str, order_id: str) -> PaymentEvent:
        """The payer approved: capture (unless we closed the order) and report what the capture did."""
        order = self._order(order_id)
        if order is None:
            raise InvalidCallback()  # signed, yet PayPal does not know the order
        unit = order["purchase_units"][0]
        if order.get("status") == "APPROVED":
            if unit.get("custom_id") == CLOSED:
                amount, currency = _amount(unit["amount"])
                log.info(
                    "paypal_approved_after_close",
                    payment_id=str(unit["invoice_id"]),
                    order_id=order_id,
                )
                return PaymentEvent(
                    event_id, str(unit["invoice_id"]), order_id, "failed", amount, currency
                )
            order = self._capture(order_id)
        return self._outcome(event_id, order_id, order)

    def _outcome(self, event_id: str, order_id: str, order: Mapping[str, Any]) -> PaymentEvent:
        """The payment's outcome as PayPal's own record of the order has it: the capture's status and amount,
        for the payment named by the invoice_id and custom_id we gave the order."""
        unit = order["purchase_units"][0]
        payment_id = str(unit["invoice_id"])
        if order.get("id") != order_id or unit.get("custom_id") not in (payment_id, CLOSED):
            raise InvalidCallback()  # not the order asked about, or not one we made
        capture = _capture_of(order)
        status = capture.get("status") if capture else None
        if capture is None and (order.get("status") == "VOIDED" or unit.get("custom_id") == CLOSED):
            amount, currency = _amount(unit["amount"])
            return PaymentEvent(event_id, payment_id, order_id, "failed", amount, currency)
        if capture is not None and status == "PENDING":
            # PayPal is holding it: a 502 makes PayPal retry; PAYMENT.CAPTURE.COMPLETED settles it meanwhile.
            raise ProviderUnavailable()
        if capture is None or capture.get("invoice_id", payment_id) != payment_id:
            log.warning(
                "paypal_webhook_not_captured", order_id=order_id, order_status=order.get("status")
            )
            raise InvalidCallback()  # PayPal captured nothing for this order: the webhook's body says otherwise
        amount, currency = _amount(capture["amount"])
        if status in ("DECLINED", "FAILED"):
            return PaymentEvent(event_id, payment_id, order_id, "failed", amount, currency)
        if status not in CAPTURED or order.get("status") != "COMPLETED":
            raise InvalidCallback()
        return PaymentEvent(event_id, payment_id, order_id, "succeeded", amount, currency)

    def _confirmed_refund(self, event_id: str, refund_id: str) -> PaymentEvent:
        """A refund as PayPal has it (Payments v2 GET /v2/payments/refunds/{id}): ours, its amount, whether it went through."""
        path = f"/v2/payments/refunds/{refund_id}"
        r = self._call("GET", path)
        if r.status_code == 404:
            raise InvalidCallback()  # PayPal made no such refund
        if r.status_code != 200:
            raise self._refused(r, path)
        refund = self._body(r)
        status = refund.get("status")
        if status not in ("COMPLETED", "FAILED", "CANCELLED"):
            raise ProviderUnavailable()  # PENDING: PayPal retries the webhook; its outcome follows
        amount, currency = _amount(refund["amount"])
        up = next((x["href"] for x in refund.get("links", ()) if x.get("rel") == "up"), "")
        return PaymentEvent(
            event_id=event_id,
            payment_id=str(refund["invoice_id"]),
            provider_reference=up.rstrip("/").rsplit("/", 1)[-1],  # the capture refunded
            outcome="refunded" if status == "COMPLETED" else "failed",
            amount=amount,
            currency=currency,
            refund_id=str(refund["custom_id"]),
        )

    def _capture(self, order_id: str) -> dict[str, Any]:
        path = f"/v2/checkout/orders/{order_id}/capture"
        r = self._call("POST", path, body={})
        if r.status_code in (200, 201):
            return self._body(r)
        if r.status_code == 422 and self._issue(r) == "ORDER_ALREADY_CAPTURED":
            order = self._order(order_id)  # captured by an earlier delivery of this webhook
            if order is not None:
                return order
        if r.status_code == 422 and self._issue(r) == "INSTRUMENT_DECLINED":
            unit = (self._order(order_id) or {}).get("purchase_units", [{}])[0]
            return {
                "id": order_id,
                "status": "APPROVED",
                "purchase_units": [
                    {
                        **unit,
                        "payments": {
                            "captures": [
                                {"id": "", "status": "DECLINED", "amount": unit.get("amount", {})}
                            ]
                        },
                    }
                ],
            }
        raise self._refused(r, path)


def _capture_of(order: Mapping[str, Any]) -> dict[str, Any] | None:
    captures = ((order.get("purchase_units") or [{}])[0].get("payments") or {}).get(
        "captures"
    ) or []
    return captures[0] if captures else None


def _paypal_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError("not a PayPal id")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
