"""Receipts: one per succeeded payment, numbered without gaps per issuer, signed with Ed25519.

Numbers are `<PREFIX>-<sequence>`, the sequence zero-padded to 8 digits (it grows past
99,999,999 without breaking uniqueness): `ONL-00000042` for the online issuer, the
store's code upper-cased for a store (`MK01-00000007`). An issuer is `online` or a store
code of 1-20 letters and digits (`onl` is reserved), so the prefix never holds a hyphen
and a number names exactly one (issuer, sequence).

The issuer's `receipt_counters` row is locked (`SELECT ... FOR UPDATE`) while the next
number is taken and held until the transaction commits, so two payments never share a
number and a rolled-back payment leaves no gap. It is the last lock a payment takes
(after account, order, payment), one row per transaction: no lock cycle is possible.
Since every receipt of an issuer queues on it, it is taken at the very end of the
transaction (the renewal flow issues the receipt last) and the routes that confirm
payments commit at once, in the thread that did the work, so it is held for a few
statements rather than until a later thread gets round to the commit.

What is signed is the receipt's content as canonical JSON: sorted keys, separators
`,` and `:`, UTF-8 (not ASCII-escaped), integers and strings only. The bytes are kept
as they were signed (`signed_bytes`); anyone holding the published public key can check
a receipt from its QR code alone, without asking tongka.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account, Line
from tongka.errors import NotFound
from tongka.i18n import _, gettext
from tongka.money import Money
from tongka.notify import service as notify
from tongka.promotion import pricing
from tongka.receipt.models import Receipt, ReceiptCounter

CONTENT_VERSION = (
    2  # 2: the price is the order's breakdown (offers, bonus data, total) plus what was paid
)
ONLINE = "online"
# A store's code, as the stores table spells it ("lo-wu"); its receipts are numbered "LO-WU-00000001".
_STORE_ISSUER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$")


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    message = _("No such receipt.")


class ReceiptSigningOff(NotFound):
    code = "receipt_signing_off"
    message = _("Receipts are not signed on this server.")


METHOD_NAMES = {
    "wechat_pay": _("WeChat Pay"),
    "alipay": _("Alipay"),
    "card": _("Card"),
    "paypal": _("PayPal"),
    # Paid in a phone's browser (the network's signed renewal link): the same wallets to the payer.
    "wechat_pay_h5": _("WeChat Pay"),
    "alipay_wap": _("Alipay"),
    "cash": _("Cash"),
    "card_terminal": _("Card terminal"),
    "qr": _("QR code payment"),
    "wallet": _("Wallet"),
    "saved_card": _("Saved card"),
    "alipay_agreement": _("Alipay (password-free)"),
    "wechat_agreement": _("WeChat Pay (password-free)"),
}
CHANNEL_NAMES = {"app": _("App"), "web": _("Web"), "store": _("Store"), "auto": _("Auto-renew")}

# The confirmation email: templates/messages/receipt/<language>.{subject,txt,html}.
EMAIL = "receipt"
PAID = _("Paid: {price} by {method}")


@dataclass(frozen=True)
class Sale:
    """What a receipt says was sold and paid: plain values, given by the renewal flow."""

    payment_id: uuid.UUID
    order_id: uuid.UUID
    account_id: uuid.UUID
    line_id: uuid.UUID
    channel: str
    pack_code: str
    pack_names: dict[str, str]
    zone: str
    volume_bytes: int
    validity_days: int
    price: dict[str, Any]  # the order's breakdown, as the customer was quoted it
    paid_amount: int
    paid_currency: str
    method: str
    provider: str
    reference: str  # the provider's, or ""


# -- keys and signatures -----------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes | None:
    """Strict unpadded base64url: anything but the one encoding of some bytes is None."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if _b64url(data) == text else None


