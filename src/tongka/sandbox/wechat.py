"""WeChat Pay API v3 as WeChat plays it, for sandbox mode (mounted at /sandbox/wechat).

The API paths are the real ones under that prefix (see `providers/wechat.py` for the wire
protocol). Requests must carry a valid WECHATPAY2-SHA256-RSA2048 Authorization made with the
merchant key (checked with its public half, `sandbox_wechat_merchant_public_key`); a bad one
is refused 401 `{"code": "SIGN_ERROR", "message": ...}`, as WeChat does. Every answer and
callback is signed with the platform key (`sandbox_wechat_platform_private_key`); callback
resources are AES-256-GCM encrypted with the APIv3 key. The signing here is written from
WeChat's published algorithm with `cryptography`, apart from the provider's SDK helpers, so
each side checks the other.

The payer's pages: `wxpay/bizpayurl?pr=` (what the WeChat app shows on scanning a Native
code_url `weixin://wxpay/bizpayurl?pr=`) and `cgi-bin/mmpayweb-bin/checkmweb` (the H5
page an h5_url opens). WeChat sends a notification for a success only; a payment that
fails is marked PAYERROR and is learnt by query. Refunds are PROCESSING until
`complete_refund` (or `POST /sim/transactions/{out_trade_no}/refunds/{out_refund_no}/complete`)
settles them and sends REFUND.SUCCESS (or REFUND.CLOSED).

委托代扣 (papay): `v3/papay/sign/contracts/pre-entrust-sign` answers the URL of the signing page
(`papay/entrust/{id}`: agree, agree "with no balance", or cancel); signing sends the signed,
encrypted PAPAY.SIGN notification with the contract_id and returns the payer to `return_url`
(a cancel notifies nothing, as WeChat). `v3/papay/pay/transactions/apply` charges under a
contract at once (PAYERROR "NOTENOUGH" for a contract signed with no balance; an unknown
contract is refused CONTRACT_NOT_EXIST), its outcome learnt by query.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
import uuid
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from fastapi import APIRouter, Body, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from tongka import clock
from tongka.config import Settings
from tongka.money import Money
from tongka.payment.providers.keys import pem
from tongka.sandbox.delivery import deliver
from tongka.sandbox.store import SimPayment, store_sessions
from tongka.templating import templates

router = APIRouter()

PROVIDER = "wechat"
PREFIX = "/sandbox/wechat"  # where app.py mounts this router: the paths requests are signed with
SCHEME = "WECHATPAY2-SHA256-RSA2048"
TOLERANCE_SECONDS = 300
CHINA = timezone(timedelta(hours=8))
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-*|@]{1,64}$")
_ALNUM = string.ascii_letters + string.digits

SIM_STATE = {
    "pending": ("NOTPAY", "订单未支付"),
    "succeeded": ("SUCCESS", "支付成功"),
    "failed": ("PAYERROR", "支付失败"),
    "closed": ("CLOSED", "订单已关闭"),
}


class WeChatError(Exception):
    """An error answer in WeChat's format: HTTP status and {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


# -- keys, signatures, encryption ----------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@cache
def _private_key(value: str) -> RSAPrivateKey:
    key = load_pem_private_key(pem(value), password=None)
    assert isinstance(key, RSAPrivateKey)
    return key


@cache
def _public_key(value: str) -> RSAPublicKey:
    key = load_pem_public_key(pem(value))
    assert isinstance(key, RSAPublicKey)
    return key


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(CHINA).replace(microsecond=0).isoformat()


def _nonce(n: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def signed_headers(settings: Settings, body: bytes) -> dict[str, str]:
    """WeChat's signature of an answer or callback: RSA-SHA256 over "timestamp\\nnonce\\nbody\\n"."""
    assert settings.sandbox_wechat_platform_private_key is not None
    timestamp, nonce = str(int(time.time())), _nonce()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    key = _private_key(settings.sandbox_wechat_platform_private_key.get_secret_value())
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": str(settings.wechat_platform_serial),
        "Wechatpay-Signature-Type": SCHEME,
        "Request-ID": str(uuid.uuid4()),
    }


def _answer(settings: Settings, status: int, data: dict[str, Any] | None = None) -> Response:
    body = (
        json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        if data is not None
        else b""
    )
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers=signed_headers(settings, body),
    )


def _refusal(settings: Settings, error: WeChatError) -> Response:
    return _answer(settings, error.status, {"code": error.code, "message": error.message})


