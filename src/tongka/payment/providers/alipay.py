"""Alipay open platform (支付宝开放平台), signed with RSA2, as the gateway speaks it.

Requests: the common parameters (app_id, method, charset, sign_type=RSA2, timestamp in
Beijing time, version=1.0, notify_url) go in the gateway URL's query, `biz_content` (JSON)
in the form body. `sign` is SHA256withRSA by the app's private key over every parameter
but `sign` with an empty value dropped, sorted by name and joined as `k=v&k=v` (raw
values, UTF-8), in base64. Answers are JSON `{"<method>_response": {...}, "sign": "..."}`,
the signature covering the exact text of the `<method>_response` value, verified with
Alipay's public key; `code` 10000 is success, 40004 a business refusal (`sub_code` ACQ.*).

Notifications (`trade_status_sync`) are form-encoded POSTs to the notify URL given with
the trade; the signature covers every parameter but `sign` and `sign_type` (empty ones
kept), sorted and joined the same way. We answer the bare text `success`, anything else
makes Alipay retry (over about 25 hours, so there is no freshness window here: the inbox
takes care of replays). A refund sends one too, carrying `out_biz_no` (our refund id) and
`refund_fee`, the total refunded so far; that refund's own amount is asked for with
alipay.trade.fastpay.refund.query.

Amounts are decimal strings in yuan (`total_amount="12.50"`); HKD prices name
`trans_currency`/`settle_currency`. Our payment and refund ids travel as UUID hex,
because `out_trade_no` and `out_request_no` allow only letters, digits and underscores.

The python-alipay-sdk does its own HTTP and verifies answers only through private
methods, so the algorithm is written here with `cryptography`; the tests check it
against the SDK.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tongka import clock
from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.payment.providers.base import (
    Agreement,
    CallbackAnswer,
    Checkout,
    EventOutcome,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
)
from tongka.payment.providers.keys import pem

log = structlog.get_logger()

BEIJING = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS = "10000"
WAP_METHOD = "alipay_wap"  # paid in a phone's browser (alipay.trade.wap.pay)
# Password-free withholding (商家扣款): the payer signs once, the merchant charges later.
AGREEMENT_PRODUCT = "GENERAL_WITHHOLDING"
AGREEMENT_PERSONAL_PRODUCT = "GENERAL_WITHHOLDING_P"
AGREEMENT_SCENE = "INDUSTRY|DIGITAL_MEDIA"
_AMOUNT = re.compile(r"\d{1,13}(\.\d{1,2})?")


# --- RSA2 and the strings it signs (the simulator signs with these too) -----------------


@lru_cache(maxsize=16)
def private_key(pem_text: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem(pem_text), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@lru_cache(maxsize=16)
def public_key(pem_text: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem(pem_text))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    return base64.b64encode(
        key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    ).decode()


def rsa2_verify(key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, content.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def request_content(params: Mapping[str, str]) -> str:
    """What a request's `sign` covers: all but `sign`, empty values dropped, sorted."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def notify_content(params: Mapping[str, str]) -> str:
    """What a notification's `sign` covers: all but `sign` and `sign_type`, sorted."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type"))


def response_content(raw: str, key: str) -> str | None:
    """The exact text of `key`'s value in a gateway answer: what its `sign` covers."""
    found = re.search(r'"' + re.escape(key) + r'"\s*:\s*', raw)
    if found is None:
        return None
    try:
        _value, end = json.JSONDecoder().raw_decode(raw, found.end())
    except ValueError:
        return None
    return raw[found.end() : end]


def beijing_now() -> str:
    return clock.now().astimezone(BEIJING).strftime(TIME_FORMAT)


# --- amounts: integer minor units <-> "12.50", never through a float ---------------------


def to_yuan(amount: int, currency: str) -> str:
    exponent = EXPONENT[currency]
    return str(Decimal(amount).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def from_yuan(text: str, currency: str) -> int:
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f"not an amount: {text!r}")
    value = Decimal(text).scaleb(EXPONENT[currency])
    if value != value.to_integral_value():
        raise ValueError(f"more decimals than {currency} has: {text!r}")
    return int(value)


def wire_id(our_id: str) -> str:
    """Our UUIDs as Alipay takes them: hex, no hyphens."""
    return uuid.UUID(our_id).hex


def our_id(wire: str) -> str:
    try:
        return str(uuid.UUID(hex=wire))
    except ValueError:
        return wire  # not one of ours: the core records it as an unknown payment


# --- the provider ------------------------------------------------------------------------


