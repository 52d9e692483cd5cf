"""Stripe's side in sandbox mode: the PaymentIntents and Refunds API, a card form, signed webhooks.

The API paths are Stripe's own under /sandbox/stripe (`/v1/payment_intents`, `/v1/refunds`),
form-encoded, authenticated with the secret key (`Authorization: Bearer sk_...`, or Basic
with the key as user name), answering Stripe's JSON objects and Stripe's error shape
`{"error": {"type", "code", "message", "param"}}`. An `Idempotency-Key` replays the first
answer (`Idempotent-Replayed: true`); the same key with other parameters is a 400
`idempotency_error`. Keys are kept on the PaymentIntent they made or touched, so a key is
recognised for a PaymentIntent's own creation and its refunds (Stripe keeps them per account).

The card form (`/pay/{id}?client_secret=...`) stands in for Stripe Elements: 4242 4242 4242 4242
pays, 4000 0000 0000 0002 is declined, any other valid number is declined as a live card in
test mode. A decline leaves the PaymentIntent open (`requires_payment_method`), as at Stripe.
Webhooks go to the endpoint one configures at Stripe, tongka's
`/api/v1/payments/callbacks/stripe`, signed `Stripe-Signature: t=...,v1=HMAC-SHA256("t.body")`
with the whsec_ secret. Who may call: anyone, only when the sandbox is on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from tongka import clock
from tongka.sandbox.delivery import deliver, deliver_later
from tongka.sandbox.store import SimPayment, price, store_sessions
from tongka.templating import templates

router = APIRouter()

PROVIDER = "stripe"
API_VERSION = "2025-03-31.basil"  # what the webhook events say they are written in
SUCCEEDS = "4242424242424242"
DECLINED = "4000000000000002"
TEST_EXPIRY = "12 / 49"  # any future date pays with a test card
CURRENCIES = {"hkd", "cny"}  # the ones tongka sells in
CANCELABLE = {
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


class StripeError(Exception):
    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type_, **extra}}


def _id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        body,
        status,
        headers={"Request-Id": _id("req_", 14), "Stripe-Version": API_VERSION, **headers},
    )


def _failure(e: StripeError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Stripe"'} if e.status == 401 else {}
    return _json(e.body, e.status, **headers)


def _authenticate(request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value).decode().split(":", 1)[0]
        except ValueError:
            value = ""
    elif scheme.lower() != "bearer":
        value = ""
    if not value:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). "
            "See https://stripe.com/docs/api#authentication for details, or we can help at "
            "https://support.stripe.com/.",
        )
    expected = request.app.state.settings.stripe_secret_key.get_secret_value()
    if not hmac.compare_digest(value.encode(), expected.encode()):
        raise StripeError(401, f"Invalid API Key provided: {value[:8]}{'*' * 12}{value[-4:]}")


def _nested(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into objects: `metadata[a]=1`, `payment_method_types[0]=card`."""
    root: dict[str, Any] = {}
    for key, value in items:
        parts = re.findall(r"^[^\[]+|(?<=\[)[^\]]*(?=\])", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [lists(node[k]) for k in sorted(node, key=int)]
        return {k: lists(v) for k, v in node.items()}

    return lists(root)


async def _params(request: Request) -> tuple[dict[str, Any], str]:
    """The request's parameters and a fingerprint of them, for idempotency."""
    body = (await request.body()).decode()
    items = parse_qsl(body, keep_blank_values=True)
    try:
        params = _nested(items)
    except (AttributeError, TypeError):  # `a=1&a[b]=2`: one name used as a value and an object
        raise StripeError(
            400, "Invalid request: a parameter is given both as a value and as an object."
        ) from None
    return params, hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


def _integer(params: dict[str, Any], name: str, required: bool = True) -> int | None:
    if name not in params:
        if required:
            raise StripeError(
                400, f"Missing required param: {name}.", code="parameter_missing", param=name
            )
        return None
    value = params[name]
    if not isinstance(value, str) or not re.fullmatch(r"\d+", value):
        raise StripeError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name
        )
    return int(value)


