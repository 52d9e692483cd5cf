"""Alipay's side in sandbox mode: its gateway, its cashier pages and its signed notifications.

`/gateway.do` takes what the real gateway takes (common parameters in the query or the
form, `biz_content` JSON, RSA2 `sign` by the app's key, checked against the app's public
key as registered with Alipay) and answers as it does: `{"<method>_response": {...},
"sign": ...}` signed with Alipay's key, or an unsigned `code` 40001/40002 refusal for a
request it cannot trust. Methods: alipay.trade.precreate, page.pay and wap.pay (the browser is sent to
the cashier), query, close, refund and fastpay.refund.query; alipay.user.agreement.page.sign
(the browser is sent to the signing page) and alipay.trade.pay under a signed agreement
(GENERAL_WITHHOLDING: paid at once, or declined when the payer signed "with no balance").

The payer's pages: `/qr/<trade_no>` (what the QR code opens in the Alipay app) and
`/cashier/<trade_no>` (the web cashier); both pay through `/cashier/<trade_no>/pay`.
`/agreement/<agreement_no>` is the signing page of a password-free agreement; signing sends
the signed dut_user_sign notification and returns the payer with the same parameters.
A payment's notification goes to the notify URL the trade was made with, as soon as the
payer acts; a refund's goes out after the refund call has been answered, as Alipay's do,
since the caller may still hold its transaction open.

Who may call: anyone, and only when the sandbox is on; trade numbers are random.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import segno
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.config import Settings
from tongka.money import EXPONENT
from tongka.payment.providers.alipay import (
    BEIJING,
    SUCCESS,
    TIME_FORMAT,
    beijing_now,
    from_yuan,
    notify_content,
    private_key,
    public_key,
    request_content,
    rsa2_sign,
    rsa2_verify,
    to_yuan,
)
from tongka.sandbox.delivery import deliver, deliver_later
from tongka.sandbox.store import SimPayment, price, store_sessions
from tongka.templating import templates

log = structlog.get_logger()

router = APIRouter()

PROVIDER = "alipay"
AGREEMENTS = "alipay_agreement"  # the simulator's agreements, kept beside its trades
SELLER_ID = "2088102177846880"  # the merchant's Alipay user id, as notifications carry it
BUYER = {"buyer_id": "2088102177296610", "buyer_logon_id": "tes***@sandbox.com"}
TIMESTAMP_TOLERANCE_SECONDS = 15 * 60
FORM = "application/x-www-form-urlencoded; charset=utf-8"


class Refusal(Exception):
    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        msg = {
            "20000": "Service Currently Unavailable",
            "40001": "Missing Required Arguments",
            "40002": "Invalid Arguments",
            "40004": "Business Failed",
        }[code]
        self.body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _business(sub_code: str, sub_msg: str) -> Refusal:
    return Refusal("40004", sub_code, sub_msg)


# --- reading and checking a request --------------------------------------------------------


async def _params(request: Request) -> dict[str, str]:
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        pairs += parse_qsl(
            (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
        )
    params = dict(pairs)
    if len(params) != len(pairs):
        raise Refusal("40002", "isv.invalid-parameter", "参数重复")
    return params


def _check(settings: Settings, params: dict[str, str]) -> dict[str, Any]:
    """The gateway's checks, in its order; the request's biz_content when they pass."""
    if not (
        settings.alipay_app_id
        and settings.sandbox_alipay_app_public_key
        and settings.sandbox_alipay_private_key
    ):
        raise Refusal("20000", "aop.unknow-error", "系统繁忙")
    for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version", "charset"):
        if not params.get(name):
            raise Refusal("40001", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
    if params["app_id"] != settings.alipay_app_id:
        raise Refusal("40002", "isv.invalid-app-id", "无效的AppID参数")
    if params["sign_type"] != "RSA2":
        raise Refusal("40002", "isv.invalid-signature-type", "无效的签名类型")
    if params["charset"].lower() != "utf-8":
        raise Refusal("40002", "isv.invalid-charset", "字符集错误")
    try:
        sent = datetime.strptime(params["timestamp"], TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        raise Refusal("40002", "isv.invalid-timestamp", "非法的时间戳参数") from None
    if abs((clock.now() - sent).total_seconds()) > TIMESTAMP_TOLERANCE_SECONDS:
        raise Refusal("40002", "isv.invalid-timestamp", "非法的时间戳参数")
    if not rsa2_verify(
        public_key(settings.sandbox_alipay_app_public_key), request_content(params), params["sign"]
    ):
        raise Refusal(
            "40002",
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        )
    try:
        biz = json.loads(params.get("biz_content") or "{}")
    except ValueError:
        biz = None
    if not isinstance(biz, dict):
        raise Refusal("40002", "isv.invalid-parameter", "biz_content 不是 JSON 对象")
    return biz


def _answer(settings: Settings, method: str, body: dict[str, Any], signed: bool = True) -> Response:
    """The gateway's JSON, its `sign` over the exact text of the `<method>_response` value."""
    key = f"{method.replace('.', '_')}_response" if method else "error_response"
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    text = f'{{"{key}":{content}'
    if signed:
        text += f',"sign":"{rsa2_sign(_alipay_key(settings), content)}"'
    return Response(text + "}", media_type="application/json;charset=utf-8")


