"""PayPal's side in sandbox mode: its REST API (OAuth2, Orders v2, refunds), its approval page and its signed webhooks.

Same paths as api-m.paypal.com under /sandbox/paypal, same JSON and the same error shape
(`{"name", "message", "details": [{"issue", "description"}], "debug_id", "links"}`). Calls
need a Bearer token from POST /v1/oauth2/token (Basic client_id:client_secret from the
settings); tokens are stateless HMACs, so any worker can check them.

Webhooks are signed as PayPal signs them: RSA-SHA256 over
`<transmission id>|<transmission time>|<webhook id>|<CRC32 of the body>`, with the certificate
served at /v1/notifications/certs/<id>. The key and certificate are made once per process
(there is no sandbox PayPal key in the settings), which is enough for one server process.

The payer approves at GET /checkoutnow?token=<order id> (PayPal's own approval URL). Approving
sends CHECKOUT.ORDER.APPROVED; tongka then captures, and the capture sends
PAYMENT.CAPTURE.COMPLETED (or .DENIED when the payer chose "decline": the funding source fails
at capture). A refund sends PAYMENT.CAPTURE.REFUNDED. Webhooks that follow an API call are sent
after the call is answered, as PayPal does, never inside it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from tongka import clock
from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.sandbox import delivery
from tongka.sandbox.delivery import deliver, deliver_later
from tongka.sandbox.store import SimPayment, price, store_sessions
from tongka.templating import templates

router = APIRouter()

PROVIDER = "paypal"
TOKEN_SECONDS = 32_400  # PayPal's tokens last nine hours
MERCHANT_ID = "TONGKASANDBOX"
PAYER = {
    "name": {"given_name": "Sandbox", "surname": "Buyer"},
    "email_address": "buyer@example.com",
    "payer_id": "SANDBOXBUYER1",
    "address": {"country_code": "HK"},
}
NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})
_held: dict[
    str, list[tuple[bytes, dict[str, str]]]
] = {}  # order id -> webhooks `complete` sends after the approval


# --- keys, tokens, errors ---


@cache
def signing_key() -> tuple[rsa.RSAPrivateKey, bytes, str]:
    """The simulator's webhook key, its self-signed certificate (PEM) and the certificate's id."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paypal.com")]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    return (
        key,
        cert.public_bytes(serialization.Encoding.PEM),
        f"CERT-{digest[:8]}-{digest[8:16]}-{digest[16:24]}",
    )


def cert_url(settings: Settings) -> str:
    return f"{_base(settings)}/v1/notifications/certs/{signing_key()[2]}"