def _intent(p: SimPayment) -> dict[str, Any]:
    d = p.data
    return {
        "id": p.reference,
        "object": "payment_intent",
        "amount": p.amount,
        "amount_capturable": 0,
        "amount_received": p.amount if p.status == "succeeded" else 0,
        "canceled_at": d.get("canceled_at"),
        "cancellation_reason": d.get("cancellation_reason"),
        "capture_method": "automatic_async",
        "client_secret": d["client_secret"],
        "confirmation_method": "automatic",
        "created": d["created"],
        "currency": p.currency.lower(),
        "description": d.get("description"),
        "last_payment_error": d.get("last_payment_error"),
        "latest_charge": d.get("latest_charge"),
        "livemode": False,
        "metadata": d.get("metadata", {}),
        "payment_method": d.get("payment_method"),
        "payment_method_types": d.get("payment_method_types", ["card"]),
        "status": d["status"],
    }


def _charge(p: SimPayment) -> dict[str, Any]:
    return {
        "id": p.data["latest_charge"],
        "object": "charge",
        "amount": p.amount,
        "amount_captured": p.amount,
        "amount_refunded": p.refunded,
        "captured": True,
        "created": p.data["paid_at"],
        "currency": p.currency.lower(),
        "livemode": False,
        "metadata": p.data.get(
            "metadata", {}
        ),  # Stripe copies the PaymentIntent's metadata onto its charge
        "paid": True,
        "payment_intent": p.reference,
        "refunded": p.refunded >= p.amount,
        "refunds": {
            "object": "list",
            "data": list(p.refunds),
            "has_more": False,
            "total_count": len(p.refunds),
            "url": f"/v1/charges/{p.data['latest_charge']}/refunds",
        },
        "status": "succeeded",
    }


