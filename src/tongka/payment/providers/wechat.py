"""WeChat Pay API v3 (微信支付), for `wechat_pay` (Native QR) and `wechat_pay_h5` (H5, a phone's browser).

Wire protocol (https://pay.weixin.qq.com/doc/v3/merchant/):
  POST /v3/pay/transactions/native                            -> {"code_url": "weixin://wxpay/bizpayurl?pr=..."}
  POST /v3/pay/transactions/h5                                -> {"h5_url": "https://wx.tenpay.com/...checkmweb?..."}
  GET  /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid= query (trade_state)
  POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close 204
  POST /v3/refund/domestic/refunds                            refund, idempotent on out_refund_no
  POST /v3/papay/sign/contracts/pre-entrust-sign              -> {"redirect_url": signing page}
  POST /v3/papay/pay/transactions/apply                       charge under a contract_id (委托代扣)
Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="",signature="",
timestamp="",serial_no=""`, an RSA-SHA256 (PKCS#1 v1.5) signature with the merchant key of
"METHOD\\npath?query\\ntimestamp\\nnonce\\nbody\\n". WeChat's answers and callbacks are signed by
the platform key over "timestamp\\nnonce\\nbody\\n" (headers Wechatpay-Timestamp / -Nonce /
-Signature / -Serial). A callback is `{"id", "event_type": "TRANSACTION.SUCCESS" | "REFUND.*",
"resource": {AEAD_AES_256_GCM ciphertext, nonce, associated_data}}`, the resource encrypted
with the APIv3 key; we answer 204 with no body. WeChat notifies successes only: a payment
that fails or is abandoned is learnt by `query`.

Our payment id is a UUID; `out_trade_no` allows 6-32 characters of [0-9A-Za-z_-*], so it
travels as the UUID's 32 hex digits (refund ids the same, as `out_refund_no`). Amounts are
fen (`total`), tongka's CNY minor unit; the domestic API takes CNY only.

The signing, verification and decryption are the `wechatpayv3` SDK's helpers; its client
is not used because it calls `requests` directly, and we are given an httpx.Client.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta, timezone
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from wechatpayv3.utils import aes_decrypt, build_authorization, rsa_verify

from tongka import clock
from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.payment.providers.base import (
    Agreement,
    CallbackAnswer,
    Checkout,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentStatus,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
)
from tongka.payment.providers.keys import pem

log = structlog.get_logger()

SCHEME = "WECHATPAY2-SHA256-RSA2048"
TOLERANCE_SECONDS = 300  # WeChat's advice: refuse callbacks whose timestamp is over 5 minutes off
CURRENCY = "CNY"  # the domestic API's only currency
H5_METHOD = "wechat_pay_h5"  # the method paid by H5 rather than a Native QR code
FEN_EXPONENT = 2  # WeChat's `total` is in fen
# Fen in one tongka minor unit of CURRENCY (1: both count cents of a yuan).
FEN_PER_UNIT: int = 10 ** (FEN_EXPONENT - EXPONENT[CURRENCY])
CHINA = timezone(timedelta(hours=8))  # WeChat's RFC 3339 times are Beijing time
_OUT_NO = re.compile(r"^[0-9A-Za-z_\-*]{1,64}$")

TRADE_STATES: dict[str, Literal["pending", "succeeded", "failed", "closed"]] = {
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "SUCCESS": "succeeded",
    "REFUND": "succeeded",  # paid, then (partly) refunded
    "PAYERROR": "failed",
    "CLOSED": "closed",
    "REVOKED": "closed",
}
# 委托代扣 (papay): the sign scene of a contract signed from a page, and the account name WeChat
# shows on it (not the payer's nickname, which WeChat forbids there).
SIGN_SCENE = "SIGN_SCENE_QRCODE"
CONTRACT_DISPLAY_ACCOUNT = "tongka"
SANDBOX_PLAN_ID = 1
# A charge under a contract refused for the contract's or the payer's sake: a decline, not an outage.
CONTRACT_REFUSALS = frozenset(
    {"NOTENOUGH", "CONTRACT_NOT_EXIST", "CONTRACT_ERROR", "RULE_LIMIT", "USER_ACCOUNT_ABNORMAL"}
)
REFUND_STATES: dict[str, Literal["succeeded", "pending", "failed"]] = {
    "SUCCESS": "succeeded",
    "PROCESSING": "pending",
    "CLOSED": "failed",
    "ABNORMAL": "failed",
}


def to_fen(amount: int, currency: str) -> int:
    """tongka minor units -> WeChat's `total`, by integer scaling only."""
    if (
        currency != CURRENCY
        or isinstance(amount, bool)
        or not isinstance(amount, int)
        or amount < 0
    ):
        raise ValueError(f"WeChat Pay cannot take {amount!r} {currency!r}")
    return amount * FEN_PER_UNIT