@lru_cache(maxsize=8)
def private_key(signing_key: str) -> Ed25519PrivateKey:
    """The key from its setting: base64 (standard or URL-safe) of the 32 raw private-key bytes."""
    text = signing_key.strip().replace("-", "+").replace("_", "/")
    raw = base64.b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 32:
        raise ValueError("the receipt signing key must be 32 bytes (base64)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key(signing_key: str) -> Ed25519PublicKey:
    return private_key(signing_key).public_key()


def public_key_pem(signing_key: str) -> str:
    """The public half, as a PEM SubjectPublicKeyInfo that `openssl` and every library read."""
    return (
        public_key(signing_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id(key: Ed25519PublicKey) -> str:
    """The first 8 bytes of SHA-256 of the raw public key, hex: says which published key signed a receipt."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(signing_key: str, data: bytes) -> str:
    return _b64url(private_key(signing_key).sign(data))


def verify(data: bytes, signature: bytes, key: Ed25519PublicKey) -> bool:
    """True exactly when `signature` is the key's Ed25519 signature of `data`."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def check(c: str, s: str, signing_key: str) -> dict[str, Any] | None:
    """The content of a verification link (`c`, `s`: base64url) if genuine and unaltered, else None."""
    data, signature = _unb64url(c), _unb64url(s)
    if data is None or signature is None or not verify(data, signature, public_key(signing_key)):
        return None
    try:
        content = json.loads(data.decode())
    except ValueError:
        return None
    return content if isinstance(content, dict) else None


def verify_url(base_url: str, receipt: Receipt) -> str:
    """What the QR code holds: the public verification page with the signed bytes and the signature."""
    c = _b64url(receipt.signed_bytes.encode())
    return f"{base_url.rstrip('/')}/receipts/verify?c={c}&s={receipt.signature}"


# -- issuing -----------------------------------------------------------------------------


def mask_number(e164: str) -> str:
    """`+852 51**1007`, `+86 138****5678`: enough for the owner to recognise, not to call."""
    try:
        parsed = phonenumbers.parse(e164)
        cc, national = f"+{parsed.country_code}", phonenumbers.national_significant_number(parsed)
    except phonenumbers.NumberParseException:
        cc, national = "", e164.lstrip("+")
    head = 2 if len(national) <= 8 else 3
    if len(national) <= head + 4:
        head = 0
    masked = national[:head] + "*" * (len(national) - head - 4) + national[-4:]
    return f"{cc} {masked}".strip()


def number_for(issuer: str, sequence: int) -> str:
    prefix = "ONL" if issuer == ONLINE else issuer.upper()
    return f"{prefix}-{sequence:08d}"


def _check_issuer(issuer: str) -> None:
    if issuer != ONLINE and (not _STORE_ISSUER.match(issuer) or issuer == "onl"):
        raise ValueError(
            f"a receipt issuer is 'online' or a store code of 1-20 lower-case letters, digits and inner dashes: {issuer!r}"
        )


def _lock_counter(session: Session, issuer: str) -> ReceiptCounter:
    """The issuer's counter row, locked until commit; made on first use, safely against a concurrent first use."""
    for _attempt in range(3):
        counter = session.scalar(
            select(ReceiptCounter)
            .where(ReceiptCounter.issuer == issuer)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if counter is not None:
            return counter
        try:
            with session.begin_nested():
                session.add(ReceiptCounter(issuer=issuer, last_sequence=0))
        except IntegrityError:
            pass  # another transaction made it first (we waited for its commit): lock theirs
    raise RuntimeError(f"could not lock the receipt counter of {issuer}")


def _existing(session: Session, payment_id: uuid.UUID) -> Receipt | None:
    return session.scalar(
        select(Receipt)
        .where(Receipt.payment_id == payment_id)
        .execution_options(populate_existing=True)
    )


def _content(
    number: str,
    issuer: str,
    issued_at: str,
    sale: Sale,
    line: Line | None,
    store: str | None,
    staff: str | None,
    signing_key: str,
) -> dict[str, Any]:
    # The order's own breakdown, exactly as the customer was quoted it, and what was paid.
    price: dict[str, Any] = {
        **sale.price,
        "paid": {"amount": sale.paid_amount, "currency": sale.paid_currency},
    }
    content: dict[str, Any] = {
        "v": CONTENT_VERSION,
        "key_id": key_id(public_key(signing_key)),
        "number": number,
        "issuer": issuer,
        "issued_at": issued_at,
        "order_id": str(sale.order_id),
        "lines": [mask_number(n) for n in (line.numbers if line else [])],
        "pack": {
            "code": sale.pack_code,
            "names": dict(sale.pack_names),
            "zone": sale.zone,
            "volume_bytes": sale.volume_bytes,
            "validity_days": sale.validity_days,
        },
        "price": price,
        "payment": {
            "method": sale.method,
            "provider": sale.provider,
            "reference": sale.reference,
        },
        "channel": sale.channel,
    }
    if store:
        content["store"] = store
    if staff:
        content["staff"] = staff
    return content


def issue(
    session: Session,
    sale: Sale,
    *,
    signing_key: str,
    issuer: str = ONLINE,
    store: str | None = None,
    staff: str | None = None,
) -> Receipt:
    """The receipt of a succeeded payment, made once: a second call returns the first receipt.

    Also queues the confirmation email to the account, in its language. Call it in the
    transaction that confirmed the payment, as its last step: it takes the issuer's
    counter lock, which every receipt of that issuer waits for until this transaction
    commits, so the caller should commit at once. It flushes, never commits.
    """
    _check_issuer(issuer)
    line = session.get(Line, sale.line_id)
    account = session.get(Account, sale.account_id)
    counter = _lock_counter(session, issuer)
    # Looked for under the lock: a concurrent issue of the same receipt has committed by now.
    if (found := _existing(session, sale.payment_id)) is not None:
        return found
    counter.last_sequence += 1
    sequence = counter.last_sequence
    number = number_for(issuer, sequence)
    issued = clock.now().replace(microsecond=0)
    content = _content(
        number,
        issuer,
        issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        sale,
        line,
        store,
        staff,
        signing_key,
    )
    data = canonical(content)
    receipt = Receipt(
        number=number,
        issuer=issuer,
        sequence=sequence,
        payment_id=sale.payment_id,
        order_id=sale.order_id,
        account_id=sale.account_id,
        content=content,
        signed_bytes=data.decode(),
        signature=sign(signing_key, data),
        issued_at=issued,
    )
    session.add(receipt)
    if account is not None:
        _email(session, account, receipt)
    session.flush()
    return receipt


def of_payment(session: Session, payment_id: uuid.UUID) -> Receipt | None:
    """The receipt of a payment, if one was issued."""
    return session.scalar(select(Receipt).where(Receipt.payment_id == payment_id))


def breakdown(content: dict[str, Any], language: str) -> list[str]:
    """The price lines of a receipt's content, in a language: the breakdown's lines, then what was paid."""
    price = content["price"]

    def money(part: dict[str, Any]) -> str:
        return Money(part["amount"], part["currency"]).format(language)

    lines = pricing.describe(price, language)
    method = content["payment"]["method"]
    method_name = gettext(METHOD_NAMES.get(method, method), language)
    lines.append(gettext(PAID, language, price=money(price["paid"]), method=method_name))
    return lines


def _email(session: Session, account: Account, receipt: Receipt) -> None:
    content, language = receipt.content, account.language
    pack = content["pack"]
    notify.send_email(
        session,
        to=account.email,
        template=EMAIL,
        language=language,
        account_id=account.id,
        number=receipt.number,
        volume=pack["volume_bytes"],
        lines=content["lines"],
        pack=pack["names"].get(language) or pack["names"].get("en") or pack["code"],
        days=pack["validity_days"],
        breakdown=breakdown(content, language),
        issued_at=content["issued_at"],
    )


# -- reading -----------------------------------------------------------------------------


def receipts_of(session: Session, account: Account, limit: int = 100) -> list[Receipt]:
    return list(
        session.scalars(
            select(Receipt)
            .where(Receipt.account_id == account.id)
            .order_by(Receipt.issued_at.desc(), Receipt.created_at.desc(), Receipt.number.desc())
            .limit(limit)
        )
    )


def own_receipt(session: Session, account: Account, number: str) -> Receipt:
    """The account's receipt by number; another's is not found, exactly like an unknown number."""
    receipt = session.scalar(select(Receipt).where(Receipt.number == number.strip().upper()))
    if receipt is None or receipt.account_id != account.id:
        raise ReceiptNotFound()
    return receipt


def by_id(session: Session, receipt_id: uuid.UUID) -> Receipt:
    receipt = session.get(Receipt, receipt_id)
    if receipt is None:
        raise ReceiptNotFound()
    return receipt