def webhook_url(settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/api/v1/payments/callbacks/paypal"


def _base(settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/sandbox/paypal"


def _token_mac(settings: Settings, expires: int) -> str:
    secret = (
        settings.paypal_client_secret.get_secret_value() if settings.paypal_client_secret else ""
    )
    return hmac.new(
        secret.encode(), f"{settings.paypal_client_id}:{expires}".encode(), hashlib.sha256
    ).hexdigest()


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("A21AA"):
        return False
    try:
        expires, mac = base64.urlsafe_b64decode(token[5:].encode()).decode().split(".", 1)
        return int(expires) > time.time() and hmac.compare_digest(
            mac, _token_mac(request.app.state.settings, int(expires))
        )
    except ValueError:
        return False


def _error(
    status: int, name: str, message: str, issue: str | None = None, description: str = ""
) -> JSONResponse:
    body: dict[str, Any] = {"name": name}
    if issue:
        body["details"] = [{"issue": issue, "description": description}]
    body |= {
        "message": message,
        "debug_id": secrets.token_hex(7),
        "links": [
            {
                "href": f"https://developer.paypal.com/docs/api/orders/v2/#error-{issue or name}",
                "rel": "information_link",
                "method": "GET",
            }
        ],
    }
    return JSONResponse(body, status_code=status)


def _unauthenticated() -> JSONResponse:
    return _error(
        401,
        "AUTHENTICATION_FAILURE",
        "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
    )


def _not_found() -> JSONResponse:
    return _error(
        404,
        "RESOURCE_NOT_FOUND",
        "The specified resource does not exist.",
        "INVALID_RESOURCE_ID",
        "Specified resource ID does not exist. Please check the resource ID and try again.",
    )


def _unprocessable(issue: str, description: str) -> JSONResponse:
    return _error(
        422,
        "UNPROCESSABLE_ENTITY",
        "The requested action could not be performed, semantically incorrect, or failed business validation.",
        issue,
        description,
    )


def _invalid(issue: str, description: str) -> JSONResponse:
    return _error(
        400,
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
        issue,
        description,
    )


def _id(length: int = 17) -> str:
    return "".join(secrets.choice("0123456789ABCDEFGHJKLMNPRSTUVWXY") for _ in range(length))


def _now() -> str:
    return clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minor(amount: Any) -> tuple[int, str] | JSONResponse:
    """PayPal's {currency_code, value} -> minor units, or PayPal's refusal of it."""
    if not isinstance(amount, dict) or not isinstance(amount.get("value"), str):
        return _invalid("MISSING_REQUIRED_PARAMETER", "A required field / parameter is missing.")
    currency = amount.get("currency_code")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        return _invalid(
            "INVALID_CURRENCY_CODE", "Currency code is invalid or is not currently supported."
        )
    places = EXPONENT.get(currency, 0 if currency in NO_DECIMALS else 2)
    if not re.fullmatch(r"[0-9]{1,23}(\.[0-9]+)?", amount["value"]):
        return _invalid(
            "INVALID_PARAMETER_SYNTAX",
            "The value of a field does not conform to the expected format.",
        )
    try:
        value = Decimal(amount["value"])
    except InvalidOperation:
        return _invalid(
            "INVALID_PARAMETER_SYNTAX",
            "The value of a field does not conform to the expected format.",
        )
    exponent = value.as_tuple().exponent  # a letter for NaN and infinity: never a price
    if not isinstance(exponent, int) or -exponent > places:
        return _invalid(
            "DECIMAL_PRECISION",
            "If the currency supports decimals, only two decimal place precision is supported.",
        )
    return int(value.scaleb(places)), currency


def _value(minor: int, currency: str) -> str:
    places = EXPONENT.get(currency, 0 if currency in NO_DECIMALS else 2)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return _invalid("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")


# --- the records, as PayPal shows them ---


def _capture_json(p: SimPayment, base: str) -> dict[str, Any]:
    c = p.data["capture"]
    return {
        "id": c["id"],
        "status": c["status"],
        "amount": {"currency_code": p.currency, "value": _value(p.amount, p.currency)},
        "final_capture": True,
        "seller_protection": {
            "status": "ELIGIBLE",
            "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
        },
        "invoice_id": p.merchant_reference,
        "custom_id": p.data.get("custom_id"),
        "create_time": c["create_time"],
        "update_time": c.get("update_time", c["create_time"]),
        "links": [
            {"href": f"{base}/v2/payments/captures/{c['id']}", "rel": "self", "method": "GET"},
            {
                "href": f"{base}/v2/payments/captures/{c['id']}/refund",
                "rel": "refund",
                "method": "POST",
            },
            {"href": f"{base}/v2/checkout/orders/{p.reference}", "rel": "up", "method": "GET"},
        ],
    }


def _refund_json(p: SimPayment, refund: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": refund["id"],
        "amount": {"currency_code": p.currency, "value": _value(refund["amount"], p.currency)},
        "status": refund["status"],
        "custom_id": refund.get("custom_id"),
        "invoice_id": refund.get("invoice_id"),
        "note_to_payer": refund.get("note_to_payer"),
        "create_time": refund["create_time"],
        "update_time": refund["create_time"],
        "links": [
            {"href": f"{base}/v2/payments/refunds/{refund['id']}", "rel": "self", "method": "GET"},
            {
                "href": f"{base}/v2/payments/captures/{p.data['capture']['id']}",
                "rel": "up",
                "method": "GET",
            },
        ],
    }


def _order_json(p: SimPayment, base: str) -> dict[str, Any]:
    d = p.data
    unit: dict[str, Any] = {
        "reference_id": "default",
        "amount": {"currency_code": p.currency, "value": _value(p.amount, p.currency)},
        "payee": {"email_address": "merchant@tongka.example", "merchant_id": MERCHANT_ID},
        "description": d.get("description"),
        "custom_id": d.get("custom_id"),
        "invoice_id": p.merchant_reference,
    }
    if d.get("capture"):
        unit["payments"] = {"captures": [_capture_json(p, base)]}
        if p.refunds:
            unit["payments"]["refunds"] = [_refund_json(p, r, base) for r in p.refunds]
    order: dict[str, Any] = {
        "id": p.reference,
        "intent": "CAPTURE",
        "status": d["status"],
        "purchase_units": [unit],
        "create_time": d["create_time"],
        "links": _order_links(p, base),
    }
    if d["status"] in ("APPROVED", "COMPLETED"):
        order["payer"] = PAYER
    return order


def _order_links(p: SimPayment, base: str) -> list[dict[str, str]]:
    links = [{"href": f"{base}/v2/checkout/orders/{p.reference}", "rel": "self", "method": "GET"}]
    if p.data["status"] == "CREATED":
        links.append(
            {"href": f"{base}/checkoutnow?token={p.reference}", "rel": "approve", "method": "GET"}
        )
    if p.data["status"] in ("CREATED", "APPROVED"):
        links.append(
            {"href": f"{base}/v2/checkout/orders/{p.reference}", "rel": "update", "method": "PATCH"}
        )
        links.append(
            {
                "href": f"{base}/v2/checkout/orders/{p.reference}/capture",
                "rel": "capture",
                "method": "POST",
            }
        )
    return links


# --- webhooks ---


def sign(
    key: rsa.RSAPrivateKey,
    transmission_id: str,
    transmission_time: str,
    webhook_id: str,
    body: bytes,
) -> str:
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def webhook(
    settings: Settings, event_type: str, resource_type: str, resource: dict[str, Any], summary: str
) -> tuple[bytes, dict[str, str]]:
    """A webhook's body and headers, exactly as PayPal sends them."""
    # PayPal keeps an event's id across its retries: the same event is the same id.
    digest = hashlib.sha256(f"{resource['id']}:{event_type}".encode()).hexdigest().upper()
    event_id = f"WH-{digest[:17]}-{digest[17:34]}"
    base = _base(settings)
    event = {
        "id": event_id,
        "event_version": "1.0",
        "create_time": _now(),
        "resource_type": resource_type,
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": summary,
        "resource": resource,
        "links": [
            {
                "href": f"{base}/v1/notifications/webhooks-events/{event_id}",
                "rel": "self",
                "method": "GET",
            },
            {
                "href": f"{base}/v1/notifications/webhooks-events/{event_id}/resend",
                "rel": "resend",
                "method": "POST",
            },
        ],
    }
    body = json.dumps(event).encode()
    transmission_id, transmission_time = str(uuid.uuid1()), _now()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "PayPal/AUHD-214.0-58725154",
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": transmission_time,
        "PAYPAL-TRANSMISSION-SIG": sign(
            signing_key()[0],
            transmission_id,
            transmission_time,
            settings.paypal_webhook_id or "",
            body,
        ),
        "PAYPAL-CERT-URL": cert_url(settings),
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def _send_later(request: Request, message: tuple[bytes, dict[str, str]]) -> None:
    # After the API call is answered, as PayPal sends them: never inside the caller's transaction.
    deliver_later(
        request, webhook_url(request.app.state.settings), message[0], message[1], retries=(0.0,)
    )


async def drain() -> list[int]:
    """Wait for the webhooks on their way (tests, and `complete`); their callbacks' HTTP statuses."""
    return await delivery.drain()


def _capture_webhook(settings: Settings, p: SimPayment) -> tuple[bytes, dict[str, str]]:
    resource = _capture_json(p, _base(settings)) | {
        "supplementary_data": {"related_ids": {"order_id": p.reference}}
    }
    value = f"{_value(p.amount, p.currency)} {p.currency}"
    if resource["status"] == "DECLINED":
        return webhook(
            settings, "PAYMENT.CAPTURE.DENIED", "capture", resource, f"Payment denied for {value}"
        )
    return webhook(
        settings, "PAYMENT.CAPTURE.COMPLETED", "capture", resource, f"Payment completed for {value}"
    )


# --- the API ---


@router.post("/v1/oauth2/token")
async def token(request: Request) -> Response:
    """Anyone, in sandbox mode: PayPal's client-credentials token, for the client id and secret in the settings."""
    settings = request.app.state.settings
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    try:
        client_id, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
    except ValueError:
        client_id, secret = "", ""
    expected = (
        settings.paypal_client_secret.get_secret_value() if settings.paypal_client_secret else None
    )
    if (
        scheme.lower() != "basic"
        or client_id != settings.paypal_client_id
        or expected is None
        or not hmac.compare_digest(secret, expected)
    ):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Client Authentication failed"}, 401
        )
    form = await request.form()
    if form.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}, 400
        )
    expires = int(time.time()) + TOKEN_SECONDS
    mac = _token_mac(settings, expires)
    return JSONResponse(
        {
            "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/payments/refund",
            "access_token": "A21AA"
            + base64.urlsafe_b64encode(f"{expires}.{mac}".encode()).decode(),
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": TOKEN_SECONDS,
            "nonce": f"{_now()}{secrets.token_urlsafe(16)}",
        }
    )