class AlipayProvider:
    name = "alipay"

    def __init__(
        self,
        app_id: str,
        app_private_key: str,
        alipay_public_key: str,
        gateway: str,
        http: httpx.Client,
        timeout_minutes: int = 30,
    ) -> None:
        self._app_id = app_id
        self._key = private_key(app_private_key)
        self._alipay_key = public_key(alipay_public_key)
        self._gateway = gateway
        self._http = http
        self._timeout = (
            f"{max(1, timeout_minutes)}m"  # Alipay closes the trade by itself after this
        )

    # requests

    def _signed(self, method: str, biz: Mapping[str, Any], **extra: str) -> dict[str, str]:
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_now(),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **{k: v for k, v in extra.items() if v},
        }
        params["sign"] = rsa2_sign(self._key, request_content(params))
        return params

    def _call(self, method: str, biz: Mapping[str, Any], **extra: str) -> dict[str, Any]:
        """POST to the gateway; the verified `<method>_response` object, whatever its code."""
        params = self._signed(method, biz, **extra)
        body = {"biz_content": params.pop("biz_content")}
        try:
            answer = self._http.post(self._gateway, params=params, data=body)
        except httpx.HTTPError as e:
            log.warning("alipay_unreachable", method=method, error=str(e))
            raise ProviderUnavailable() from None
        raw = answer.text
        content = response_content(raw, method.replace(".", "_") + "_response")
        try:
            document = json.loads(raw)
            signature = document.get("sign") if isinstance(document, dict) else None
            result = json.loads(content) if content is not None else None
        except ValueError:
            result = None
        if answer.status_code != 200 or not isinstance(result, dict):
            log.warning(
                "alipay_bad_answer", method=method, status=answer.status_code, body=raw[:300]
            )
            raise ProviderUnavailable()
        if (
            not signature
            or content is None
            or not rsa2_verify(self._alipay_key, content, signature)
        ):
            # The gateway leaves some refusals (a bad request signature, a wrong app id) unsigned.
            log.warning(
                "alipay_unsigned_answer",
                method=method,
                error_code=result.get("code"),
                sub_code=result.get("sub_code"),
            )
            raise ProviderUnavailable()
        return result

    @staticmethod
    def _refused(method: str, result: Mapping[str, Any]) -> ProviderUnavailable:
        log.warning(
            "alipay_refused",
            method=method,
            error_code=result.get("code"),
            sub_code=result.get("sub_code"),
            sub_msg=result.get("sub_msg"),
        )
        return ProviderUnavailable()

    def _amount_fields(self, amount: int, currency: str) -> dict[str, str]:
        fields = {"total_amount": to_yuan(amount, currency)}
        if currency != "CNY":  # a foreign-currency price, settled in that currency
            fields |= {"trans_currency": currency, "settle_currency": currency}
        return fields

    def start(self, request: PaymentRequest) -> Checkout:
        """alipay.trade.precreate: a QR code for the Alipay app, which a phone also opens as a link.

        The web cashier (`page_pay_url`) is not the checkout link because its signed URL
        (~1 kB) does not fit `payments.checkout_url` (500 characters).
        """
        if request.method == WAP_METHOD:
            # Nothing to ask Alipay yet: the trade is made when the payer's browser reaches the
            # gateway with `wap_pay_url`, too long to keep as the checkout link (see above).
            return Checkout(provider_reference=wire_id(request.payment_id))
        method = "alipay.trade.precreate"
        out_trade_no = wire_id(request.payment_id)
        biz = {
            "out_trade_no": out_trade_no,
            **self._amount_fields(request.amount, request.currency),
            "subject": request.description[:256],
            "timeout_express": self._timeout,
        }
        result = self._call(method, biz, notify_url=request.notify_url)
        if result.get("code") != SUCCESS or not result.get("qr_code"):
            raise self._refused(method, result)
        qr = str(result["qr_code"])
        return Checkout(provider_reference=out_trade_no, checkout_url=qr, qr_content=qr)

    def page_pay_url(self, request: PaymentRequest) -> str:
        """alipay.trade.page.pay: the signed gateway URL that opens Alipay's web cashier."""
        biz = {
            "out_trade_no": wire_id(request.payment_id),
            **self._amount_fields(request.amount, request.currency),
            "subject": request.description[:256],
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "timeout_express": self._timeout,
        }
        params = self._signed(
            "alipay.trade.page.pay",
            biz,
            notify_url=request.notify_url,
            return_url=request.return_url,
        )
        return f"{self._gateway}?{urlencode(params)}"

    def wap_pay_url(self, request: PaymentRequest) -> str:
        """alipay.trade.wap.pay: the signed gateway URL that opens Alipay's mobile-web cashier
        (`alipay_wap`, a phone's browser), which returns the payer to `return_url`."""
        biz = {
            "out_trade_no": wire_id(request.payment_id),
            **self._amount_fields(request.amount, request.currency),
            "subject": request.description[:256],
            "product_code": "QUICK_WAP_WAY",
            "quit_url": request.return_url,
            "timeout_express": self._timeout,
        }
        params = self._signed(
            "alipay.trade.wap.pay",
            biz,
            notify_url=request.notify_url,
            return_url=request.return_url,
        )
        return f"{self._gateway}?{urlencode(params)}"

    # password-free agreements (alipay.user.agreement.page.sign, then alipay.trade.pay)

    def agreement_sign_url(self, *, reference: str, notify_url: str, return_url: str) -> str:
        """alipay.user.agreement.page.sign: the signed gateway URL of Alipay's signing page.

        `external_agreement_no` is our reference (the account id, as hex); Alipay sends the
        agreement back signed, to `notify_url` (dut_user_sign) and with the payer to `return_url`."""
        biz = {
            "personal_product_code": AGREEMENT_PERSONAL_PRODUCT,
            "product_code": AGREEMENT_PRODUCT,
            "sign_scene": AGREEMENT_SCENE,
            "external_agreement_no": wire_id(reference),
            "access_params": {"channel": "ALIPAYAPP"},
        }
        params = self._signed(
            "alipay.user.agreement.page.sign", biz, notify_url=notify_url, return_url=return_url
        )
        return f"{self._gateway}?{urlencode(params)}"

    def parse_agreement(self, params: Mapping[str, str]) -> Agreement:
        """A signing's notification (notify_type dut_user_sign) or return, its RSA2 `sign`
        verified with Alipay's key over every other parameter but `sign_type`."""
        if params.get("sign_type") != "RSA2" or not rsa2_verify(
            self._alipay_key, notify_content(params), params.get("sign", "")
        ):
            raise InvalidCallback()
        if params.get("app_id") != self._app_id or params.get("notify_type") != "dut_user_sign":
            raise InvalidCallback()
        try:
            return Agreement(
                agreement_no=params["agreement_no"],
                reference=our_id(params["external_agreement_no"]),
                status=params["status"],
                label=params.get("alipay_logon_id") or params.get("alipay_user_id") or "",
            )
        except KeyError:
            raise InvalidCallback() from None

    def charge_agreement(self, request: PaymentRequest, agreement_no: str) -> PaymentStatus:
        """alipay.trade.pay with the agreement (GENERAL_WITHHOLDING): paid at once, or declined
        (a business refusal: no balance, the agreement ended); ProviderUnavailable otherwise."""
        method = "alipay.trade.pay"
        out_trade_no = wire_id(request.payment_id)
        biz = {
            "out_trade_no": out_trade_no,
            **self._amount_fields(request.amount, request.currency),
            "subject": request.description[:256],
            "product_code": AGREEMENT_PRODUCT,
            "agreement_params": {"agreement_no": agreement_no},
        }
        result = self._call(method, biz, notify_url=request.notify_url)
        if result.get("code") == SUCCESS:
            return PaymentStatus(
                "succeeded",
                str(result.get("trade_no") or "") or None,
                request.amount,
                request.currency,
            )
        if result.get("code") == "40004" and result.get("sub_code") != "ACQ.SYSTEM_ERROR":
            log.info(
                "alipay_agreement_declined",
                payment_id=request.payment_id,
                sub_code=result.get("sub_code"),
            )
            return PaymentStatus("failed", None)
        raise self._refused(method, result)

    # notifications

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise InvalidCallback() from None
        params = dict(pairs)
        if len(params) != len(pairs) or params.get("sign_type") != "RSA2":
            raise InvalidCallback()
        if not rsa2_verify(self._alipay_key, notify_content(params), params.get("sign", "")):
            raise InvalidCallback()
        # Genuine, but it must also be about a trade of ours.
        if params.get("app_id") != self._app_id or params.get("notify_type") != "trade_status_sync":
            raise InvalidCallback()
        try:
            trade_no, out_trade_no, status = (
                params["trade_no"],
                params["out_trade_no"],
                params["trade_status"],
            )
            currency = params.get("trans_currency") or "CNY"
            if currency not in EXPONENT:
                raise InvalidCallback()
            if params.get("out_biz_no") and params.get("refund_fee"):
                return PaymentEvent(
                    event_id=f"{trade_no}:refund:{params['out_biz_no']}",
                    payment_id=our_id(out_trade_no),
                    provider_reference=trade_no,
                    outcome="refunded",
                    amount=self._refund_amount(out_trade_no, params["out_biz_no"], currency),
                    currency=currency,
                    refund_id=our_id(params["out_biz_no"]),
                )
            outcome: EventOutcome
            if status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                outcome, key = "succeeded", "paid"  # FINISHED follows SUCCESS for the same payment
            elif status == "TRADE_CLOSED":
                outcome, key = "failed", "closed"
            else:
                raise InvalidCallback()  # WAIT_BUYER_PAY: no outcome yet, and not subscribed
            return PaymentEvent(
                event_id=f"{trade_no}:{key}",
                payment_id=our_id(out_trade_no),
                provider_reference=trade_no,
                outcome=outcome,
                amount=from_yuan(params["total_amount"], currency),
                currency=currency,
            )
        except (KeyError, ValueError):
            raise InvalidCallback() from None

    def _refund_amount(self, out_trade_no: str, out_request_no: str, currency: str) -> int:
        """This refund's own amount: a refund's notification gives only the total refunded so far
        (`refund_fee`), so Alipay is asked, as it advises for refunds."""
        method = "alipay.trade.fastpay.refund.query"
        result = self._call(
            method, {"out_trade_no": out_trade_no, "out_request_no": out_request_no}
        )
        if result.get("code") != SUCCESS or not result.get("refund_amount"):
            raise self._refused(method, result)  # 502: Alipay retries the notification later
        return from_yuan(str(result["refund_amount"]), currency)

    def acknowledge(self) -> CallbackAnswer:
        return CallbackAnswer(200, "success", "text/plain")

    # after the start

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        method = "alipay.trade.query"
        result = self._call(method, {"out_trade_no": wire_id(payment_id)})
        if result.get("code") != SUCCESS:
            if result.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return PaymentStatus("pending", None)  # nobody has scanned or opened it yet
            raise self._refused(method, result)
        states: dict[str, PaymentState] = {
            "WAIT_BUYER_PAY": "pending",
            "TRADE_SUCCESS": "succeeded",
            "TRADE_FINISHED": "succeeded",
        }
        status = states.get(
            str(result.get("trade_status")),
            # TRADE_CLOSED: never paid, or paid and then refunded in full (it then has a payment date).
            "succeeded" if result.get("send_pay_date") else "closed",
        )
        currency = str(result.get("trans_currency") or "CNY")
        try:
            amount = from_yuan(str(result["total_amount"]), currency)
        except (KeyError, ValueError):
            raise self._refused(method, result) from None
        return PaymentStatus(status, str(result.get("trade_no") or "") or None, amount, currency)

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        method = "alipay.trade.close"
        result = self._call(method, {"out_trade_no": wire_id(payment_id)})
        if result.get("code") == SUCCESS or result.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return
        if result.get("sub_code") == "ACQ.TRADE_STATUS_ERROR":
            # Already paid or closed: nothing left to close; a payment arrives as its notification.
            log.info("alipay_close_too_late", payment_id=payment_id)
            return
        raise self._refused(method, result)

    def refund(self, request: RefundRequest) -> RefundResult:
        """alipay.trade.refund; `out_request_no` (our refund id) makes a repeat refund nothing more."""
        method = "alipay.trade.refund"
        out_trade_no, out_request_no = wire_id(request.payment_id), wire_id(request.refund_id)
        biz = {
            "out_trade_no": out_trade_no,
            "refund_amount": to_yuan(request.amount, request.currency),
            "out_request_no": out_request_no,
            "refund_reason": request.reason[:256],
        }
        if request.currency != "CNY":
            biz["refund_currency"] = request.currency
        result = self._call(method, biz)
        reference = f"{result.get('trade_no') or out_trade_no}:{out_request_no}"
        if result.get("code") != SUCCESS:
            if (
                str(result.get("sub_code", "")).startswith("ACQ.")
                and result.get("sub_code") != "ACQ.SYSTEM_ERROR"
            ):
                log.warning(
                    "alipay_refund_refused",
                    refund_id=request.refund_id,
                    sub_code=result.get("sub_code"),
                )
                return RefundResult(reference, "failed")
            raise self._refused(method, result)
        if result.get("fund_change") == "Y":
            return RefundResult(reference, "succeeded")
        # "N": a repeat of an earlier request, or not done yet; Alipay says to ask.
        done = self._call(
            "alipay.trade.fastpay.refund.query",
            {
                "out_trade_no": out_trade_no,
                "out_request_no": out_request_no,
                "query_options": ["gmt_refund_pay"],
            },
        )
        if done.get("code") == SUCCESS and done.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult(reference, "succeeded")
        return RefundResult(reference, "pending")


def build(settings: Settings, http: httpx.Client) -> AlipayProvider | None:
    if not (
        settings.alipay_app_id and settings.alipay_app_private_key and settings.alipay_public_key
    ):
        return None
    gateway = settings.alipay_gateway
    if gateway is None and settings.sandbox_enabled:
        gateway = f"{settings.public_base_url.rstrip('/')}/sandbox/alipay/gateway.do"
    if gateway is None:
        return None
    return AlipayProvider(
        settings.alipay_app_id,
        settings.alipay_app_private_key.get_secret_value(),
        settings.alipay_public_key,
        gateway,
        http,
        timeout_minutes=settings.order_payment_ttl_seconds // 60,
    )
