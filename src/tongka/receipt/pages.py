"""Receipt pages: the printable receipt, the public verification page its QR code opens, the public key.

Who may call: anyone. The printable page is reached by the receipt's random UUID, an
unguessable link (as a provider's receipt link is); the verification page shows only
what the link itself carries, after checking its signature, and reads no database.
"""

from __future__ import annotations

import uuid
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from tongka import web
from tongka.config import Settings
from tongka.deps import SessionDep, SettingsDep
from tongka.i18n import _, gettext
from tongka.money import Money, format_bytes
from tongka.promotion import pricing
from tongka.receipt import service

router = APIRouter(tags=["receipts"])

LABELS = {
    "receipt": _("Receipt"),
    "number": _("Receipt number"),
    "issued": _("Issued"),
    "issuer": _("Issued by"),
    "store": _("Store"),
    "staff": _("Staff"),
    "lines": _("Line"),
    "pack": _("Pack"),
    "data": _("Data"),
    "validity": _("Valid for"),
    "list_price": _("List price"),
    "exchange_rate": _("Exchange rate"),
    "subtotal": _("After offers"),
    "paid": _("Amount paid"),
    "method": _("Payment method"),
    "provider": _("Payment provider"),
    "reference": _("Provider reference"),
    "channel": _("Channel"),
    "order": _("Order"),
    "scan": _("Scan to check that this receipt is genuine."),
    "check": _("Check this receipt"),
    "public_key": _("Public key"),
    "official": _("Is this official? Check a number or link"),
    "signature": _("Signature"),
    "print": _("Print"),
    "genuine": _("Genuine receipt"),
    "genuine_note": _("Signed by tongka: what follows is exactly what was issued."),
    "not_genuine": _("NOT a genuine tongka receipt — it was altered or not issued by tongka"),
    "not_genuine_note": _("Do not accept it as proof of payment."),
    "missing": _("No such receipt."),
}
ONLINE = _("tongka online")
DAYS = _("{days} days")


def _labels(language: str) -> dict[str, str]:
    return {key: gettext(text, language) for key, text in LABELS.items()}


def rows(content: dict[str, Any], language: str) -> list[tuple[str, str]]:
    """What a receipt says, as (label, value) lines for people, in a language."""
    t = _labels(language)
    price, pack, payment = content["price"], content["pack"], content["payment"]

    def money(part: dict[str, Any]) -> str:
        return Money(part["amount"], part["currency"]).format(language)

    issuer = content["issuer"]
    out = [
        (t["number"], content["number"]),
        (t["issued"], content["issued_at"].replace("T", " ").replace("Z", " UTC")),
        (t["issuer"], gettext(ONLINE, language) if issuer == service.ONLINE else issuer.upper()),
    ]
    out += [(t[key], content[key]) for key in ("store", "staff") if content.get(key)]
    out += [
        (t["lines"], " / ".join(content["lines"])),
        (
            t["pack"],
            f"{pack['names'].get(language) or pack['names'].get('en') or pack['code']} ({pack['code']})",
        ),
        (t["data"], format_bytes(pack["volume_bytes"])),
        (t["validity"], gettext(DAYS, language, days=pack["validity_days"])),
        (t["list_price"], money(price["list"])),
    ]
    for entry in price.get("offers", []):  # version 1 receipts have none
        name = pricing.offer_name(entry, language)
        if entry["amount"]:
            out.append(
                (name, "−" + money({"amount": entry["amount"], "currency": entry["currency"]}))
            )
        if bonus := entry.get("bonus"):
            out.append((name, pricing.bonus_text(bonus, language)))
    if any(e["amount"] for e in price.get("offers", [])) and price.get("exchange_rate"):
        out.append((t["subtotal"], money(price["subtotal"])))
    if fx := price.get("exchange_rate"):
        out.append((t["exchange_rate"], f"1 {fx['base']} = {fx['rate']} {fx['quote']}"))
    method = payment["method"]
    channel = content["channel"]
    out += [
        (t["paid"], money(price["paid"])),
        (t["method"], gettext(service.METHOD_NAMES.get(method, method), language)),
        (t["provider"], payment["provider"]),
        (t["reference"], payment["reference"]),
        (t["channel"], gettext(service.CHANNEL_NAMES.get(channel, channel), language)),
        (t["order"], content["order_id"]),
    ]
    return out


def _signing_key(settings: Settings) -> str:
    if settings.receipt_key is None:
        raise service.ReceiptSigningOff()
    return settings.receipt_key


@router.get("/receipts/public-key", response_class=PlainTextResponse)
def public_key(settings: SettingsDep) -> Response:
    """Anyone: the Ed25519 public key (PEM) that checks a receipt's signature, offline too."""
    pem = service.public_key_pem(_signing_key(settings))
    headers = {"Cache-Control": "public, max-age=3600"}
    return PlainTextResponse(pem, media_type="application/x-pem-file", headers=headers)


@router.get("/receipts/verify", response_class=HTMLResponse)
def verify_page(
    request: Request, visitor: web.VisitorDep, settings: SettingsDep, c: str = "", s: str = ""
) -> Response:
    """Anyone, from a receipt's QR code: whether the receipt is genuine and unaltered, and what it says."""
    language = visitor.language
    content = service.check(c, s, _signing_key(settings))
    genuine = content is not None
    try:
        shown = rows(content, language) if content is not None else []
    except (
        KeyError,
        TypeError,
        ValueError,
    ):  # signed by us but not a receipt we can show: say so, never a 500
        genuine, shown = False, []
    return web.page(
        request,
        visitor,
        "receipt/verify.html",
        {"t": _labels(language), "genuine": genuine, "rows": shown},
    )


@router.get("/receipts/{receipt_id}", response_class=HTMLResponse)
def receipt_page(
    receipt_id: str,
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Anyone holding its link (the receipt's random id): the printable receipt with its QR code."""
    language = visitor.language
    t = _labels(language)
    try:
        receipt = service.by_id(session, uuid.UUID(receipt_id))
    except (ValueError, service.ReceiptNotFound):
        return web.page(request, visitor, "receipt/missing.html", {"t": t}, status_code=404)
    url = service.verify_url(settings.public_base_url, receipt)
    qr = segno.make(url, error="m")
    response = web.page(
        request,
        visitor,
        "receipt/receipt.html",
        {
            "t": t,
            "number": receipt.number,
            "rows": rows(receipt.content, language),
            "qr_svg": qr.svg_inline(border=4, omitsize=True, title=t["scan"]),
            "verify_url": url,
            "signature": receipt.signature,
        },
    )
    response.headers["X-Robots-Tag"] = "noindex"  # a receipt's link is for its holder only
    return response
