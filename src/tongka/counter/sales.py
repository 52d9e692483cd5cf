"""The point of sale: finding a customer's line, checking the identity document they show,
registering a new SIM's real name under Hong Kong's limits, and the counter's record of a sale.

The order and its payment are the renewal flow's (the route module places and confirms them);
here is what the counter adds: who sold, in which till, what was tendered and given back, and
the audit entry of every check, registration and sale.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock, throttle
from tongka.account import lines
from tongka.account.identity import InvalidNumber, mask, normalise_document, parse_number
from tongka.account.models import Line, RealNameRecord
from tongka.counter.models import CounterSale, Shift
from tongka.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from tongka.i18n import _
from tongka.ledger import buckets
from tongka.receipt import service as receipts
from tongka.staff import audit
from tongka.staff.models import StaffMember
from tongka.staff.service import Staff
from tongka.stores.models import Store


class ShiftNotOpen(Conflict):
    code = "shift_not_open"
    message = _("Open your till first: a cash sale goes into your shift's till.")


class TenderedShort(Unprocessable):
    code = "tendered_short"
    message = _("The cash tendered is less than the price.")


class ApprovalCodeRequired(Unprocessable):
    code = "approval_code_required"
    message = _("Enter the approval code printed on the card terminal's slip.")


class IdentityChecksUsedUp(TooManyRequests):
    code = "identity_checks_used_up"
    message = _(
        "Too many documents that did not match today. Try again in {wait}, or ask a manager."
    )


class DocumentLimitReached(Conflict):
    code = "document_limit_reached"
    message = _(
        "This document already has {count} SIMs registered, the most allowed for a travel document."
    )


class HkidLimitReached(DocumentLimitReached):
    message = _(
        "This document already has {count} SIMs registered, the most allowed for a Hong Kong identity card."
    )


class LineNotBound(Conflict):
    code = "line_not_bound"
    message = _("This line is not bound to an account yet: the customer binds it in the app first.")


class SaleNotFound(NotFound):
    code = "sale_not_found"
    message = _("There is no such sale at your store.")


# Hong Kong's real-name registration of pre-paid SIMs: at most 10 per person under a Hong Kong
# identity card, at most 3 under any other (travel) document.
HKID_LIMIT = 10
TRAVEL_DOCUMENT_LIMIT = 3
# Documents that did not match, per Hong Kong day: per line (someone guessing one line's owner),
# per agent (one counter trying many).
MISSES_PER_LINE = throttle.Limit(
    "identity_miss_line", allowed=5, window_seconds=86_400, error=IdentityChecksUsedUp
)
MISSES_PER_AGENT = throttle.Limit(
    "identity_miss_staff", allowed=20, window_seconds=86_400, error=IdentityChecksUsedUp
)
# The payment methods of the renewal flow and how the counter's record names them.
SALE_METHOD = {
    "cash": "cash",
    "card_terminal": "card_terminal",
    "store_qr": "store_qr",
    "wechat_pay": "wechat_pay_qr",
    "alipay": "alipay_qr",
}
_ICCID = re.compile(r"^89[0-9]{16,20}$")


# --- finding a line -----------------------------------------------------------------------------


def find_line(session: Session, query: str) -> Line | None:
    """A line by its ICCID or by either of its numbers (+852 / +86, or the local form)."""
    text_ = re.sub(r"[\s\-()]", "", query or "")
    if _ICCID.match(text_):
        return session.scalar(select(Line).where(Line.iccid == text_))
    try:
        number = parse_number(text_)
    except InvalidNumber:
        return None
    return session.scalar(
        select(Line).where(or_(Line.hk_number == number, Line.cn_number == number))
    )


@dataclass(frozen=True)
class RealName:
    document_type: str
    document_masked: str
    document_country: str | None
    holder_masked: str


@dataclass(frozen=True)
class LineView:
    """What the counter shows of a line: never a full number, document or name."""

    id: uuid.UUID
    iccid: str
    numbers: list[str]
    bound: bool
    real_name: RealName | None
    zones: dict[str, int]  # zone -> bytes left now


def view(session: Session, line: Line) -> LineView:
    record = line.real_name
    balance = buckets.line_balance(session, line.id)
    return LineView(
        id=line.id,
        iccid=mask(line.iccid),
        numbers=[receipts.mask_number(n) for n in line.numbers],
        bound=line.account_id is not None,
        real_name=None
        if record is None
        else RealName(
            record.document_type,
            record.document_number_masked,
            record.document_country,
            record.holder_name_masked,
        ),
        zones={zone: z.remaining_bytes for zone, z in balance.zones.items()},
    )


def line(session: Session, line_id: uuid.UUID) -> Line:
    found = session.get(Line, line_id)
    if found is None:
        raise lines.LineNotFound()
    return found


# --- identity -----------------------------------------------------------------------------------


def check_identity(
    session: Session,
    staff: Staff,
    line_id: uuid.UUID,
    document_type: str,
    document_number: str,
    secret: str,
) -> bool:
    """Whether the document shown is the line's registered one (a line without a record: no).
    Refused once the line or the agent has had too many misses today; every check is audited with
    the masked number only, never the stored one."""
    now = clock.now()
    throttle.check(session, MISSES_PER_LINE, str(line_id), now)
    throttle.check(session, MISSES_PER_AGENT, str(staff.id), now)
    found = line(session, line_id)
    record = found.real_name
    matched = record is not None and lines.document_matches(
        record, document_type, document_number, secret
    )
    if not matched:
        throttle.hit(session, MISSES_PER_LINE, str(line_id), now)
        throttle.hit(session, MISSES_PER_AGENT, str(staff.id), now)
    audit.record(
        session,
        staff,
        "identity.check",
        "line",
        line_id,
        after={
            "result": "match" if matched else "no_match",
            "document_type": document_type,
            "document": _masked(document_type, document_number),
        },
    )
    return matched


def _masked(document_type: str, number: str) -> str:
    try:
        return mask(normalise_document(document_type, number))
    except lines.InvalidDocument:
        return mask(re.sub(r"[\s\-]", "", number).upper())


def limit_of(document_type: str) -> tuple[int, type[DocumentLimitReached]]:
    if document_type == "hkid":
        return HKID_LIMIT, HkidLimitReached
    return TRAVEL_DOCUMENT_LIMIT, DocumentLimitReached


def _lock_document(session: Session, digest: str) -> None:
    """One registration of a document at a time, so two counters cannot both take its last place.
    PostgreSQL: a lock on the digest until commit; SQLite's writers already go one at a time."""
    if session.connection().dialect.name == "postgresql":
        key = int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def register_real_name(
    session: Session,
    staff: Staff,
    line_id: uuid.UUID,
    *,
    document_type: str,
    document_number: str,
    holder_name: str,
    document_country: str | None,
    secret: str,
) -> RealNameRecord:
    """A line's real-name record from the document shown at the counter, within the document's limit."""
    digest = lines.document_digest(secret, document_type, document_number)
    found = line(session, line_id)
    if found.real_name is not None:
        raise lines.RealNameExists()
    _lock_document(session, digest)
    limit, refusal = limit_of(document_type)
    count = session.scalar(
        select(func.count())
        .select_from(RealNameRecord)
        .where(RealNameRecord.document_number_digest == digest)
    )
    if (count or 0) >= limit:
        raise refusal(count=count)
    record = lines.set_real_name(
        session,
        found,
        document_type=document_type,
        document_number=document_number,
        holder_name=holder_name,
        secret=secret,
        source="store",
        document_country=document_country if document_type == "passport" else None,
    )
    audit.record(
        session,
        staff,
        "real_name.register",
        "line",
        line_id,
        before={"real_name": None},
        after={
            "document_type": record.document_type,
            "document": record.document_number_masked,
            "country": record.document_country,
            "holder": record.holder_name_masked,
        },
    )
    return record