def _alipay_key(settings: Settings) -> rsa.RSAPrivateKey:
    assert settings.sandbox_alipay_private_key is not None
    return private_key(settings.sandbox_alipay_private_key.get_secret_value())


# --- trades ------------------------------------------------------------------------------


def _find(session: Session, biz: dict[str, Any]) -> SimPayment:
    query = select(SimPayment).where(SimPayment.provider == PROVIDER)
    if biz.get("trade_no"):
        query = query.where(SimPayment.reference == str(biz["trade_no"]))
    elif biz.get("out_trade_no"):
        query = query.where(SimPayment.merchant_reference == str(biz["out_trade_no"]))
    else:
        raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
    sim = session.scalars(query).first()
    if sim is None:
        raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return sim


def _amount(text: Any, currency: str) -> int:
    try:
        return from_yuan(str(text), currency)
    except (ValueError, KeyError):
        raise _business("ACQ.INVALID_PARAMETER", "金额格式错误") from None


def _create(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any], product: str
) -> SimPayment:
    """Make the trade, or find the one with this out_trade_no (Alipay accepts an identical repeat)."""
    out_trade_no, subject = str(biz.get("out_trade_no") or ""), str(biz.get("subject") or "")
    currency = str(biz.get("trans_currency") or "CNY")
    if not out_trade_no or not subject or currency not in EXPONENT:
        raise _business("ACQ.INVALID_PARAMETER", "参数无效")
    amount = _amount(biz.get("total_amount"), currency)
    if amount <= 0:
        raise _business("ACQ.INVALID_PARAMETER", "金额必须大于0")
    sim = session.scalars(
        select(SimPayment).where(
            SimPayment.provider == PROVIDER, SimPayment.merchant_reference == out_trade_no
        )
    ).first()
    if sim is not None:
        if (sim.amount, sim.currency) != (amount, currency):
            raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        if sim.status == "succeeded":
            raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if sim.status != "pending":
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if params.get("return_url"):  # the payer came through the web cashier: send them back there
            sim.data = {**sim.data, "return_url": params["return_url"]}
        return sim
    trade_no = (
        clock.now().astimezone(BEIJING).strftime("%Y%m%d")
        + "22001"
        + "".join(secrets.choice("0123456789") for _ in range(15))
    )
    base = settings.public_base_url.rstrip("/")
    sim = SimPayment(
        provider=PROVIDER,
        reference=trade_no,
        merchant_reference=out_trade_no,
        amount=amount,
        currency=currency,
        status="pending",
        notify_url=params.get("notify_url") or None,
        data={
            "subject": subject,
            "product_code": product,
            "trade_status": "WAIT_BUYER_PAY",
            "gmt_create": beijing_now(),
            "qr_code": f"{base}/sandbox/alipay/qr/{trade_no}",
            "return_url": params.get("return_url") or None,
        },
        refunded=0,
        refunds=[],
    )
    session.add(sim)
    session.flush()
    return sim