def _event(
    kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": _id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def _missing(reference: str, param: str = "intent") -> StripeError:
    return StripeError(
        404,
        f"No such payment_intent: '{reference}'",
        code="resource_missing",
        param=param,
        doc_url="https://stripe.com/docs/error-codes/resource-missing",
    )


def _find(request: Request, reference: str) -> SimPayment:
    with store_sessions(request)() as s:
        payment = s.get(SimPayment, (PROVIDER, reference))
    if payment is None:
        raise _missing(reference)
    return payment


def _replay(payment: SimPayment, key: str | None, fingerprint: str) -> JSONResponse | None:
    stored = payment.data.get("idempotency", {}).get(key) if key else None
    if stored is None:
        return None
    if stored["fingerprint"] != fingerprint:
        raise StripeError(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a different "
            "request.",
            type_="idempotency_error",
        )
    return _json(stored["body"], stored["status"], **{"Idempotent-Replayed": "true"})


def _remember(
    payment: SimPayment, key: str | None, fingerprint: str, body: dict[str, Any], status: int = 200
) -> None:
    if key:  # reassigned, not mutated, so the JSON column sees the change
        payment.data = {
            **payment.data,
            "idempotency": {
                **payment.data.get("idempotency", {}),
                key: {"fingerprint": fingerprint, "status": status, "body": body},
            },
        }


# --- the API ---------------------------------------------------------------------------------


@router.post("/v1/payment_intents")
async def create_payment_intent(request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: create a PaymentIntent."""
    try:
        _authenticate(request)
        params, fingerprint = await _params(request)
        answer, event = await run_in_threadpool(_create, request, params, fingerprint)
    except StripeError as e:
        return _failure(e)
    if event is not None:  # confirmed at once (a saved card, off-session): its webhook follows
        _send_later(request, event)
    return answer


def _create(
    request: Request, params: dict[str, Any], fingerprint: str
) -> tuple[Response, dict[str, Any] | None]:
    amount = _integer(params, "amount")
    assert amount is not None
    currency = params.get("currency")
    if not currency:
        raise StripeError(
            400, "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise StripeError(
            400, f"Invalid currency: {currency}.", code="parameter_invalid_string", param="currency"
        )
    if amount < 1:
        raise StripeError(
            400, "Amount must be at least 1.", code="amount_too_small", param="amount"
        )
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise StripeError(400, "Invalid object", code="parameter_invalid_string", param="metadata")
    key = request.headers.get("idempotency-key")
    with store_sessions(request).begin() as s:
        merchant_reference = str(metadata.get("payment_id", ""))[:64]
        earlier_intents = s.scalars(
            select(SimPayment).where(
                SimPayment.provider == PROVIDER, SimPayment.merchant_reference == merchant_reference
            )
        )
        for earlier in earlier_intents:
            if (replayed := _replay(earlier, key, fingerprint)) is not None:
                return replayed, None
        reference = _id("pi_")
        payment = SimPayment(
            provider=PROVIDER,
            reference=reference,
            merchant_reference=merchant_reference,
            amount=amount,
            currency=currency.upper(),
            status="pending",
            notify_url=None,
            refunded=0,
            refunds=[],
            data={
                "client_secret": f"{reference}_secret_{_id('', 25)}",
                "created": int(time.time()),
                "description": params.get("description"),
                "metadata": metadata,
                "payment_method_types": params.get("payment_method_types") or ["card"],
                "status": "requires_payment_method",
            },
        )
        if params.get("confirm") == "true":
            return _confirm_saved(s, payment, params, key, fingerprint)
        body = _intent(payment)
        _remember(payment, key, fingerprint, body)
        s.add(payment)
    return _json(body), None


@router.get("/v1/payment_intents/{reference}")
async def retrieve_payment_intent(reference: str, request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: a PaymentIntent as it is now."""
    try:
        _authenticate(request)
        return _json(_intent(await run_in_threadpool(_find, request, reference)))
    except StripeError as e:
        return _failure(e)


@router.post("/v1/payment_intents/{reference}/cancel")
async def cancel_payment_intent(reference: str, request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: cancel a PaymentIntent that is not paid."""
    try:
        _authenticate(request)
        params, _fingerprint = await _params(request)
        return await run_in_threadpool(
            _cancel, request, reference, params.get("cancellation_reason")
        )
    except StripeError as e:
        return _failure(e)


def _cancel(request: Request, reference: str, reason: str | None) -> Response:
    with store_sessions(request).begin() as s:
        payment = s.get(SimPayment, (PROVIDER, reference), with_for_update=True)
        if payment is None:
            raise _missing(reference)
        status = payment.data["status"]
        if status not in CANCELABLE:
            raise StripeError(
                400,
                f"You cannot cancel this PaymentIntent because it has a status of {status}. Only a "
                "PaymentIntent with one of the following statuses may be canceled: requires_payment_method, "
                "requires_capture, requires_confirmation, requires_action, processing.",
                code="payment_intent_unexpected_state",
                payment_intent=_intent(payment),
            )
        payment.status = "closed"
        payment.data = {
            **payment.data,
            "status": "canceled",
            "canceled_at": int(time.time()),
            "cancellation_reason": reason,
        }
        return _json(_intent(payment))


@router.post("/v1/refunds")
async def create_refund(request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: refund a paid PaymentIntent (then `charge.refunded`)."""
    try:
        _authenticate(request)
        params, fingerprint = await _params(request)
        answer, event = await run_in_threadpool(_refund, request, params, fingerprint)
    except StripeError as e:
        return _failure(e)
    if event is not None:
        # Stripe sends webhooks on its own time, after answering: the caller may still hold its locks.
        _send_later(request, event)
    return answer


def _refund(
    request: Request, params: dict[str, Any], fingerprint: str
) -> tuple[Response, dict[str, Any] | None]:
    reference = params.get("payment_intent")
    if not reference or not isinstance(reference, str):
        raise StripeError(
            400,
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
            code="parameter_missing",
        )
    amount = _integer(params, "amount", required=False)
    reason = params.get("reason")
    if reason is not None and reason not in REFUND_REASONS:
        raise StripeError(
            400,
            f"Invalid reason: must be one of {', '.join(sorted(REFUND_REASONS))}",
            code="parameter_invalid_string",
            param="reason",
        )
    key = request.headers.get("idempotency-key")
    with store_sessions(request).begin() as s:
        payment = s.get(SimPayment, (PROVIDER, reference), with_for_update=True)
        if payment is None:
            raise _missing(reference, param="payment_intent")
        if (replayed := _replay(payment, key, fingerprint)) is not None:
            return replayed, None
        if payment.status != "succeeded":
            raise StripeError(
                400,
                f"This PaymentIntent ({reference}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        left = payment.amount - payment.refunded
        if left <= 0:
            raise StripeError(
                400,
                f"Charge {payment.data['latest_charge']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = left if amount is None else amount
        if amount < 1 or amount > left:
            raise StripeError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                code="amount_too_large",
                param="amount",
            )
        refund = {
            "id": _id("re_"),
            "object": "refund",
            "amount": amount,
            "charge": payment.data["latest_charge"],
            "created": int(time.time()),
            "currency": payment.currency.lower(),
            "metadata": params.get("metadata") or {},
            "payment_intent": reference,
            "reason": reason,
            "status": "succeeded",
        }
        previous = {
            "amount_refunded": payment.refunded,
            "refunded": payment.refunded >= payment.amount,
        }
        payment.refunded += amount
        payment.refunds = [refund, *payment.refunds]  # newest first, as Stripe lists them
        _remember(payment, key, fingerprint, refund)
        event = _event("charge.refunded", _charge(payment), previous)
    return _json(refund), event


# --- webhooks ---------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _webhook(request: Request, event: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    settings = request.app.state.settings
    body = json.dumps(event, indent=2).encode()  # Stripe sends its events pretty-printed
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": sign(
            settings.stripe_webhook_secret.get_secret_value(), body, int(time.time())
        ),
    }
    return f"{settings.public_base_url.rstrip('/')}/api/v1/payments/callbacks/stripe", body, headers


async def _send(request: Request, event: dict[str, Any]) -> int:
    return await deliver(request, *_webhook(request, event))


def _send_later(request: Request, event: dict[str, Any]) -> None:
    # Stripe sends webhooks on its own time, after answering: the caller may still hold its locks.
    deliver_later(request, *_webhook(request, event))


def _settle(
    request: Request, reference: str, outcome: str, decline: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The card attempt's result on the PaymentIntent, and the event to send (None: nothing happens)."""
    with store_sessions(request).begin() as s:
        payment = s.get(SimPayment, (PROVIDER, reference), with_for_update=True)
        if payment is None or payment.status == "closed":
            return None  # a canceled PaymentIntent takes no more attempts
        if payment.status == "succeeded":
            return payment.data.get("succeeded_event")  # sent again, as Stripe retries a delivery
        now = int(time.time())
        method = {"id": _id("pm_"), "object": "payment_method", "type": "card"}
        if outcome == "succeeded":
            payment.status, payment.settled_at = "succeeded", clock.now()
            payment.data = {
                **payment.data,
                "status": "succeeded",
                "paid_at": now,
                "latest_charge": _id("ch_"),
                "payment_method": method["id"],
                "last_payment_error": None,
            }
            event = _event("payment_intent.succeeded", _intent(payment))
            payment.data = {**payment.data, "succeeded_event": event}
            return event
        payment.status = "failed"  # this attempt; the PaymentIntent stays open for another card
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            **(decline or {}),
            "charge": _id("ch_"),
            "payment_method": method,
        }
        payment.data = {
            **payment.data,
            "status": "requires_payment_method",
            "last_payment_error": error,
            "latest_charge": error["charge"],
            "last_attempt_at": now,
        }
        return _event("payment_intent.payment_failed", _intent(payment))


async def complete(
    request: Request,
    payment: SimPayment,
    outcome: Literal["succeeded", "failed"] | str,
    decline: dict[str, Any] | None = None,
) -> int:
    """The payer's card is charged (or declined): update the PaymentIntent and send Stripe's signed webhook.

    Returns the webhook's HTTP status from tongka, or 409 when the PaymentIntent takes no payment (canceled).
    """
    event = await run_in_threadpool(_settle, request, payment.reference, outcome, decline)
    if event is None:
        return 409
    return await _send(request, event)


# --- the payer's card form ---------------------------------------------------------------------


def _page_payment(request: Request, reference: str, client_secret: str) -> SimPayment:
    with store_sessions(request)() as s:
        payment = s.get(SimPayment, (PROVIDER, reference))
    # Stripe.js needs the PaymentIntent's client secret; without it there is nothing to show.
    if payment is None or not hmac.compare_digest(
        payment.data["client_secret"].encode(), client_secret.encode()
    ):
        raise HTTPException(404)
    return payment


def _page(
    request: Request,
    payment: SimPayment,
    return_url: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return templates.TemplateResponse(
        request,
        "sandbox/stripe_checkout.html",
        {
            "payment": payment,
            "intent": _intent(payment),
            "return_url": return_url,
            "error": error,
            "price": price(payment.amount, payment.currency, "en"),
            "test_cards": {"succeeds": "4242 4242 4242 4242", "declined": "4000 0000 0000 0002"},
        },
        status_code=status_code,
    )


def _return_to(request: Request, url: str, payment: SimPayment) -> str | None:
    """Where Stripe sends the payer after paying, with its query, if the URL is tongka's own (no open redirect)."""
    ours = urlsplit(request.app.state.settings.public_base_url)
    target = urlsplit(url)
    if (target.scheme, target.netloc) != (ours.scheme, ours.netloc):
        return None
    query = urlencode(
        {
            "payment_intent": payment.reference,
            "payment_intent_client_secret": payment.data["client_secret"],
            "redirect_status": "succeeded",
        }
    )
    return f"{url}{'&' if target.query else '?'}{query}"


def _luhn(number: str) -> bool:
    total = sum(
        int(d) if i % 2 == 0 else (int(d) * 2 - 9 if int(d) > 4 else int(d) * 2)
        for i, d in enumerate(reversed(number))
    )
    return total % 10 == 0


def _card_problem(number: str, expiry: str, cvc: str) -> str | None:
    """What Stripe.js would say before sending anything."""
    if not re.fullmatch(r"\d{12,19}", number) or not _luhn(number):
        return "Your card number is invalid."
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", expiry)
    if not match or not 1 <= int(match[1]) <= 12:
        return "Your card's expiration date is incomplete."
    year = int(match[2]) + (2000 if len(match[2]) == 2 else 0)
    today = clock.now()
    if (year, int(match[1])) < (today.year, today.month):
        return "Your card's expiration year is in the past."
    if not re.fullmatch(r"\d{3,4}", cvc):
        return "Your card's security code is incomplete."
    return None


@router.get("/pay/{reference}", response_class=HTMLResponse, include_in_schema=False)
async def card_page(
    reference: str, request: Request, client_secret: str = "", return_url: str = ""
) -> Response:
    """Anyone holding the client secret, in sandbox mode: the card form for a PaymentIntent."""
    payment = await run_in_threadpool(_page_payment, request, reference, client_secret)
    return _page(request, payment, return_url)


@router.post("/pay/{reference}", include_in_schema=False)
async def pay(reference: str, request: Request) -> Response:
    """Anyone holding the client secret, in sandbox mode: pay with a card (Stripe's test cards)."""
    form = await request.form()
    field = {k: str(v) for k, v in form.items()}
    return_url = field.get("return_url", "")
    payment = await run_in_threadpool(
        _page_payment, request, reference, field.get("client_secret", "")
    )
    if payment.status in ("succeeded", "closed"):
        return _page(request, payment, return_url)
    if field.get("outcome") == "succeeded":
        # The test-card button: the form's fields as a tester would fill them with 4242...
        field.update(card_number=SUCCEEDS, expiry=TEST_EXPIRY, cvc="123")
    number = re.sub(r"[\s-]", "", field.get("card_number", ""))
    problem = _card_problem(number, field.get("expiry", ""), field.get("cvc", ""))
    if problem:
        return _page(request, payment, return_url, problem, status_code=400)
    if number == SUCCEEDS:
        outcome, decline = "succeeded", None
    elif number == DECLINED:
        outcome, decline = "failed", None
    else:
        outcome, decline = (
            "failed",
            {
                "decline_code": "test_mode_live_card",
                "message": (
                    "Your card was declined. Your request was in test mode, but used a non test card. "
                    "For a list of valid test cards, visit: https://stripe.com/docs/testing."
                ),
            },
        )
    await complete(request, payment, outcome, decline)
    payment = await run_in_threadpool(
        _page_payment, request, reference, field.get("client_secret", "")
    )
    if payment.status == "succeeded" and (target := _return_to(request, return_url, payment)):
        return RedirectResponse(target, status_code=303)
    error = (
        (payment.data.get("last_payment_error") or {}).get("message")
        if payment.status == "failed"
        else None
    )
    return _page(request, payment, return_url, error, status_code=402 if error else 200)


# --- cards saved for payments without the payer (auto-renew) ----------------------------------
# A Customer (kept nowhere: only its id matters here), a SetupIntent (usage off_session) the payer
# completes on `/setup/{id}`, the PaymentMethod it saves, and a PaymentIntent created with
# `customer`, `payment_method`, `off_session=true`, `confirm=true`, charged at once: 200 and
# succeeded, or Stripe's 402 `card_error` carrying the PaymentIntent. The saved 4242 4242 4242
# 4242 pays; 4000 0000 0000 0341 (Stripe's) saves but every charge of it is declined.

SETUPS, METHODS = "stripe_setup", "stripe_pm"
SAVES_THEN_DECLINES = "4000000000000341"


def _setup(p: SimPayment) -> dict[str, Any]:
    d = p.data
    return {
        "id": p.reference,
        "object": "setup_intent",
        "client_secret": d["client_secret"],
        "created": d["created"],
        "customer": d["customer"],
        "livemode": False,
        "metadata": d.get("metadata", {}),
        "payment_method": d.get("payment_method"),
        "payment_method_types": ["card"],
        "status": d["status"],
        "usage": d.get("usage", "off_session"),
    }


def _method(p: SimPayment) -> dict[str, Any]:
    return {
        "id": p.reference,
        "object": "payment_method",
        "type": "card",
        "customer": p.data["customer"],
        "card": {"brand": "visa", "last4": p.data["last4"], "exp_month": 12, "exp_year": 2049},
        "livemode": False,
    }


@router.post("/v1/customers")
async def create_customer(request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: a Customer (only its id is kept, by
    the SetupIntents and PaymentMethods that name it)."""
    try:
        _authenticate(request)
        params, _fingerprint = await _params(request)
    except StripeError as e:
        return _failure(e)
    return _json(
        {
            "id": _id("cus_", 14),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "livemode": False,
            "metadata": params.get("metadata") or {},
        }
    )


@router.post("/v1/setup_intents")
async def create_setup_intent(request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: a SetupIntent saving a card for a customer."""
    try:
        _authenticate(request)
        params, _fingerprint = await _params(request)
        customer = params.get("customer")
        if not isinstance(customer, str) or not customer.startswith("cus_"):
            raise StripeError(
                400, "Missing required param: customer.", code="parameter_missing", param="customer"
            )
    except StripeError as e:
        return _failure(e)
    reference = _id("seti_")
    setup = SimPayment(
        provider=SETUPS,
        reference=reference,
        merchant_reference=customer,
        amount=0,
        currency="HKD",
        status="pending",
        notify_url=None,
        refunded=0,
        refunds=[],
        data={
            "client_secret": f"{reference}_secret_{_id('', 25)}",
            "created": int(time.time()),
            "customer": customer,
            "metadata": params.get("metadata") or {},
            "status": "requires_payment_method",
            "usage": params.get("usage") or "off_session",
        },
    )

    def add() -> None:
        with store_sessions(request).begin() as s:
            s.add(setup)

    await run_in_threadpool(add)
    return _json(_setup(setup))


def _get(request: Request, kind: str, reference: str) -> SimPayment | None:
    with store_sessions(request)() as s:
        return s.get(SimPayment, (kind, reference))


@router.get("/v1/setup_intents/{reference}")
async def retrieve_setup_intent(reference: str, request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: a SetupIntent as it is now."""
    try:
        _authenticate(request)
        setup = await run_in_threadpool(_get, request, SETUPS, reference)
        if setup is None:
            raise _missing(reference, "intent")
        return _json(_setup(setup))
    except StripeError as e:
        return _failure(e)


@router.get("/v1/payment_methods/{reference}")
async def retrieve_payment_method(reference: str, request: Request) -> Response:
    """Anyone holding the Stripe secret key, in sandbox mode: a saved PaymentMethod (its card's brand and last four)."""
    try:
        _authenticate(request)
        method = await run_in_threadpool(_get, request, METHODS, reference)
        if method is None:
            raise StripeError(
                404,
                f"No such PaymentMethod: '{reference}'",
                code="resource_missing",
                param="payment_method",
            )
        return _json(_method(method))
    except StripeError as e:
        return _failure(e)


def _confirm_saved(
    s: Any, payment: SimPayment, params: dict[str, Any], key: str | None, fingerprint: str
) -> tuple[Response, dict[str, Any] | None]:
    """A PaymentIntent confirmed at creation with a saved card: charged now, or declined (402)."""
    method_id, customer = params.get("payment_method"), params.get("customer")
    saved = s.get(SimPayment, (METHODS, method_id)) if isinstance(method_id, str) else None
    if saved is None or saved.data["customer"] != customer:
        raise StripeError(
            400,
            f"No such PaymentMethod: '{method_id}'",
            code="resource_missing",
            param="payment_method",
        )
    now = int(time.time())
    payment.data = {**payment.data, "payment_method": saved.reference, "customer": customer}
    if saved.data["last4"] == SAVES_THEN_DECLINES[-4:]:
        payment.status = "failed"
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "charge": _id("ch_"),
            "payment_method": _method(saved),
        }
        payment.data = {
            **payment.data,
            "status": "requires_payment_method",
            "last_payment_error": error,
            "latest_charge": error["charge"],
            "last_attempt_at": now,
        }
        body = {"error": {**error, "payment_intent": _intent(payment)}}
        _remember(payment, key, fingerprint, body, 402)
        s.add(payment)
        return _json(body, 402), _event("payment_intent.payment_failed", _intent(payment))
    payment.status, payment.settled_at = "succeeded", clock.now()
    payment.data = {
        **payment.data,
        "status": "succeeded",
        "paid_at": now,
        "latest_charge": _id("ch_"),
    }
    event = _event("payment_intent.succeeded", _intent(payment))
    payment.data = {**payment.data, "succeeded_event": event}
    body = _intent(payment)
    _remember(payment, key, fingerprint, body)
    s.add(payment)
    return _json(body), event


def _setup_page_intent(request: Request, reference: str, client_secret: str) -> SimPayment:
    setup = _get(request, SETUPS, reference)
    if setup is None or not hmac.compare_digest(
        setup.data["client_secret"].encode(), client_secret.encode()
    ):
        raise HTTPException(404)
    return setup


def _setup_page(
    request: Request,
    setup: SimPayment,
    return_url: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return templates.TemplateResponse(
        request,
        "sandbox/stripe_setup.html",
        {
            "setup": _setup(setup),
            "return_url": return_url,
            "error": error,
            "test_cards": {
                "succeeds": "4242 4242 4242 4242",
                "declines_later": "4000 0000 0000 0341",
                "declined": "4000 0000 0000 0002",
            },
        },
        status_code=status_code,
    )


@router.get("/setup/{reference}", response_class=HTMLResponse, include_in_schema=False)
async def setup_page(
    reference: str, request: Request, client_secret: str = "", return_url: str = ""
) -> Response:
    """Anyone holding the client secret, in sandbox mode: the form that saves a card for a SetupIntent."""
    setup = await run_in_threadpool(_setup_page_intent, request, reference, client_secret)
    return _setup_page(request, setup, return_url)


def _save(request: Request, reference: str, number: str) -> SimPayment:
    with store_sessions(request).begin() as s:
        setup = s.get(SimPayment, (SETUPS, reference), with_for_update=True)
        assert setup is not None
        if setup.data["status"] == "succeeded":
            return setup
        method = SimPayment(
            provider=METHODS,
            reference=_id("pm_"),
            merchant_reference=setup.data["customer"],
            amount=0,
            currency="HKD",
            status="succeeded",
            notify_url=None,
            refunded=0,
            refunds=[],
            data={"customer": setup.data["customer"], "last4": number[-4:]},
        )
        s.add(method)
        setup.status, setup.settled_at = "succeeded", clock.now()
        setup.data = {**setup.data, "status": "succeeded", "payment_method": method.reference}
        return setup


@router.post("/setup/{reference}", include_in_schema=False)
async def save_card(reference: str, request: Request) -> Response:
    """Anyone holding the client secret, in sandbox mode: save a card (Stripe's test cards) to the customer."""
    form = await request.form()
    field = {k: str(v) for k, v in form.items()}
    return_url = field.get("return_url", "")
    setup = await run_in_threadpool(
        _setup_page_intent, request, reference, field.get("client_secret", "")
    )
    if field.get("outcome") == "succeeded":
        field.update(card_number=SUCCEEDS, expiry=TEST_EXPIRY, cvc="123")
    number = re.sub(r"[\s-]", "", field.get("card_number", ""))
    problem = _card_problem(number, field.get("expiry", ""), field.get("cvc", ""))
    if problem is None and number not in (SUCCEEDS, SAVES_THEN_DECLINES):
        problem = "Your card was declined."
    if problem:
        return _setup_page(request, setup, return_url, problem, status_code=402)
    setup = await run_in_threadpool(_save, request, reference, number)
    ours = urlsplit(request.app.state.settings.public_base_url)
    target = urlsplit(return_url)
    if (target.scheme, target.netloc) == (ours.scheme, ours.netloc):
        query = urlencode(
            {
                "setup_intent": setup.reference,
                "setup_intent_client_secret": setup.data["client_secret"],
                "redirect_status": "succeeded",
            }
        )
        return RedirectResponse(f"{return_url}{'&' if target.query else '?'}{query}", 303)
    return _setup_page(request, setup, return_url)