# --- sales --------------------------------------------------------------------------------------


def open_shift(session: Session, staff: Staff) -> Shift | None:
    return session.scalar(select(Shift).where(Shift.staff_id == staff.id, Shift.status == "open"))


def require_shift(session: Session, staff: Staff) -> Shift:
    shift = open_shift(session, staff)
    if shift is None:
        raise ShiftNotOpen()
    return shift


@dataclass(frozen=True)
class Sold:
    """A sale as the flow placed it: its order and payment, what the order cost."""

    order_id: uuid.UUID
    payment_id: uuid.UUID
    pack_id: uuid.UUID
    method: str  # the renewal flow's method (cash, card_terminal, wechat_pay, alipay)
    currency: str
    amount: int


def record(
    session: Session,
    staff: Staff,
    sold: Sold,
    *,
    tendered: int | None = None,
    approval_code: str | None = None,
    paid_at: datetime | None = None,
) -> CounterSale:
    """The counter's row of a sale (once per order: a second submit gets the first) and its audit entry."""
    existing = sale_of_order(session, sold.order_id)
    if existing is not None:
        return existing
    assert staff.store_id is not None  # the counter's staff work at a store
    shift = open_shift(session, staff)
    sale = CounterSale(
        order_id=sold.order_id,
        payment_id=sold.payment_id,
        store_id=staff.store_id,
        staff_id=staff.id,
        shift_id=shift.id if shift else None,
        pack_id=sold.pack_id,
        method=SALE_METHOD[sold.method],
        currency=sold.currency,
        amount=sold.amount,
        tendered=tendered,
        change=None if tendered is None else tendered - sold.amount,
        approval_code=approval_code,
        paid_at=paid_at,
    )
    try:
        with session.begin_nested():
            session.add(sale)
    except IntegrityError:  # the same order recorded by a request at the same moment
        again = sale_of_order(session, sold.order_id)
        assert again is not None
        return again
    audit.record(
        session,
        staff,
        f"sale.{sale.method}",
        "counter_sale",
        sale.id,
        after={
            "order_id": sold.order_id,
            "amount": sold.amount,
            "currency": sold.currency,
            "tendered": tendered,
            "change": sale.change,
            "approval_code": approval_code,
            "paid": paid_at is not None,
        },
    )
    return sale


def sale_of_order(session: Session, order_id: uuid.UUID) -> CounterSale | None:
    return session.scalar(select(CounterSale).where(CounterSale.order_id == order_id))


def mark_paid(session: Session, order_id: uuid.UUID, when: datetime) -> None:
    """A counter sale paid later (a QR code the customer scanned): paid once, at the first word."""
    session.execute(
        update(CounterSale)
        .where(CounterSale.order_id == order_id, CounterSale.paid_at.is_(None))
        .values(paid_at=when)
    )


def receipt_issuer(session: Session, order_id: uuid.UUID) -> tuple[str, str] | None:
    """(the store's code, the agent's name) of a counter sale's order, for its receipt; None: not one."""
    row = session.execute(
        select(Store.code, StaffMember.display_name)
        .join(CounterSale, CounterSale.store_id == Store.id)
        .join(StaffMember, StaffMember.id == CounterSale.staff_id)
        .where(CounterSale.order_id == order_id)
    ).first()
    return None if row is None else (row[0], row[1])


def visible_sale(session: Session, staff: Staff, sale_id: uuid.UUID) -> CounterSale:
    """A sale the staff member may see: their store's (any, for an admin); else not found."""
    sale = session.get(CounterSale, sale_id)
    if sale is None or not staff.may_see_store(sale.store_id):
        raise SaleNotFound()
    return sale