def from_fen(total: Any, currency: str = CURRENCY) -> int:
    """WeChat's fen -> tongka minor units; anything but a whole non-negative number is refused."""
    if currency != CURRENCY or isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"unexpected amount {total!r} {currency!r}")
    if total % FEN_PER_UNIT:
        raise ValueError(f"{total} fen is not a whole number of tongka minor units")
    return total // FEN_PER_UNIT


def to_out_no(our_id: str) -> str:
    """Our UUID -> an out_trade_no / out_refund_no (32 hex digits, within WeChat's 32 characters)."""
    try:
        return uuid.UUID(our_id).hex
    except ValueError:
        if not _OUT_NO.match(our_id):
            raise
        return our_id


def from_out_no(out_no: str) -> str:
    """An out_trade_no / out_refund_no -> our id as tongka writes it."""
    try:
        return str(uuid.UUID(hex=out_no)) if len(out_no) == 32 else out_no
    except ValueError:
        return out_no


class WeChatPayProvider:
    name = "wechat"

    def __init__(
        self,
        *,
        http: httpx.Client,
        api_base: str,
        mch_id: str,
        appid: str,
        apiv3_key: str,
        merchant_private_key: RSAPrivateKey,
        merchant_serial: str,
        platform_public_key: RSAPublicKey,
        platform_serial: str,
        refund_notify_url: str,
        payment_ttl_seconds: int,
        sandbox: bool = False,
        plan_id: int | None = None,
    ) -> None:
        if len(apiv3_key.encode()) != 32:
            raise ValueError("the WeChat APIv3 key must be 32 bytes (AES-256)")
        self._http = http
        self._base = api_base.rstrip("/")
        self._mch_id = mch_id
        self._appid = appid
        self._apiv3_key = apiv3_key
        self._private_key = merchant_private_key
        self._serial = merchant_serial
        self._platform_key = platform_public_key
        self._platform_serial = platform_serial
        self._refund_notify_url = refund_notify_url
        self._ttl = payment_ttl_seconds
        self._sandbox = sandbox
        self._plan_id = plan_id  # the papay template of auto-renew's contracts

    # -- the API ------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One signed API call: (status, JSON or None). A 2xx answer must carry WeChat's signature."""
        body = (
            json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            if payload is not None
            else ""
        )
        url = httpx.URL(self._base + path)
        # The signed URL is the request's absolute path with its query, as sent.
        authorization = build_authorization(
            url.raw_path.decode(), method, self._mch_id, self._serial, self._private_key, data=body
        )
        headers = {
            "Authorization": authorization,
            "Accept": "application/json",
            "User-Agent": "tongka",
        }
        if body:
            headers["Content-Type"] = "application/json"
        try:
            answer = self._http.request(
                method, url, content=body.encode() if body else None, headers=headers
            )
        except httpx.HTTPError as error:
            log.warning("wechat_unreachable", path=path, error=str(error))
            raise ProviderUnavailable() from error
        if 200 <= answer.status_code < 300 and not self._genuine(answer.headers, answer.content):
            log.warning("wechat_answer_unsigned", path=path, status=answer.status_code)
            raise ProviderUnavailable()
        try:
            data = answer.json() if answer.content else None
        except ValueError:
            data = None
        if answer.status_code >= 300:
            refusal = data if isinstance(data, dict) else {}
            log.warning(
                "wechat_refused",
                path=path,
                status=answer.status_code,
                error_code=refusal.get("code"),
                message=refusal.get("message"),
                request_id=answer.headers.get("request-id"),
            )
        return answer.status_code, data

    def _genuine(self, headers: Mapping[str, str], body: bytes) -> bool:
        """WeChat's signature over "timestamp\\nnonce\\nbody\\n" with the platform key we hold."""
        h = {k.lower(): v for k, v in headers.items()}
        if h.get("wechatpay-serial") != self._platform_serial:
            return False
        if h.get("wechatpay-signature-type", SCHEME) != SCHEME:
            return False
        try:
            text = body.decode("utf-8")
            return bool(
                rsa_verify(
                    h["wechatpay-timestamp"],
                    h["wechatpay-nonce"],
                    text,
                    h["wechatpay-signature"],
                    self._platform_key,
                )
            )
        except (KeyError, UnicodeDecodeError, ValueError, TypeError):
            return False

    def _order(
        self, kind: str, request: PaymentRequest, extra: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        if request.currency != CURRENCY:
            from tongka.payment.service import (
                MethodUnavailable,  # here: service imports the provider registry
            )

            raise MethodUnavailable(method=request.method)
        out_trade_no = to_out_no(request.payment_id)
        expires = (
            (clock.now() + timedelta(seconds=self._ttl)).astimezone(CHINA).replace(microsecond=0)
        )
        payload = {
            "appid": self._appid,
            "mchid": self._mch_id,
            "description": request.description[:127],
            "out_trade_no": out_trade_no,
            "time_expire": expires.isoformat(),
            "notify_url": request.notify_url,
            "amount": {"total": to_fen(request.amount, request.currency), "currency": CURRENCY},
            **extra,
        }
        status, data = self._call("POST", f"/v3/pay/transactions/{kind}", payload)
        if status != 200 or not isinstance(data, dict):
            raise ProviderUnavailable()
        return out_trade_no, data

    def start(self, request: PaymentRequest) -> Checkout:
        """Native: a code_url the payer scans with WeChat; H5 (`wechat_pay_h5`, a phone's browser): a
        page to open. Before payment WeChat has no id of its own for the trade (transaction_id comes
        with the callback), so the reference is our out_trade_no."""
        if request.method == H5_METHOD:
            if not request.payer_ip:
                raise ProviderUnavailable()  # WeChat refuses an H5 order without the payer's address
            return self.start_h5(request, request.payer_ip)
        out_trade_no, data = self._order("native", request, {})
        code_url = str(data.get("code_url") or "")
        if not code_url.startswith("weixin://"):
            raise ProviderUnavailable()
        checkout_url = None
        if self._sandbox:
            # No WeChat app can scan here: the simulator's page is what the app would open.
            checkout_url = f"{self._base}/wxpay/bizpayurl?{urlsplit(code_url).query}"
        return Checkout(
            provider_reference=out_trade_no, checkout_url=checkout_url, qr_content=code_url
        )

    def start_h5(self, request: PaymentRequest, payer_ip: str) -> Checkout:
        """H5, for a phone's browser outside WeChat: the payer opens h5_url, which returns to return_url."""
        out_trade_no, data = self._order(
            "h5", request, {"scene_info": {"payer_client_ip": payer_ip, "h5_info": {"type": "Wap"}}}
        )
        h5_url = str(data.get("h5_url") or "")
        if not h5_url.startswith(("https://", "http://")):
            raise ProviderUnavailable()
        return Checkout(
            provider_reference=out_trade_no,
            checkout_url=f"{h5_url}&redirect_url={quote(request.return_url, safe='')}",
        )

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        out_trade_no = to_out_no(payment_id)
        status, data = self._call(
            "GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={self._mch_id}"
        )
        if status == 404 and isinstance(data, dict) and data.get("code") == "ORDER_NOT_EXIST":
            return PaymentStatus("closed", None)  # never created at WeChat: it cannot be paid
        if status != 200 or not isinstance(data, dict) or data.get("out_trade_no") != out_trade_no:
            raise ProviderUnavailable()
        state = TRADE_STATES.get(str(data.get("trade_state")))
        if state is None:
            raise ProviderUnavailable()
        amount = data.get("amount") or {}
        try:
            total = from_fen(amount["total"], amount.get("currency", CURRENCY))
        except (KeyError, ValueError, TypeError):
            if state == "succeeded":
                raise ProviderUnavailable() from None
            total = None
        return PaymentStatus(
            status=state,
            provider_reference=data.get("transaction_id"),
            amount=total,
            currency=CURRENCY if total is not None else None,
        )

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        out_trade_no = to_out_no(payment_id)
        status, data = self._call(
            "POST",
            f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
            {"mchid": self._mch_id},
        )
        if status == 204 or (isinstance(data, dict) and data.get("code") == "ORDER_CLOSED"):
            return
        raise ProviderUnavailable()  # e.g. ORDERPAID: the payment went through; its callback tells the rest

    def refund(self, request: RefundRequest) -> RefundResult:
        payload = {
            "out_trade_no": to_out_no(request.payment_id),
            "out_refund_no": to_out_no(request.refund_id),  # WeChat refunds once per out_refund_no
            "reason": request.reason[:80],
            "notify_url": self._refund_notify_url,
            "amount": {
                "refund": to_fen(request.amount, request.currency),
                "total": to_fen(request.payment_amount, request.currency),
                "currency": CURRENCY,
            },
        }
        status, data = self._call("POST", "/v3/refund/domestic/refunds", payload)
        if status != 200 or not isinstance(data, dict) or not data.get("refund_id"):
            raise ProviderUnavailable()
        state = REFUND_STATES.get(str(data.get("status")))
        if state is None:
            raise ProviderUnavailable()
        return RefundResult(provider_refund_id=str(data["refund_id"]), status=state)

    # -- callbacks ----------------------------------------------------------------------

    # -- password-free contracts (委托代扣, papay) ---------------------------------------

    def agreement_sign_url(self, *, reference: str, notify_url: str, return_url: str) -> str:
        """POST /v3/papay/sign/contracts/pre-entrust-sign: the URL of WeChat's signing page for a
        contract under our plan. `out_user_code` carries our reference (the account id); the
        contract's own code is new each time, as WeChat refuses one used before. The contract id
        comes back only in the signed PAPAY.SIGN notification to `notify_url`."""
        if self._plan_id is None:
            raise ProviderUnavailable()
        payload = {
            "sign_scene": SIGN_SCENE,
            "appid": self._appid,
            "plan_id": self._plan_id,
            "out_contract_code": uuid.uuid4().hex,
            "out_user_code": to_out_no(reference),
            "contract_display_account": CONTRACT_DISPLAY_ACCOUNT,
            "contract_notify_url": notify_url,
            "return_url": return_url,
        }
        status, data = self._call("POST", "/v3/papay/sign/contracts/pre-entrust-sign", payload)
        url = data.get("redirect_url") if status == 200 and isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProviderUnavailable()
        return url

    def parse_agreement(self, params: Mapping[str, str]) -> Agreement:
        """WeChat returns the payer with nothing signed: only the notification proves a contract."""
        raise InvalidCallback()

    def parse_agreement_notice(self, headers: Mapping[str, str], body: bytes) -> Agreement:
        """The PAPAY.SIGN notification (signed, its resource AES-GCM encrypted under the APIv3
        key): the contract signed under our plan and app. Status NORMAL when it is in force."""
        notification, data = self._notice(headers, body)
        try:
            if (
                notification["event_type"] != "PAPAY.SIGN"
                or data["appid"] != self._appid
                or data["plan_id"] != self._plan_id
            ):
                raise InvalidCallback()
            return Agreement(
                agreement_no=str(data["contract_id"]),
                reference=from_out_no(str(data["out_user_code"])),
                status="NORMAL"
                if data["contract_state"] == "SIGNED"
                else str(data["contract_state"]),
                label=str(data.get("contract_display_account") or "") or CONTRACT_DISPLAY_ACCOUNT,
            )
        except (KeyError, TypeError):
            raise InvalidCallback() from None

    def charge_agreement(self, request: PaymentRequest, agreement_no: str) -> PaymentStatus:
        """POST /v3/papay/pay/transactions/apply with the contract id, then the order's state by
        query: paid (SUCCESS) or declined (PAYERROR, e.g. NOTENOUGH; or the contract refused:
        ended, unknown). WeChat settles a charge asynchronously: one still in progress is
        ProviderUnavailable here, and its TRANSACTION.SUCCESS notification, should it come, finds
        the order cancelled and is refunded (`flow.confirm`)."""
        if request.currency != CURRENCY:
            return PaymentStatus("failed", None)
        payload = {
            "appid": self._appid,
            "out_trade_no": to_out_no(request.payment_id),
            "description": request.description[:127],
            "transaction_notify_url": request.notify_url,
            "contract_id": agreement_no,
            "amount": {"total": to_fen(request.amount, request.currency), "currency": CURRENCY},
        }
        status, data = self._call("POST", "/v3/papay/pay/transactions/apply", payload)
        code = data.get("code") if isinstance(data, dict) else None
        if 400 <= status < 500 and code in CONTRACT_REFUSALS:
            log.info("wechat_agreement_declined", payment_id=request.payment_id, code=code)
            return PaymentStatus("failed", None)
        if status not in (200, 204):
            raise ProviderUnavailable()
        answer = self.query(request.payment_id, None)
        if answer.status in ("succeeded", "failed"):
            if answer.status == "failed":
                log.info("wechat_agreement_declined", payment_id=request.payment_id)
            return answer
        raise ProviderUnavailable()

    # -- notifications -------------------------------------------------------------------

    def _notice(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], Any]:
        """A notification, its signature, age and AES-GCM resource checked: (envelope, resource)."""
        h = {k.lower(): v for k, v in headers.items()}
        try:
            timestamp = int(h.get("wechatpay-timestamp", ""))
        except ValueError:
            raise InvalidCallback() from None
        if not self._genuine(headers, body) or abs(time.time() - timestamp) > TOLERANCE_SECONDS:
            raise InvalidCallback()
        try:
            notification = json.loads(body)
            resource = notification["resource"]
            if (
                notification.get("resource_type") != "encrypt-resource"
                or resource["algorithm"] != "AEAD_AES_256_GCM"
            ):
                raise InvalidCallback()
            plain = aes_decrypt(
                resource["nonce"],
                resource["ciphertext"],
                resource.get("associated_data") or "",
                self._apiv3_key,
            )
            if plain is None:  # the AES-GCM tag did not match: not encrypted with our APIv3 key
                raise InvalidCallback()
            data = json.loads(plain)
            if data["mchid"] != self._mch_id:
                raise InvalidCallback()
            return notification, data
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidCallback() from None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        notification, data = self._notice(headers, body)
        try:
            return self._event(str(notification["id"]), str(notification["event_type"]), data)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidCallback() from None

    def _event(self, event_id: str, event_type: str, data: dict[str, Any]) -> PaymentEvent:
        payment_id = from_out_no(str(data["out_trade_no"]))
        amount = data["amount"]
        if event_type == "TRANSACTION.SUCCESS":
            if data["trade_state"] != "SUCCESS" or data["appid"] != self._appid:
                raise InvalidCallback()
            return PaymentEvent(
                event_id=event_id,
                payment_id=payment_id,
                provider_reference=str(data["transaction_id"]),
                outcome="succeeded",
                amount=from_fen(amount["total"], amount["currency"]),
                currency=CURRENCY,
            )
        if event_type in ("REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"):
            # Refund notices carry no currency: domestic refunds are CNY. A refund that did not go
            # through has no outcome of its own in base.py, so it is "failed" with its refund_id.
            succeeded = event_type == "REFUND.SUCCESS" and data["refund_status"] == "SUCCESS"
            return PaymentEvent(
                event_id=event_id,
                payment_id=payment_id,
                provider_reference=str(data["transaction_id"]),
                outcome="refunded" if succeeded else "failed",
                amount=from_fen(amount["refund"]),
                currency=CURRENCY,
                refund_id=from_out_no(str(data["out_refund_no"])),
            )
        raise InvalidCallback()

    def acknowledge(self) -> CallbackAnswer:
        # WeChat: "HTTP 200 or 204, no body"; anything else and it retries.
        return CallbackAnswer(204, "")