@router.get("/v1/notifications/certs/{cert_id}")
def certificate(cert_id: str) -> Response:
    """Anyone, in sandbox mode: the certificate that verifies the simulator's webhook signatures."""
    _key, pem, current = signing_key()
    if cert_id != current:
        return _not_found()
    return Response(pem, media_type="application/x-pem-file")


@router.post("/v2/checkout/orders")
async def create_order(request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: create an order (intent CAPTURE, one purchase unit)."""
    if not _authorized(request):
        return _unauthenticated()
    body = await _json(request)
    if isinstance(body, Response):
        return body
    if not isinstance(body, dict) or body.get("intent") != "CAPTURE":
        return _invalid("INVALID_PARAMETER_VALUE", "The value of a field is invalid.")
    units = body.get("purchase_units")
    if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
        return _invalid(
            "INVALID_ARRAY_LENGTH",
            "The number of items in an array parameter is too small or too large.",
        )
    unit = units[0]
    money = _minor(unit.get("amount"))
    if isinstance(money, Response):
        return money
    if money[0] <= 0:
        return _unprocessable("AMOUNT_MUST_BE_POSITIVE", "Amount must be positive.")
    context = body.get("application_context") or {}
    request_id = request.headers.get("paypal-request-id")
    invoice_id = str(unit.get("invoice_id") or "")[:64]
    base = _base(request.app.state.settings)

    def create() -> tuple[int, dict[str, Any]] | Response:
        with store_sessions(request).begin() as s:
            if invoice_id:
                for earlier in s.scalars(
                    select(SimPayment).where(
                        SimPayment.provider == PROVIDER, SimPayment.merchant_reference == invoice_id
                    )
                ):
                    if request_id and earlier.data.get("request_id") == request_id:
                        return 200, _order_json(
                            earlier, base
                        )  # a retry: PayPal answers with the first order
                    return _unprocessable(
                        "DUPLICATE_INVOICE_ID",
                        "Invoice ID was previously used to place an order or make a payment.",
                    )
            p = SimPayment(
                provider=PROVIDER,
                reference=_id(),
                merchant_reference=invoice_id,
                amount=money[0],
                currency=money[1],
                status="pending",
                notify_url=None,
                refunded=0,
                refunds=[],
                data={
                    "status": "CREATED",
                    "description": unit.get("description"),
                    "custom_id": unit.get("custom_id"),
                    "return_url": context.get("return_url"),
                    "cancel_url": context.get("cancel_url"),
                    "request_id": request_id,
                    "create_time": _now(),
                },
            )
            s.add(p)
            s.flush()
            return 201, _order_json(p, base)

    result = await run_in_threadpool(create)
    if isinstance(result, Response):
        return result
    status, order = result
    if "return=representation" not in request.headers.get("prefer", ""):
        order = {k: order[k] for k in ("id", "status", "links")}
    return JSONResponse(order, status_code=status)


def _load(request: Request, order_id: str) -> SimPayment | None:
    with store_sessions(request).begin() as s:
        return s.get(SimPayment, (PROVIDER, order_id))


@router.get("/v2/checkout/orders/{order_id}")
async def show_order(order_id: str, request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: the order as PayPal has it."""
    if not _authorized(request):
        return _unauthenticated()
    p = await run_in_threadpool(_load, request, order_id)
    return JSONResponse(_order_json(p, _base(request.app.state.settings))) if p else _not_found()


@router.patch("/v2/checkout/orders/{order_id}")
async def update_order(order_id: str, request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: change an order not yet captured (JSON Patch)."""
    if not _authorized(request):
        return _unauthenticated()
    ops = await _json(request)
    if isinstance(ops, Response):
        return ops
    fields = {"custom_id", "description"}
    prefix = "/purchase_units/@reference_id=='default'/"
    if not isinstance(ops, list) or not all(
        isinstance(op, dict)
        and op.get("op") in ("add", "replace")
        and isinstance(op.get("path"), str)
        and op["path"].startswith(prefix)
        and op["path"][len(prefix) :] in fields
        for op in ops
    ):
        return _unprocessable("NOT_PATCHABLE", "Cannot be patched.")

    def update() -> Response:
        with store_sessions(request).begin() as s:
            p = s.get(SimPayment, (PROVIDER, order_id))
            if p is None:
                return _not_found()
            if p.data["status"] not in ("CREATED", "APPROVED"):
                return _unprocessable(
                    "ORDER_ALREADY_COMPLETED", "The order cannot be patched after it is completed."
                )
            p.data = {**p.data, **{op["path"][len(prefix) :]: op.get("value") for op in ops}}
            return Response(status_code=204)

    return await run_in_threadpool(update)


@router.post("/v2/checkout/orders/{order_id}/capture")
async def capture_order(order_id: str, request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: capture an approved order (once)."""
    if not _authorized(request):
        return _unauthenticated()
    settings = request.app.state.settings
    request_id = request.headers.get("paypal-request-id")

    def capture() -> tuple[int, SimPayment] | Response:
        with store_sessions(request).begin() as s:
            p = s.get(SimPayment, (PROVIDER, order_id), with_for_update=True)
            if p is None:
                return _not_found()
            if p.data["status"] == "COMPLETED":
                if request_id and p.data["capture"].get("request_id") == request_id:
                    return 200, p  # a retry of the same capture
                return _unprocessable(
                    "ORDER_ALREADY_CAPTURED",
                    "Order already captured.If 'intent=CAPTURE' only one capture per order is allowed.",
                )
            if p.data["status"] != "APPROVED":
                return _unprocessable(
                    "ORDER_NOT_APPROVED",
                    "Payer has not yet approved the Order for payment. Please redirect the payer to "
                    "the 'rel':'approve' url returned as part of the HATEOAS links within the Create "
                    "Order call or provide a valid payment_source in the request.",
                )
            declined = bool(p.data.get("decline"))
            p.data = {
                **p.data,
                "status": "COMPLETED",
                "capture": {
                    "id": _id(),
                    "status": "DECLINED" if declined else "COMPLETED",
                    "create_time": _now(),
                    "request_id": request_id,
                },
            }
            p.status, p.settled_at = ("failed" if declined else "succeeded"), clock.now()
            return 201, p

    result = await run_in_threadpool(capture)
    if isinstance(result, Response):
        return result
    status, p = result
    if status == 201:
        message = _capture_webhook(settings, p)
        if order_id in _held:
            _held[order_id].append(message)  # `complete` sends it once its approval is answered
        else:
            _send_later(request, message)
    return JSONResponse(_order_json(p, _base(settings)), status_code=status)


@router.post("/v2/payments/captures/{capture_id}/refund")
async def refund_capture(capture_id: str, request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: refund all or part of a capture; a repeated PayPal-Request-Id refunds once."""
    if not _authorized(request):
        return _unauthenticated()
    settings = request.app.state.settings
    body = await _json(request)
    if isinstance(body, Response):
        return body
    if not isinstance(body, dict):
        return _invalid("INVALID_PARAMETER_VALUE", "The value of a field is invalid.")
    money = _minor(body["amount"]) if "amount" in body else None
    if isinstance(money, Response):
        return money
    request_id = request.headers.get("paypal-request-id")

    def refund() -> tuple[int, SimPayment, dict[str, Any]] | Response:
        with store_sessions(request).begin() as s:
            p = s.scalars(
                select(SimPayment)
                .where(
                    SimPayment.provider == PROVIDER,
                    SimPayment.data[("capture", "id")].as_string() == capture_id,
                )
                .with_for_update()
            ).first()
            if p is None:
                return _not_found()
            done = next(
                (r for r in p.refunds if request_id and r.get("request_id") == request_id), None
            )
            if done is not None:
                return 200, p, done  # PayPal answers a repeated request id with the first refund
            capture = p.data["capture"]
            if capture["status"] == "REFUNDED":
                return _unprocessable(
                    "CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded"
                )
            if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
                return _unprocessable(
                    "CANNOT_PROCESS_REFUNDS", "Current state of the capture does not allow refunds."
                )
            amount, currency = money or (p.amount - p.refunded, p.currency)
            if currency != p.currency:
                return _unprocessable(
                    "REFUND_CAPTURE_CURRENCY_MISMATCH",
                    "Refund must be in the same currency as the capture.",
                )
            if amount <= 0:
                return _invalid("INVALID_PARAMETER_VALUE", "The value of a field is invalid.")
            if amount > p.amount - p.refunded:
                return _unprocessable(
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount that has "
                    "not yet been refunded.",
                )
            record = {
                "id": _id(),
                "request_id": request_id,
                "amount": amount,
                "status": "COMPLETED",
                "custom_id": body.get("custom_id"),
                "invoice_id": body.get("invoice_id"),
                "note_to_payer": body.get("note_to_payer"),
                "create_time": _now(),
            }
            p.refunds = [*p.refunds, record]
            p.refunded += amount
            p.data = {
                **p.data,
                "capture": {
                    **capture,
                    "update_time": record["create_time"],
                    "status": "REFUNDED" if p.refunded == p.amount else "PARTIALLY_REFUNDED",
                },
            }
            return 201, p, record

    result = await run_in_threadpool(refund)
    if isinstance(result, Response):
        return result
    status, p, record = result
    answer = _refund_json(p, record, _base(settings))
    if status == 201:
        value = f"{answer['amount']['value']} {p.currency}"
        summary = f"A {value} capture payment was refunded"
        _send_later(
            request, webhook(settings, "PAYMENT.CAPTURE.REFUNDED", "refund", answer, summary)
        )
    if "return=representation" not in request.headers.get("prefer", ""):
        answer = {k: answer[k] for k in ("id", "status", "links")}
    return JSONResponse(answer, status_code=status)


@router.get("/v2/payments/refunds/{refund_id}")
async def show_refund(refund_id: str, request: Request) -> Response:
    """Anyone holding a token, in sandbox mode: a refund as PayPal has it (Payments v2)."""
    if not _authorized(request):
        return _unauthenticated()

    def find() -> tuple[SimPayment, dict[str, Any]] | None:
        with store_sessions(request).begin() as s:
            # Few sandbox payments are ever refunded: read those, rather than query inside JSON lists.
            for p in s.scalars(
                select(SimPayment).where(SimPayment.provider == PROVIDER, SimPayment.refunded > 0)
            ):
                for refund in p.refunds:
                    if refund["id"] == refund_id:
                        return p, refund
            return None

    found = await run_in_threadpool(find)
    if found is None:
        return _not_found()
    return JSONResponse(_refund_json(found[0], found[1], _base(request.app.state.settings)))


# --- the payer's side ---


async def complete(request: Request, payment: SimPayment, outcome: str) -> int:
    """The payer approves the order ("failed": their funding source will decline at capture); PayPal sends
    CHECKOUT.ORDER.APPROVED, tongka captures, and the capture's own webhook follows. Returns the approval's callback status."""
    settings = request.app.state.settings

    def approve() -> dict[str, Any]:
        with store_sessions(request).begin() as s:
            p = s.get(SimPayment, (PROVIDER, payment.reference), with_for_update=True)
            assert p is not None
            if p.data["status"] == "CREATED":
                p.data = {**p.data, "status": "APPROVED", "decline": outcome == "failed"}
            return _order_json(p, _base(settings))

    order = await run_in_threadpool(approve)
    body, headers = webhook(
        settings,
        "CHECKOUT.ORDER.APPROVED",
        "checkout-order",
        order,
        "An order has been approved by buyer",
    )
    # The capture's webhook follows once the approval is answered, so runs are repeatable
    # (at PayPal the two may overlap).
    _held.setdefault(payment.reference, [])
    try:
        status = await deliver(request, webhook_url(settings), body, headers)
    finally:
        held = _held.pop(payment.reference, [])
    for message in held:
        await deliver(request, webhook_url(settings), *message)
    await drain()
    return status


@router.get("/checkoutnow", response_class=HTMLResponse, include_in_schema=False)
async def approval_page(request: Request, token: str = "") -> Response:
    """Anyone, in sandbox mode: PayPal's approval page for an order, as the payer sees it."""
    p = await run_in_threadpool(_load, request, token)
    shown = None
    if p is not None and p.currency in EXPONENT:
        shown = price(p.amount, p.currency, "en")
    elif p is not None:
        shown = f"{_value(p.amount, p.currency)} {p.currency}"
    return templates.TemplateResponse(
        request,
        "sandbox/paypal_checkout.html",
        {"order": p, "price": shown, "payer": PAYER, "token": token},
        status_code=200 if p else 404,
    )


@router.post("/checkoutnow/approve", include_in_schema=False)
async def approve_from_page(
    request: Request,
    token: Annotated[str, Form()],
    outcome: Annotated[Literal["succeeded", "failed"], Form()],
) -> Response:
    """Anyone, in sandbox mode: the payer presses "Pay Now" (or "Pay with a card that will decline")."""
    p = await run_in_threadpool(_load, request, token)
    if p is None:
        return _not_found()
    if p.data["status"] == "CREATED":
        await complete(request, p, outcome)
    # PayPal sends the payer back to the merchant's return URL with the order as `token`.
    back = (
        p.data.get("return_url") or f"{_base(request.app.state.settings)}/checkoutnow?token={token}"
    )
    return RedirectResponse(
        f"{back}{'&' if '?' in back else '?'}token={token}&PayerID={PAYER['payer_id']}",
        status_code=303,
    )