def _authenticate(request: Request, body: bytes) -> str:
    """Check the merchant's Authorization as WeChat does; returns the mchid."""
    settings = _settings(request)
    header = request.headers.get("authorization", "")
    if not header.startswith(SCHEME + " "):
        raise WeChatError(401, "SIGN_ERROR", "Authorization 头缺失或认证类型不正确")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', header[len(SCHEME) + 1 :]))
    if fields.get("mchid") != settings.wechat_mch_id:
        raise WeChatError(400, "MCH_NOT_EXISTS", "商户号不存在")
    if fields.get("serial_no") != settings.wechat_merchant_serial:
        raise WeChatError(401, "SIGN_ERROR", "商户证书序列号有误")
    try:
        timestamp = int(fields["timestamp"])
        signature = base64.b64decode(fields["signature"], validate=True)
        nonce = fields["nonce_str"]
    except (KeyError, ValueError):
        raise WeChatError(401, "SIGN_ERROR", "签名信息不完整") from None
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        raise WeChatError(401, "SIGN_ERROR", "请求时间戳与当前时间相差过大")
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    url = raw_path + (b"?" + query if query else b"")
    message = (
        f"{request.method}\n".encode() + url + f"\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    )
    assert settings.sandbox_wechat_merchant_public_key is not None
    try:
        _public_key(settings.sandbox_wechat_merchant_public_key).verify(
            signature, message, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise WeChatError(
            401, "SIGN_ERROR", "签名错误，请检查签名参数和方法是否符合签名算法要求"
        ) from None
    return fields["mchid"]


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WeChatError(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
    if not isinstance(data, dict):
        raise WeChatError(400, "PARAM_ERROR", "请求体不是合法的JSON")
    return data


def _fen(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WeChatError(400, "PARAM_ERROR", f"{name} 必须是正整数（单位：分）")
    return value


# -- records ---------------------------------------------------------------------------------


def _find(session: Any, out_trade_no: str) -> SimPayment | None:
    return session.scalars(
        select(SimPayment).where(
            SimPayment.provider == PROVIDER, SimPayment.merchant_reference == out_trade_no
        )
    ).first()


def _trade_state(p: SimPayment) -> tuple[str, str]:
    if p.status == "succeeded" and p.refunded:
        return "REFUND", "转入退款"
    state, desc = SIM_STATE[p.status]
    return state, p.data.get("trade_state_desc") or desc


def _transaction(p: SimPayment) -> dict[str, Any]:
    state, desc = _trade_state(p)
    data: dict[str, Any] = {
        "appid": p.data["appid"],
        "mchid": p.data["mchid"],
        "out_trade_no": p.merchant_reference,
        "trade_type": p.data["trade_type"],
        "trade_state": state,
        "trade_state_desc": desc,
        "attach": "",
        "amount": {"total": p.amount, "currency": p.currency, "payer_currency": p.currency},
    }
    if p.status == "succeeded":
        data.update(
            transaction_id=p.data["transaction_id"],
            bank_type="OTHERS",
            success_time=_rfc3339(p.settled_at or clock.now()),
            payer={"openid": p.data["openid"]},
        )
        data["amount"]["payer_total"] = p.amount
    return data


def _refund_view(p: SimPayment, r: dict[str, Any]) -> dict[str, Any]:
    view = {
        "refund_id": r["refund_id"],
        "out_refund_no": r["out_refund_no"],
        "transaction_id": p.data["transaction_id"],
        "out_trade_no": p.merchant_reference,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": r["create_time"],
        "status": r["status"],
        "funds_account": "AVAILABLE",
        "amount": {
            "total": p.amount,
            "refund": r["amount"],
            "payer_total": p.amount,
            "payer_refund": r["amount"],
            "settlement_total": p.amount,
            "settlement_refund": r["amount"],
            "discount_refund": 0,
            "currency": p.currency,
            "refund_fee": 0,
        },
    }
    if r.get("success_time"):
        view["success_time"] = r["success_time"]
    return view


def _expired(p: SimPayment) -> bool:
    return clock.now() > datetime.fromisoformat(p.data["time_expire"])


# -- the API ---------------------------------------------------------------------------------


def _create(request: Request, body: bytes, trade_type: Literal["NATIVE", "MWEB"]) -> Response:
    settings = _settings(request)
    try:
        mchid = _authenticate(request, body)
        data = _json(body)
        if data.get("mchid") != mchid:
            raise WeChatError(400, "PARAM_ERROR", "请求体中的 mchid 与认证信息不一致")
        if data.get("appid") != settings.wechat_appid:
            raise WeChatError(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        out_trade_no = data.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
            raise WeChatError(
                400, "PARAM_ERROR", "out_trade_no 只能是数字、大小写字母_-*，长度6-32"
            )
        description = data.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 127:
            raise WeChatError(400, "PARAM_ERROR", "description 长度应为1-127")
        notify_url = data.get("notify_url")
        if not isinstance(notify_url, str) or not notify_url.startswith(("https://", "http://")):
            raise WeChatError(400, "PARAM_ERROR", "notify_url 格式不正确")
        amount = data.get("amount") or {}
        total = _fen(amount.get("total"), "amount.total")
        if amount.get("currency", "CNY") != "CNY":
            raise WeChatError(400, "PARAM_ERROR", "境内商户号仅支持人民币 CNY")
        try:
            time_expire = datetime.fromisoformat(
                data.get("time_expire") or _rfc3339(clock.now() + timedelta(hours=2))
            )
        except ValueError:
            raise WeChatError(400, "PARAM_ERROR", "time_expire 格式不正确") from None
        if trade_type == "MWEB":
            scene = data.get("scene_info") or {}
            if not scene.get("payer_client_ip") or not (scene.get("h5_info") or {}).get("type"):
                raise WeChatError(
                    400, "PARAM_ERROR", "H5 下单需要 scene_info.payer_client_ip 与 h5_info.type"
                )
        with store_sessions(request).begin() as session:
            p = _find(session, out_trade_no)
            if p is None:
                now = clock.now()
                p = SimPayment(
                    provider=PROVIDER,
                    reference="wx"
                    + now.astimezone(CHINA).strftime("%Y%m%d%H%M%S")
                    + secrets.token_hex(11),
                    merchant_reference=out_trade_no,
                    amount=total,
                    currency="CNY",
                    status="pending",
                    notify_url=notify_url,
                    data={
                        "appid": data["appid"],
                        "mchid": mchid,
                        "description": description,
                        "trade_type": trade_type,
                        "time_expire": time_expire.isoformat(),
                        "package": str(secrets.randbelow(10**10)),
                    },
                    refunds=[],
                    created_at=now,
                )
                session.add(p)
            elif p.status == "succeeded":
                raise WeChatError(400, "ORDERPAID", "该订单已支付")
            elif (p.amount, p.data["trade_type"], p.data["description"]) != (
                total,
                trade_type,
                description,
            ):
                raise WeChatError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            elif p.status == "closed":
                raise WeChatError(400, "ORDER_CLOSED", "订单已关闭")
            # The same order placed again with the same parameters gets the same answer.
            if trade_type == "NATIVE":
                return _answer(
                    settings, 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={p.reference}"}
                )
            base = settings.public_base_url.rstrip("/")
            return _answer(
                settings,
                200,
                {
                    "h5_url": f"{base}{PREFIX}/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={p.reference}&package={p.data['package']}"
                },
            )
    except WeChatError as error:
        return _refusal(settings, error)


@router.post("/v3/pay/transactions/native")
def native(request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): a Native order; answers the code_url the payer scans."""
    return _create(request, body, "NATIVE")


@router.post("/v3/pay/transactions/h5")
def h5(request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): an H5 order; answers the h5_url the payer's browser opens."""
    return _create(request, body, "MWEB")


@router.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
def query(out_trade_no: str, request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): a transaction's state, by out_trade_no."""
    settings = _settings(request)
    try:
        mchid = _authenticate(request, body)
        if request.query_params.get("mchid") != mchid:
            raise WeChatError(400, "PARAM_ERROR", "mchid 参数缺失或与认证信息不一致")
        with store_sessions(request)() as session:
            p = _find(session, out_trade_no)
            if p is None:
                raise WeChatError(404, "ORDER_NOT_EXIST", "订单不存在")
            return _answer(settings, 200, _transaction(p))
    except WeChatError as error:
        return _refusal(settings, error)


@router.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
def close(out_trade_no: str, request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): close an unpaid transaction (204, also when already closed)."""
    settings = _settings(request)
    try:
        mchid = _authenticate(request, body)
        if _json(body).get("mchid") != mchid:
            raise WeChatError(400, "PARAM_ERROR", "mchid 参数缺失或与认证信息不一致")
        with store_sessions(request).begin() as session:
            p = _find(session, out_trade_no)
            # WeChat answers 204 for an out_trade_no it does not know, too.
            if p is not None and p.status == "succeeded":
                raise WeChatError(400, "ORDERPAID", "该订单已支付")
            if p is not None:
                p.status = "closed"
        return _answer(settings, 204)
    except WeChatError as error:
        return _refusal(settings, error)


@router.post("/v3/refund/domestic/refunds")
def refund(request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): refund part or all of a paid transaction, once per out_refund_no."""
    settings = _settings(request)
    try:
        _authenticate(request, body)
        data = _json(body)
        out_refund_no = data.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not _OUT_REFUND_NO.match(out_refund_no):
            raise WeChatError(400, "PARAM_ERROR", "out_refund_no 格式不正确")
        amount = data.get("amount") or {}
        refund_fen, total = (
            _fen(amount.get("refund"), "amount.refund"),
            _fen(amount.get("total"), "amount.total"),
        )
        if amount.get("currency") != "CNY":
            raise WeChatError(400, "PARAM_ERROR", "amount.currency 仅支持 CNY")
        with store_sessions(request).begin() as session:
            p = None
            if isinstance(data.get("out_trade_no"), str):
                p = _find(session, data["out_trade_no"])
            elif isinstance(data.get("transaction_id"), str):
                p = next(
                    (
                        x
                        for x in session.scalars(
                            select(SimPayment).where(SimPayment.provider == PROVIDER)
                        )
                        if x.data.get("transaction_id") == data["transaction_id"]
                    ),
                    None,
                )
            if p is None:
                raise WeChatError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
            existing = next((r for r in p.refunds if r["out_refund_no"] == out_refund_no), None)
            if existing is not None:  # the same out_refund_no is the same refund
                if existing["amount"] != refund_fen:
                    raise WeChatError(
                        400, "INVALID_REQUEST", "同一退款单号的退款金额与之前的请求不一致"
                    )
                return _answer(settings, 200, _refund_view(p, existing))
            if p.status != "succeeded":
                raise WeChatError(400, "INVALID_REQUEST", "订单未支付，不能退款")
            if total != p.amount:
                raise WeChatError(400, "PARAM_ERROR", "订单金额与原订单不一致")
            if refund_fen > p.amount - p.refunded:
                raise WeChatError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            record = {
                "out_refund_no": out_refund_no,
                "refund_id": "50" + "".join(secrets.choice(string.digits) for _ in range(27)),
                "amount": refund_fen,
                "status": "PROCESSING",
                "reason": str(data.get("reason") or ""),
                "notify_url": data.get("notify_url"),
                "create_time": _rfc3339(clock.now()),
            }
            p.refunds = [*p.refunds, record]  # reassigned: JSON columns do not see changes in place
            p.refunded = p.refunded + refund_fen
            return _answer(settings, 200, _refund_view(p, record))
    except WeChatError as error:
        return _refusal(settings, error)


# -- notifications -----------------------------------------------------------------------------


def notification(
    settings: Settings,
    notify_id: str,
    event_type: str,
    summary: str,
    original_type: str,
    resource: dict[str, Any],
) -> tuple[bytes, dict[str, str]]:
    """A signed WeChat notification with its resource encrypted under the APIv3 key."""
    assert settings.wechat_apiv3_key is not None
    nonce = _nonce(12)
    plain = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
    cipher = AESGCM(settings.wechat_apiv3_key.get_secret_value().encode()).encrypt(
        nonce.encode(), plain, original_type.encode()
    )
    body = json.dumps(
        {
            "id": notify_id,
            "create_time": _rfc3339(clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(cipher).decode(),
                "associated_data": original_type,
                "nonce": nonce,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    return body, {"Content-Type": "application/json", **signed_headers(settings, body)}


def _webhook(settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/api/v1/payments/callbacks/wechat"


def _settle(request: Request, reference: str, outcome: str) -> SimPayment:
    with store_sessions(request).begin() as session:
        p = session.get(SimPayment, (PROVIDER, reference), with_for_update=True)
        if p is None:
            raise LookupError(reference)
        if p.status == "pending" and _expired(p):
            p.status = "closed"  # WeChat closes an order at its time_expire
        elif p.status == "pending" and outcome == "succeeded":
            p.status, p.settled_at = "succeeded", clock.now()
            p.data = {
                **p.data,
                "transaction_id": "4200"
                + "".join(secrets.choice(string.digits) for _ in range(24)),
                "openid": "o" + _nonce(27),
                "notify_id": str(uuid.uuid4()),  # one per event: WeChat's retries repeat it
            }
        elif p.status == "pending":
            p.status, p.settled_at = "failed", clock.now()
        return p


async def complete(request: Request, payment: SimPayment, outcome: str) -> int:
    """The payer pays ("succeeded") or the payment fails ("failed"). A success sends (or, pressed
    again, resends as WeChat's retry) the signed TRANSACTION.SUCCESS notification and returns its
    HTTP status; WeChat notifies nothing else, so otherwise 0 (nothing was sent)."""
    p = await run_in_threadpool(_settle, request, payment.reference, outcome)
    if p.status != "succeeded" or outcome != "succeeded":
        return 0
    settings = _settings(request)
    body, headers = notification(
        settings,
        p.data["notify_id"],
        "TRANSACTION.SUCCESS",
        "支付成功",
        "transaction",
        _transaction(p),
    )
    return await deliver(request, p.notify_url or _webhook(settings), body, headers)


def _settle_refund(
    request: Request, reference: str, out_refund_no: str, outcome: str
) -> tuple[SimPayment, dict[str, Any]]:
    with store_sessions(request).begin() as session:
        p = session.get(SimPayment, (PROVIDER, reference), with_for_update=True)
        record = next(
            (r for r in (p.refunds if p else []) if r["out_refund_no"] == out_refund_no), None
        )
        if p is None or record is None:
            raise LookupError(out_refund_no)
        if record["status"] == "PROCESSING":
            record = {
                **record,
                "status": "SUCCESS" if outcome == "succeeded" else "CLOSED",
                "success_time": _rfc3339(clock.now()),
                "notify_id": str(uuid.uuid4()),
            }
            p.refunds = [record if r["out_refund_no"] == out_refund_no else r for r in p.refunds]
            if record["status"] == "CLOSED":
                p.refunded = p.refunded - record["amount"]  # the money stays with the merchant
        return p, record


async def complete_refund(
    request: Request, payment: SimPayment, out_refund_no: str, outcome: str = "succeeded"
) -> int:
    """WeChat finishes a PROCESSING refund and sends REFUND.SUCCESS (or REFUND.CLOSED); returns the callback's status."""
    p, r = await run_in_threadpool(
        _settle_refund, request, payment.reference, out_refund_no, outcome
    )
    resource = {
        "mchid": p.data["mchid"],
        "out_trade_no": p.merchant_reference,
        "transaction_id": p.data["transaction_id"],
        "out_refund_no": r["out_refund_no"],
        "refund_id": r["refund_id"],
        "refund_status": r["status"],
        "success_time": r["success_time"],
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": p.amount,
            "refund": r["amount"],
            "payer_total": p.amount,
            "payer_refund": r["amount"],
        },
    }
    event, summary = (
        ("REFUND.SUCCESS", "退款成功")
        if r["status"] == "SUCCESS"
        else ("REFUND.CLOSED", "退款关闭")
    )
    settings = _settings(request)
    body, headers = notification(settings, r["notify_id"], event, summary, "refund", resource)
    return await deliver(request, r.get("notify_url") or _webhook(settings), body, headers)


# -- sandbox controls and the payer's pages ----------------------------------------------------


def _by_out_trade_no(request: Request, out_trade_no: str) -> SimPayment | None:
    with store_sessions(request)() as session:
        return _find(session, out_trade_no)


class OutcomeIn(BaseModel):
    outcome: Literal["succeeded", "failed"] = "succeeded"


class CallbackOut(BaseModel):
    callback_status: int


@router.post("/sim/transactions/{out_trade_no}/complete", response_model=CallbackOut)
async def complete_api(
    out_trade_no: str, request: Request, body: Annotated[OutcomeIn | None, Body()] = None
) -> CallbackOut | Response:
    """Anyone, in sandbox mode: the payer pays (or the payment fails), as scripts and tests drive it."""
    p = await run_in_threadpool(_by_out_trade_no, request, out_trade_no)
    if p is None:
        return _refusal(_settings(request), WeChatError(404, "ORDER_NOT_EXIST", "订单不存在"))
    return CallbackOut(callback_status=await complete(request, p, (body or OutcomeIn()).outcome))


@router.post(
    "/sim/transactions/{out_trade_no}/refunds/{out_refund_no}/complete", response_model=CallbackOut
)
async def complete_refund_api(
    out_trade_no: str,
    out_refund_no: str,
    request: Request,
    body: Annotated[OutcomeIn | None, Body()] = None,
) -> CallbackOut | Response:
    """Anyone, in sandbox mode: WeChat finishes a refund and notifies the merchant."""
    p = await run_in_threadpool(_by_out_trade_no, request, out_trade_no)
    if p is None or not any(r["out_refund_no"] == out_refund_no for r in p.refunds):
        return _refusal(_settings(request), WeChatError(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
    status = await complete_refund(request, p, out_refund_no, (body or OutcomeIn()).outcome)
    return CallbackOut(callback_status=status)


def _load(request: Request, prepay_id: str) -> SimPayment | None:
    with store_sessions(request)() as session:
        return session.get(SimPayment, (PROVIDER, prepay_id))


def _page(
    request: Request, p: SimPayment | None, back: str, redirect_url: str | None = None
) -> Response:
    context: dict[str, Any] = {
        "payment": p,
        "back": back,
        "redirect_url": redirect_url,
        "lang": "zh-Hans",
    }
    if p is None:
        return templates.TemplateResponse(
            request, "sandbox/wechat_pay.html", context, status_code=404
        )
    state = "expired" if p.status == "pending" and _expired(p) else p.status
    context.update(
        state=state,
        price=Money(p.amount, "CNY").format("zh-Hans"),
        description=p.data["description"],
        transaction_id=p.data.get("transaction_id"),
    )
    return templates.TemplateResponse(request, "sandbox/wechat_pay.html", context)


@router.get("/wxpay/bizpayurl", response_class=HTMLResponse)
async def scanned(request: Request, pr: str = "") -> Response:
    """Anyone, in sandbox mode: what the WeChat app shows on scanning a Native code_url."""
    p = await run_in_threadpool(_load, request, pr)
    return _page(request, p, f"{PREFIX}/wxpay/bizpayurl?pr={pr}")


@router.get("/cgi-bin/mmpayweb-bin/checkmweb", response_class=HTMLResponse)
async def checkmweb(
    request: Request, prepay_id: str = "", package: str = "", redirect_url: str | None = None
) -> Response:
    """Anyone, in sandbox mode: the H5 payment page an h5_url opens in the payer's browser."""
    p = await run_in_threadpool(_load, request, prepay_id)
    if p is not None and p.data.get("package") != package:
        p = None
    return _page(
        request,
        p,
        str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        redirect_url,
    )


@router.post("/wxpay/pay", include_in_schema=False)
async def pay(
    request: Request,
    prepay_id: Annotated[str, Form()],
    outcome: Annotated[Literal["succeeded", "failed"], Form()],
    back: Annotated[str, Form()] = "",
) -> Response:
    """Anyone, in sandbox mode: the payer's button on the pages above."""
    p = await run_in_threadpool(_load, request, prepay_id)
    if p is None:
        return _page(request, None, back)
    await complete(request, p, outcome)
    # Back to the page it came from (ours only), which now shows the result.
    return RedirectResponse(
        back if back.startswith(PREFIX + "/") else f"{PREFIX}/wxpay/bizpayurl?pr={prepay_id}",
        status_code=303,
    )


# -- password-free contracts (委托代扣, papay) ----------------------------------------------

CONTRACTS = "wechat_contract"  # the simulator's contracts, kept beside its transactions
SIGN_CHOICES = ("agree", "agree_no_balance", "cancel")
_OUT_CODE = re.compile(r"^[0-9A-Za-z]{1,32}$")


def _contract(session: Any, contract_id: str) -> SimPayment | None:
    """A signed contract by its contract_id (kept in `data`: a contract's row is made before it)."""
    rows = session.scalars(
        select(SimPayment).where(SimPayment.provider == CONTRACTS, SimPayment.status == "succeeded")
    )
    return next((c for c in rows if c.data.get("contract_id") == contract_id), None)


@router.post("/v3/papay/sign/contracts/pre-entrust-sign")
def pre_entrust_sign(request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): a contract to sign under a plan; answers the signing page's URL."""
    settings = _settings(request)
    try:
        mchid = _authenticate(request, body)
        data = _json(body)
        if data.get("appid") != settings.wechat_appid:
            raise WeChatError(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        plan_id = data.get("plan_id")
        if isinstance(plan_id, bool) or not isinstance(plan_id, int) or plan_id <= 0:
            raise WeChatError(400, "PARAM_ERROR", "plan_id 必须是正整数")
        for name in ("out_contract_code", "out_user_code"):
            if not isinstance(data.get(name), str) or not _OUT_CODE.match(data[name]):
                raise WeChatError(400, "PARAM_ERROR", f"{name} 只能是数字、大小写字母的组合")
        notify_url = data.get("contract_notify_url")
        if not isinstance(notify_url, str) or not notify_url.startswith(("https://", "http://")):
            raise WeChatError(400, "PARAM_ERROR", "contract_notify_url 格式不正确")
        display = data.get("contract_display_account")
        if not isinstance(display, str) or not 1 <= len(display) <= 32:
            raise WeChatError(400, "PARAM_ERROR", "contract_display_account 长度应为1-32")
        pre_entrustweb_id = "5778aadY9nltAsZzXixCkFIGYnV2V" + secrets.token_hex(8)
        with store_sessions(request).begin() as session:
            session.add(
                SimPayment(
                    provider=CONTRACTS,
                    reference=pre_entrustweb_id,
                    merchant_reference=data["out_user_code"],
                    amount=0,
                    currency="CNY",
                    status="pending",
                    notify_url=notify_url,
                    data={
                        "appid": data["appid"],
                        "mchid": mchid,
                        "plan_id": plan_id,
                        "out_contract_code": data["out_contract_code"],
                        "contract_display_account": display,
                        "return_url": data.get("return_url") or None,
                    },
                    refunds=[],
                )
            )
        base = settings.public_base_url.rstrip("/")
        return _answer(
            settings,
            200,
            {
                "pre_entrustweb_id": pre_entrustweb_id,
                "redirect_url": f"{base}{PREFIX}/papay/entrust/{pre_entrustweb_id}",
            },
        )
    except WeChatError as error:
        return _refusal(settings, error)


@router.post("/v3/papay/pay/transactions/apply")
def papay_apply(request: Request, body: RawBody) -> Response:
    """Anyone, in sandbox mode (WeChat checks the merchant's signature): charge under a signed contract; settled at once (PAYERROR NOTENOUGH when the payer signed "with no balance"), learnt by query."""
    settings = _settings(request)
    try:
        mchid = _authenticate(request, body)
        data = _json(body)
        if data.get("appid") != settings.wechat_appid:
            raise WeChatError(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        out_trade_no = data.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
            raise WeChatError(
                400, "PARAM_ERROR", "out_trade_no 只能是数字、大小写字母_-*，长度6-32"
            )
        description = data.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 127:
            raise WeChatError(400, "PARAM_ERROR", "description 长度应为1-127")
        amount = data.get("amount") or {}
        total = _fen(amount.get("total"), "amount.total")
        if amount.get("currency", "CNY") != "CNY":
            raise WeChatError(400, "PARAM_ERROR", "境内商户号仅支持人民币 CNY")
        with store_sessions(request).begin() as session:
            contract = _contract(session, str(data.get("contract_id") or ""))
            if contract is None or contract.data.get("appid") != data["appid"]:
                raise WeChatError(400, "CONTRACT_NOT_EXIST", "委托代扣协议不存在或已解约")
            if _find(session, out_trade_no) is not None:
                return _answer(settings, 204)  # the same charge again: already accepted
            now = clock.now()
            declined = bool(contract.data.get("decline"))
            p = SimPayment(
                provider=PROVIDER,
                reference="wx" + now.astimezone(CHINA).strftime("%Y%m%d%H%M%S") + _nonce(22),
                merchant_reference=out_trade_no,
                amount=total,
                currency="CNY",
                status="failed" if declined else "succeeded",
                notify_url=data.get("transaction_notify_url") or None,
                data={
                    "appid": data["appid"],
                    "mchid": mchid,
                    "description": description,
                    "trade_type": "PAP",
                    "time_expire": _rfc3339(now + timedelta(hours=2)),
                    "contract_id": contract.data["contract_id"],
                    "trade_state_desc": "余额不足 NOTENOUGH" if declined else "支付成功",
                    "transaction_id": "4200"
                    + "".join(secrets.choice(string.digits) for _ in range(24)),
                    "openid": contract.data.get("openid") or "o" + _nonce(27),
                    "notify_id": str(uuid.uuid4()),
                },
                refunds=[],
                created_at=now,
                settled_at=now,
            )
            session.add(p)
        return _answer(settings, 204)
    except WeChatError as error:
        return _refusal(settings, error)


CONTRACT_PAGE = """<!doctype html>
<html lang="zh-Hans"><head><meta charset="utf-8"><title>微信支付 · 委托代扣签约（沙箱）</title></head>
<body><main><h1>微信支付 委托代扣</h1>
<p>{display}：{state}</p>
{form}
</main></body></html>"""


def _contract_view(settings: Settings, c: SimPayment) -> dict[str, Any]:
    """The PAPAY.SIGN resource WeChat encrypts into the signing notification."""
    return {
        "mchid": c.data["mchid"],
        "appid": c.data["appid"],
        "plan_id": c.data["plan_id"],
        "out_contract_code": c.data["out_contract_code"],
        "out_user_code": c.merchant_reference,
        "openid": c.data["openid"],
        "contract_id": c.data["contract_id"],
        "contract_display_account": c.data["contract_display_account"],
        "contract_state": "SIGNED",
        "contract_signed_time": _rfc3339(c.settled_at or clock.now()),
    }


@router.get("/papay/entrust/{pre_entrustweb_id}", response_class=HTMLResponse)
async def contract_page(pre_entrustweb_id: str, request: Request) -> Response:
    """Anyone, in sandbox mode: WeChat's page where the payer signs a 委托代扣 contract."""
    with store_sessions(request)() as session:
        c = session.get(SimPayment, (CONTRACTS, pre_entrustweb_id))
        if c is None:
            return HTMLResponse("<!doctype html><title>签约链接无效</title>", status_code=404)
        state = {"pending": "待签约", "succeeded": "已签约", "failed": "已取消"}[c.status]
        display = c.data["contract_display_account"]
    form = ""
    if state == "待签约":
        buttons = "".join(
            f'<button name="choice" value="{value}">{label}</button>'
            for value, label in zip(
                SIGN_CHOICES,
                ("同意并签约", "同意并签约（余额不足：扣款将失败）", "取消"),
                strict=True,
            )
        )
        form = f'<form method="post" action="{PREFIX}/papay/entrust/{pre_entrustweb_id}/sign">{buttons}</form>'
    return HTMLResponse(CONTRACT_PAGE.format(display=display, state=state, form=form))


@router.post("/papay/entrust/{pre_entrustweb_id}/sign")
async def sign_contract(
    pre_entrustweb_id: str,
    request: Request,
    choice: Annotated[Literal["agree", "agree_no_balance", "cancel"], Form()] = "agree",
) -> Response:
    """Anyone, in sandbox mode: the payer signs (or cancels); WeChat notifies tongka (PAPAY.SIGN, signed and encrypted) and returns the payer."""
    settings = _settings(request)
    with store_sessions(request).begin() as session:
        c = session.get(SimPayment, (CONTRACTS, pre_entrustweb_id))
        if c is None:
            return HTMLResponse("<!doctype html><title>签约链接无效</title>", status_code=404)
        if c.status == "pending":
            if choice == "cancel":
                c.status = "failed"  # WeChat notifies nothing of a signing given up
            else:
                c.status, c.settled_at = "succeeded", clock.now()
                c.data = {
                    **c.data,
                    "contract_id": "2020"
                    + "".join(secrets.choice(string.digits) for _ in range(16)),
                    "openid": "o" + _nonce(27),
                    "notify_id": str(uuid.uuid4()),
                    "decline": choice == "agree_no_balance",
                }
        signed = c.status == "succeeded"
        resource = _contract_view(settings, c) if signed else None
        url, return_url, notify_id = c.notify_url, c.data.get("return_url"), c.data.get("notify_id")
    if resource is not None and url:
        body, headers = notification(
            settings, str(notify_id), "PAPAY.SIGN", "签约成功", "papay", resource
        )
        await deliver(request, url, body, headers)
    if signed and return_url:
        return RedirectResponse(return_url, status_code=303)
    return RedirectResponse(f"{PREFIX}/papay/entrust/{pre_entrustweb_id}", status_code=303)