def _currency_fields(sim: SimPayment) -> dict[str, str]:
    if sim.currency == "CNY":
        return {}
    return {"trans_currency": sim.currency, "settle_currency": sim.currency}


def _precreate(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    sim = _create(session, settings, params, biz, "FACE_TO_FACE_PAYMENT")
    return {
        "code": SUCCESS,
        "msg": "Success",
        "out_trade_no": sim.merchant_reference,
        "qr_code": sim.data["qr_code"],
    }


def _query(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    sim = _find(session, biz)
    body: dict[str, Any] = {
        "code": SUCCESS,
        "msg": "Success",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
        "trade_status": sim.data["trade_status"],
        "total_amount": to_yuan(sim.amount, sim.currency),
        **_currency_fields(sim),
    }
    if sim.data.get("gmt_payment"):
        paid = to_yuan(sim.amount, sim.currency)
        body |= {
            "send_pay_date": sim.data["gmt_payment"],
            "buyer_pay_amount": paid,
            "receipt_amount": paid,
            "buyer_logon_id": BUYER["buyer_logon_id"],
            "buyer_user_id": BUYER["buyer_id"],
        }
    return body


def _close(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    sim = _find(session, biz)
    if sim.data["trade_status"] != "WAIT_BUYER_PAY":
        raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    sim.status = "closed"
    sim.data = {**sim.data, "trade_status": "TRADE_CLOSED", "gmt_close": beijing_now()}
    return {
        "code": SUCCESS,
        "msg": "Success",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
    }


def _refund(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    sim = _find(session, biz)
    if biz.get("refund_currency") and biz["refund_currency"] != sim.currency:
        raise _business("ACQ.INVALID_PARAMETER", "退款币种与交易币种不一致")
    amount = _amount(biz.get("refund_amount"), sim.currency)
    request_no = str(biz.get("out_request_no") or sim.merchant_reference)
    answer = {
        "code": SUCCESS,
        "msg": "Success",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
        "buyer_logon_id": BUYER["buyer_logon_id"],
        "buyer_user_id": BUYER["buyer_id"],
    }
    earlier = next((r for r in sim.refunds if r["out_request_no"] == request_no), None)
    if earlier is not None:  # the same out_request_no again: the same refund, no money moves
        if earlier["amount"] != amount:
            raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        return answer | {
            "fund_change": "N",
            "refund_fee": to_yuan(sim.refunded, sim.currency),
            "send_back_fee": "0.00",
            "gmt_refund_pay": earlier["gmt_refund"],
        }
    if sim.status != "succeeded":
        raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    if amount <= 0 or amount > sim.amount - sim.refunded:
        raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
    now = beijing_now()
    sim.refunded += amount
    sim.refunds = [
        *sim.refunds,
        {
            "out_request_no": request_no,
            "amount": amount,
            "gmt_refund": now,
            "reason": str(biz.get("refund_reason") or ""),
        },
    ]
    if sim.refunded == sim.amount:
        sim.data = {**sim.data, "trade_status": "TRADE_CLOSED", "gmt_close": now}
    return answer | {
        "fund_change": "Y",
        "refund_fee": to_yuan(sim.refunded, sim.currency),
        "send_back_fee": to_yuan(amount, sim.currency),
        "gmt_refund_pay": now,
        "_notify_refund": request_no,
    }


def _refund_query(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    sim = _find(session, biz)
    request_no = str(biz.get("out_request_no") or sim.merchant_reference)
    body: dict[str, Any] = {
        "code": SUCCESS,
        "msg": "Success",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
        "out_request_no": request_no,
    }
    refund = next((r for r in sim.refunds if r["out_request_no"] == request_no), None)
    if (
        refund is not None
    ):  # an unknown out_request_no answers success with no refund in it, as Alipay does
        body |= {
            "total_amount": to_yuan(sim.amount, sim.currency),
            "refund_amount": to_yuan(refund["amount"], sim.currency),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": refund["gmt_refund"],
        }
    return body


def _agreement(session: Session, agreement_no: str) -> SimPayment | None:
    return session.get(SimPayment, (AGREEMENTS, agreement_no))


def _trade_pay(
    session: Session, settings: Settings, params: dict[str, str], biz: dict[str, Any]
) -> dict[str, Any]:
    """alipay.trade.pay under an agreement (GENERAL_WITHHOLDING): paid now, nobody asked."""
    if biz.get("product_code") != "GENERAL_WITHHOLDING":
        raise _business("ACQ.INVALID_PARAMETER", "仅支持商家扣款 GENERAL_WITHHOLDING")
    agreement_params = biz.get("agreement_params")
    number = agreement_params.get("agreement_no") if isinstance(agreement_params, dict) else None
    agreement = _agreement(session, str(number or ""))
    if agreement is None or agreement.status != "succeeded":
        raise _business("ACQ.AGREEMENT_NOT_EXIST", "用户协议不存在")
    sim = _create(session, settings, params, biz, "GENERAL_WITHHOLDING")
    if agreement.data.get("decline"):
        raise _business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
    now = beijing_now()
    sim.status, sim.settled_at = "succeeded", clock.now()
    sim.data = {**sim.data, "trade_status": "TRADE_SUCCESS", "gmt_payment": now}
    return {
        "code": SUCCESS,
        "msg": "Success",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
        "total_amount": to_yuan(sim.amount, sim.currency),
        "gmt_payment": now,
        **BUYER,
        **_currency_fields(sim),
    }


METHODS = {
    "alipay.trade.pay": _trade_pay,
    "alipay.trade.precreate": _precreate,
    "alipay.trade.query": _query,
    "alipay.trade.close": _close,
    "alipay.trade.refund": _refund,
    "alipay.trade.fastpay.refund.query": _refund_query,
}


# --- notifications -------------------------------------------------------------------------


def _notification(
    settings: Settings, sim: SimPayment, refund: dict[str, Any] | None = None
) -> bytes:
    data = sim.data
    params = {
        "notify_time": beijing_now(),
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16),
        "app_id": settings.alipay_app_id or "",
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": sim.reference,
        "out_trade_no": sim.merchant_reference,
        "seller_id": SELLER_ID,
        "trade_status": data["trade_status"],
        "total_amount": to_yuan(sim.amount, sim.currency),
        "subject": data["subject"],
        "gmt_create": data["gmt_create"],
        **_currency_fields(sim),
    }
    if data.get("gmt_payment"):
        paid = to_yuan(sim.amount, sim.currency)
        params |= {
            **BUYER,
            "gmt_payment": data["gmt_payment"],
            "receipt_amount": paid,
            "buyer_pay_amount": paid,
            "invoice_amount": paid,
            "point_amount": "0.00",
            "fund_bill_list": json.dumps(
                [{"amount": paid, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            ),
        }
    if data.get("gmt_close"):
        params["gmt_close"] = data["gmt_close"]
    if refund is not None:
        params |= {
            "out_biz_no": refund["out_request_no"],
            "refund_fee": to_yuan(sim.refunded, sim.currency),
            "gmt_refund": refund["gmt_refund"],
        }
    params["sign_type"] = "RSA2"
    params["sign"] = rsa2_sign(_alipay_key(settings), notify_content(params))
    return urlencode(params).encode()


def _refund_later(request: Request, url: str, body: bytes) -> None:
    # Alipay retries until it hears "success" (over hours; here, seconds).
    deliver_later(request, url, body, {"content-type": FORM})


async def complete(request: Request, payment: SimPayment, outcome: str) -> int:
    """The payer pays ("succeeded") or cancels ("failed"); sends the signed notification.

    A trade already settled keeps its state and its notification is sent again, as
    Alipay's retries are. Returns tongka's HTTP status (0 if the trade has no notify URL).
    """
    settings: Settings = request.app.state.settings
    with store_sessions(request).begin() as session:
        sim = session.get(SimPayment, (PROVIDER, payment.reference))
        if sim is None:
            raise ValueError(f"no Alipay trade {payment.reference}")
        if sim.status == "pending":
            now = beijing_now()
            if outcome == "succeeded":
                sim.status, sim.settled_at = "succeeded", clock.now()
                sim.data = {**sim.data, "trade_status": "TRADE_SUCCESS", "gmt_payment": now}
            else:  # the payer gave up: the trade closes unpaid
                sim.status = "failed"
                sim.data = {**sim.data, "trade_status": "TRADE_CLOSED", "gmt_close": now}
        url, body = sim.notify_url, _notification(settings, sim)
    if not url:
        return 0
    return await deliver(request, url, body, {"content-type": FORM})


# --- routes --------------------------------------------------------------------------------


# What a browser brings to the gateway: the computer's web cashier, or the phone's (mobile web).
PAGE_PRODUCTS = {
    "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY",
    "alipay.trade.wap.pay": "QUICK_WAP_WAY",
}


@router.post("/gateway.do")
async def gateway(request: Request) -> Response:
    """Anyone, in sandbox mode: Alipay's open platform gateway, signed requests in, signed answers out."""
    return await _gateway(request)


@router.get("/gateway.do", response_class=HTMLResponse)
async def gateway_page(request: Request) -> Response:
    """Anyone, in sandbox mode: the gateway as a browser reaches it, with a signed alipay.trade.page.pay or wap.pay."""
    return await _gateway(request)


async def _gateway(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    method = request.query_params.get("method", "")
    try:
        params = await _params(request)
        method = params.get("method", "")
        if method in PAGE_PRODUCTS:
            return _page_pay(request, settings, params)
        if method == SIGN_METHOD:
            return _agreement_start(request, settings, params)
        biz = _check(settings, params)
    except Refusal as refusal:  # the gateway could not trust the request: unsigned
        return _answer(settings, method, refusal.body, signed=False)
    handler = METHODS.get(method)
    if handler is None:
        return _answer(
            settings,
            "",
            Refusal("40002", "isv.invalid-method", "不存在的方法名").body,
            signed=False,
        )
    notify: tuple[str, bytes] | None = None
    try:
        with store_sessions(request).begin() as session:
            body = handler(session, settings, params, biz)
            refund_no = body.pop("_notify_refund", None)
            if refund_no is not None:
                sim = _find(session, biz)
                if sim.notify_url:
                    refund = next(r for r in sim.refunds if r["out_request_no"] == refund_no)
                    notify = (sim.notify_url, _notification(settings, sim, refund))
    except Refusal as refusal:
        body = refusal.body
    if notify is not None:
        _refund_later(request, *notify)
    return _answer(settings, method, body)


def _page_pay(request: Request, settings: Settings, params: dict[str, str]) -> Response:
    """alipay.trade.page.pay or wap.pay: the browser arrives with the signed request; on to the cashier."""
    try:
        biz = _check(settings, params)
        with store_sessions(request).begin() as session:
            sim = _create(session, settings, params, biz, PAGE_PRODUCTS[params["method"]])
            trade_no = sim.reference
    except Refusal as refusal:
        return _page(request, None, error=refusal.body, status_code=400)
    return RedirectResponse(f"/sandbox/alipay/cashier/{trade_no}", status_code=303)


def _page(
    request: Request,
    sim: SimPayment | None,
    *,
    scan: bool = False,
    error: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context: dict[str, Any] = {"lang": "zh-Hans", "error": error, "scan": scan}
    if sim is not None:
        context |= {
            "trade_no": sim.reference,
            "out_trade_no": sim.merchant_reference,
            "subject": sim.data["subject"],
            "price": price(sim.amount, sim.currency, "zh-Hans"),
            "trade_status": sim.data["trade_status"],
            "paid": bool(sim.data.get("gmt_payment")),
            "refunded": price(sim.refunded, sim.currency, "zh-Hans") if sim.refunded else None,
            "qr_svg": None
            if scan
            else segno.make(sim.data["qr_code"], error="m").svg_inline(border=4, omitsize=True),
        }
    return templates.TemplateResponse(
        request, "sandbox/alipay_cashier.html", context, status_code=status_code
    )


def _load(request: Request, trade_no: str) -> SimPayment | None:
    with store_sessions(request)() as session:
        return session.get(SimPayment, (PROVIDER, trade_no))


@router.get("/cashier/{trade_no}", response_class=HTMLResponse)
async def cashier(trade_no: str, request: Request) -> Response:
    """Anyone, in sandbox mode: Alipay's web cashier for one trade, as the payer sees it."""
    sim = _load(request, trade_no)
    if sim is None:
        return _page(
            request,
            None,
            error=_business("ACQ.TRADE_NOT_EXIST", "交易不存在").body,
            status_code=404,
        )
    return _page(request, sim)


@router.get("/qr/{trade_no}", response_class=HTMLResponse)
async def scanned(trade_no: str, request: Request) -> Response:
    """Anyone, in sandbox mode: what the Alipay app shows when the trade's QR code is scanned."""
    sim = _load(request, trade_no)
    if sim is None:
        return _page(
            request,
            None,
            error=_business("ACQ.TRADE_NOT_EXIST", "交易不存在").body,
            status_code=404,
        )
    return _page(request, sim, scan=True)


@router.post("/cashier/{trade_no}/pay")
async def pay(
    trade_no: str,
    request: Request,
    outcome: Annotated[Literal["succeeded", "failed"], Form()] = "succeeded",
) -> Response:
    """Anyone, in sandbox mode: the payer confirms ("succeeded") or cancels ("failed"); Alipay notifies tongka."""
    sim = _load(request, trade_no)
    if sim is None:
        return _page(
            request,
            None,
            error=_business("ACQ.TRADE_NOT_EXIST", "交易不存在").body,
            status_code=404,
        )
    if sim.status == "closed":
        return _page(
            request,
            sim,
            error=_business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭").body,
            status_code=409,
        )
    await complete(request, sim, outcome)
    sim = _load(request, trade_no)
    assert sim is not None
    return_url = sim.data.get("return_url")
    if sim.status == "succeeded" and return_url:
        return RedirectResponse(
            _return_url(request.app.state.settings, sim, return_url), status_code=303
        )
    return RedirectResponse(f"/sandbox/alipay/cashier/{trade_no}", status_code=303)


def _return_url(settings: Settings, sim: SimPayment, url: str) -> str:
    """The payer's way back after page.pay, with Alipay's signed synchronous return parameters."""
    params = {
        "charset": "utf-8",
        "out_trade_no": sim.merchant_reference,
        "method": "alipay.trade.page.pay.return",
        "total_amount": to_yuan(sim.amount, sim.currency),
        "trade_no": sim.reference,
        "auth_app_id": settings.alipay_app_id or "",
        "app_id": settings.alipay_app_id or "",
        "version": "1.0",
        "seller_id": SELLER_ID,
        "timestamp": beijing_now(),
    }
    params |= {
        "sign_type": "RSA2",
        "sign": rsa2_sign(_alipay_key(settings), notify_content(params)),
    }
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))


# --- password-free agreements ------------------------------------------------------------

SIGN_METHOD = "alipay.user.agreement.page.sign"
SIGN_CHOICES = ("agree", "agree_no_balance", "cancel")


def _agreement_start(request: Request, settings: Settings, params: dict[str, str]) -> Response:
    """alipay.user.agreement.page.sign: the browser arrives with the signed request; on to signing."""
    try:
        biz = _check(settings, params)
        reference = str(biz.get("external_agreement_no") or "")
        if biz.get("personal_product_code") != "GENERAL_WITHHOLDING_P" or not reference:
            raise _business("INVALID_PARAMETER", "参数无效")
    except Refusal as refusal:
        return _page(request, None, error=refusal.body, status_code=400)
    agreement_no = (
        clock.now().astimezone(BEIJING).strftime("%Y%m%d")
        + "60"
        + "".join(secrets.choice("0123456789") for _ in range(10))
    )
    with store_sessions(request).begin() as session:
        session.add(
            SimPayment(
                provider=AGREEMENTS,
                reference=agreement_no,
                merchant_reference=reference,
                amount=0,
                currency="CNY",
                status="pending",
                notify_url=params.get("notify_url") or None,
                data={
                    "return_url": params.get("return_url") or None,
                    "sign_scene": str(biz.get("sign_scene") or ""),
                },
                refunded=0,
                refunds=[],
            )
        )
    return RedirectResponse(f"/sandbox/alipay/agreement/{agreement_no}", status_code=303)


def _agreement_params(settings: Settings, sim: SimPayment) -> dict[str, str]:
    """What Alipay tells of a signing (dut_user_sign), signed with its key."""
    params = {
        "notify_type": "dut_user_sign",
        "notify_id": secrets.token_hex(16),
        "notify_time": beijing_now(),
        "app_id": settings.alipay_app_id or "",
        "charset": "utf-8",
        "version": "1.0",
        "agreement_no": sim.reference,
        "external_agreement_no": sim.merchant_reference,
        "status": "NORMAL" if sim.status == "succeeded" else "UNSIGNED",
        "sign_time": sim.data.get("sign_time") or "",
        "personal_product_code": "GENERAL_WITHHOLDING_P",
        "sign_scene": sim.data.get("sign_scene") or "",
        "alipay_user_id": BUYER["buyer_id"],
        "alipay_logon_id": BUYER["buyer_logon_id"],
    }
    params["sign_type"] = "RSA2"
    params["sign"] = rsa2_sign(_alipay_key(settings), notify_content(params))
    return params


AGREEMENT_PAGE = """<!doctype html>
<html lang="zh-Hans"><head><meta charset="utf-8"><title>支付宝 · 签约（沙箱）</title></head>
<body><main><h1>支付宝免密支付（商家扣款）</h1>
<p>协议号 {agreement_no}：{state}</p>
{form}
</main></body></html>"""


@router.get("/agreement/{agreement_no}", response_class=HTMLResponse)
async def agreement_page(agreement_no: str, request: Request) -> Response:
    """Anyone, in sandbox mode: Alipay's page where the payer signs a password-free agreement."""
    with store_sessions(request)() as session:
        sim = _agreement(session, agreement_no)
        if sim is None:
            return HTMLResponse("<!doctype html><title>协议不存在</title>", status_code=404)
        state = {"pending": "待签约", "succeeded": "已签约", "failed": "已取消"}[sim.status]
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
        form = f'<form method="post" action="/sandbox/alipay/agreement/{agreement_no}/sign">{buttons}</form>'
    return HTMLResponse(AGREEMENT_PAGE.format(agreement_no=agreement_no, state=state, form=form))


@router.post("/agreement/{agreement_no}/sign")
async def sign_agreement(
    agreement_no: str,
    request: Request,
    choice: Annotated[Literal["agree", "agree_no_balance", "cancel"], Form()] = "agree",
) -> Response:
    """Anyone, in sandbox mode: the payer signs (or cancels); Alipay notifies tongka and returns the payer."""
    settings: Settings = request.app.state.settings
    with store_sessions(request).begin() as session:
        sim = _agreement(session, agreement_no)
        if sim is None:
            return HTMLResponse("<!doctype html><title>协议不存在</title>", status_code=404)
        if sim.status == "pending":
            if choice == "cancel":
                sim.status = "failed"
            else:
                sim.status, sim.settled_at = "succeeded", clock.now()
                sim.data = {
                    **sim.data,
                    "sign_time": beijing_now(),
                    "decline": choice == "agree_no_balance",
                }
        signed = sim.status == "succeeded"
        params = _agreement_params(settings, sim)
        url, return_url = sim.notify_url, sim.data.get("return_url")
    if signed and url:
        await deliver(request, url, urlencode(params).encode(), {"content-type": FORM})
    if signed and return_url:
        parts = urlsplit(return_url)
        query = "&".join(filter(None, [parts.query, urlencode(params)]))
        return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=303)
    return RedirectResponse(f"/sandbox/alipay/agreement/{agreement_no}", status_code=303)