@lru_cache(maxsize=16)
def _keys(private_pem: str, public_pem: str) -> tuple[RSAPrivateKey, RSAPublicKey]:
    """The merchant's private key and the platform's public key, parsed once a process: loading an
    RSA private key checks it, 40 ms, and every app built its providers anew."""
    private_key = load_pem_private_key(pem(private_pem), password=None)
    public_key = load_pem_public_key(pem(public_pem))
    if not isinstance(private_key, RSAPrivateKey) or not isinstance(public_key, RSAPublicKey):
        raise ValueError("WeChat Pay keys must be RSA")
    return private_key, public_key


def build(settings: Settings, http: httpx.Client) -> WeChatPayProvider | None:
    values = (
        settings.wechat_mch_id,
        settings.wechat_appid,
        settings.wechat_apiv3_key,
        settings.wechat_merchant_private_key,
        settings.wechat_merchant_serial,
        settings.wechat_platform_public_key,
        settings.wechat_platform_serial,
    )
    if not all(values):
        return None
    if settings.wechat_api_base:
        base, sandbox = settings.wechat_api_base, False
    elif settings.sandbox_enabled:
        base, sandbox = f"{settings.public_base_url.rstrip('/')}/sandbox/wechat", True
    else:
        return None
    assert (
        settings.wechat_apiv3_key
        and settings.wechat_merchant_private_key
        and settings.wechat_platform_public_key
    )
    private_key, public_key = _keys(
        settings.wechat_merchant_private_key.get_secret_value(), settings.wechat_platform_public_key
    )
    return WeChatPayProvider(
        http=http,
        api_base=base,
        mch_id=str(settings.wechat_mch_id),
        appid=str(settings.wechat_appid),
        apiv3_key=settings.wechat_apiv3_key.get_secret_value(),
        merchant_private_key=private_key,
        merchant_serial=str(settings.wechat_merchant_serial),
        platform_public_key=public_key,
        platform_serial=str(settings.wechat_platform_serial),
        refund_notify_url=f"{settings.public_base_url.rstrip('/')}/api/v1/payments/callbacks/wechat",
        payment_ttl_seconds=settings.order_payment_ttl_seconds,
        sandbox=sandbox,
        plan_id=settings.wechat_papay_plan_id or (SANDBOX_PLAN_ID if sandbox else None),
    )
