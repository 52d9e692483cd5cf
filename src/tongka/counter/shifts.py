"""Shifts: an agent's till from the cash float to the count at closing.

- **Open**: the float in HK$ ("500" or "500.00", kept in cents); one open shift per agent (the
  partial unique index `uq_shifts_open_staff` backs the check).
- **Close**: the cash counted by denomination (HK$1000 notes down to 10-cent coins), summed here
  again whatever the page showed. Expected = float + the shift's cash sales (tendered − change) −
  succeeded refunds of those sales settled before the close, in the shift's currency only (a till
  holds one currency). Difference = counted − expected.
- **Acknowledge**: a difference other than zero waits for a manager of the store (or an admin)
  who notes why; a shift that balances needs none.

Who may do what: the shift's own agent sees and closes it; a manager of its store (or an admin)
does the same for any of the store's shifts and acknowledges. Anyone else is told there is no such
shift (a 404: another store's tills are not shown to exist). Every change is in the audit log.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.counter.models import CounterSale, Shift
from tongka.errors import Conflict, Forbidden, NotFound, Unprocessable
from tongka.i18n import _
from tongka.payment.models import Refund
from tongka.staff import audit
from tongka.staff.models import StaffMember
from tongka.staff.service import Staff
from tongka.stores.models import Store

CURRENCY = "HKD"
# Hong Kong's notes and coins, in cents, largest first: the close form's rows.
DENOMINATIONS = (100000, 50000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10)
MAX_FLOAT = 10_000_000  # HK$100,000: more than any till holds; a typo, not a float
MAX_PIECES = 100_000
RECENT = 30


class ShiftNotFound(NotFound):
    code = "shift_not_found"
    message = _("There is no such shift.")


class ShiftAlreadyOpen(Conflict):
    code = "shift_already_open"
    message = _("You already have an open shift. Close it before you open another.")


class ShiftNotOpen(Conflict):
    code = "shift_not_open"
    message = _("This shift is already closed.")


class NothingToAcknowledge(Conflict):
    code = "shift_nothing_to_acknowledge"
    message = _("Only a closed shift whose cash did not match waits for acknowledgement.")


class NoTill(Forbidden):
    code = "shift_no_till"
    message = _("Only staff who work at a store open a shift.")


class AmountInvalid(Unprocessable):
    code = "amount_invalid"
    message = _("Enter an amount in dollars, such as 500 or 500.00.")


class CountInvalid(Unprocessable):
    code = "count_invalid"
    message = _("Enter each count as a whole number, 0 or more.")


_AMOUNT = re.compile(r"^\s*(?:HK\$|\$)?\s*(\d{1,7})(?:\.(\d{1,2}))?\s*$")


def parse_amount(text: str) -> int:
    """Dollars as typed ("500", "500.5", "HK$500.00") to cents; anything else refused."""
    found = _AMOUNT.match(text.replace(",", ""))
    if found is None:
        raise AmountInvalid()
    cents = int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
    if cents > MAX_FLOAT:
        raise AmountInvalid()
    return cents


def parse_counts(fields: dict[str, str]) -> dict[int, int]:
    """{denomination in cents: pieces} from the form's `count_<cents>` fields (blank = 0)."""
    counts: dict[int, int] = {}
    for cents in DENOMINATIONS:
        raw = (fields.get(f"count_{cents}") or "").strip()
        if raw == "":
            counts[cents] = 0
            continue
        if not raw.isdigit() or int(raw) > MAX_PIECES:
            raise CountInvalid()
        counts[cents] = int(raw)
    return counts


def counted_total(counts: dict[int, int]) -> int:
    return sum(cents * pieces for cents, pieces in counts.items())


@dataclass(frozen=True)
class ShiftView:
    """A shift as pages and the day report show it, with its agent's and store's names."""

    shift: Shift
    staff_name: str
    store_code: str
    acknowledged_by_name: str | None


def _views(session: Session, shifts: list[Shift]) -> list[ShiftView]:
    ids = {s.staff_id for s in shifts} | {s.acknowledged_by for s in shifts if s.acknowledged_by}
    names = {
        i: name
        for i, name in session.execute(
            select(StaffMember.id, StaffMember.display_name).where(StaffMember.id.in_(ids))
        )
    }
    codes = {
        i: code
        for i, code in session.execute(
            select(Store.id, Store.code).where(Store.id.in_({s.store_id for s in shifts}))
        )
    }
    return [
        ShiftView(
            s,
            names.get(s.staff_id, ""),
            codes.get(s.store_id, ""),
            names.get(s.acknowledged_by) if s.acknowledged_by else None,
        )
        for s in shifts
    ]


def _state(shift: Shift) -> dict[str, object]:
    return {
        "status": shift.status,
        "float_amount": shift.float_amount,
        "counted_amount": shift.counted_amount,
        "expected_amount": shift.expected_amount,
        "difference": shift.difference,
    }


def may_see(viewer: Staff, shift: Shift) -> bool:
    return shift.staff_id == viewer.id or (
        viewer.is_manager and viewer.may_see_store(shift.store_id)
    )


def get(session: Session, viewer: Staff, shift_id: uuid.UUID) -> ShiftView:
    """One shift the viewer may see (else ShiftNotFound)."""
    shift = session.get(Shift, shift_id)
    if shift is None or not may_see(viewer, shift):
        raise ShiftNotFound()
    return _views(session, [shift])[0]


def open_shift_of(session: Session, staff_id: uuid.UUID) -> Shift | None:
    return session.scalar(select(Shift).where(Shift.staff_id == staff_id, Shift.status == "open"))


def visible(session: Session, viewer: Staff, store_id: uuid.UUID | None = None) -> list[ShiftView]:
    """The recent shifts the viewer may see, newest first: an agent's own; a manager's store's;
    an admin's, of every store or of `store_id`."""
    query = select(Shift).order_by(Shift.opened_at.desc()).limit(RECENT)
    if not viewer.is_manager:
        query = query.where(Shift.staff_id == viewer.id)
    elif not viewer.is_admin:
        query = query.where(Shift.store_id == viewer.store_id)
    elif store_id is not None:
        query = query.where(Shift.store_id == store_id)
    return _views(session, list(session.scalars(query)))


def open_shift(session: Session, actor: Staff, float_amount: int) -> Shift:
    """Opens the actor's till with `float_amount` cents of cash (ShiftAlreadyOpen if one is open)."""
    if actor.store_id is None:
        raise NoTill()
    if open_shift_of(session, actor.id) is not None:
        raise ShiftAlreadyOpen()
    shift = Shift(
        store_id=actor.store_id,
        staff_id=actor.id,
        currency=CURRENCY,
        status="open",
        opened_at=clock.now(),
        float_amount=float_amount,
    )
    try:
        with session.begin_nested():  # two tabs opening at once: the index refuses the second
            session.add(shift)
            session.flush()
    except IntegrityError:
        raise ShiftAlreadyOpen() from None
    audit.record(session, actor, "shift.open", "shift", shift.id, after=_state(shift))
    return shift


def expected_cash(session: Session, shift: Shift, until: datetime) -> int:
    """What the till should hold: the float, plus the cash its paid sales took in (tendered −
    change), minus the succeeded refunds of those sales settled by `until` (cents)."""
    sales = select(CounterSale).where(
        CounterSale.shift_id == shift.id,
        CounterSale.method == "cash",
        CounterSale.currency == shift.currency,
        CounterSale.paid_at.is_not(None),
    )
    taken = sum(
        (s.tendered - (s.change or 0)) if s.tendered is not None else s.amount
        for s in session.scalars(sales)
    )
    refunded = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id.in_(
                select(CounterSale.payment_id).where(
                    CounterSale.shift_id == shift.id,
                    CounterSale.method == "cash",
                    CounterSale.payment_id.is_not(None),
                )
            ),
            Refund.status == "succeeded",
            Refund.currency == shift.currency,
            func.coalesce(Refund.settled_at, Refund.created_at) <= until,
        )
    )
    return shift.float_amount + taken - int(refunded or 0)


def close(
    session: Session, actor: Staff, shift_id: uuid.UUID, counts: dict[int, int], note: str | None
) -> Shift:
    """Closes an open shift with the cash counted: counted, expected and difference recorded."""
    shift = session.get(Shift, shift_id)
    if shift is None or not may_see(actor, shift):  # only its agent, or the store's managers
        raise ShiftNotFound()
    before = _state(shift)
    now = clock.now()
    counted = counted_total(counts)
    expected = expected_cash(session, shift, now)
    # Guarded: a second close (another tab, a manager at the same time) changes nothing.
    done = session.execute(
        update(Shift)
        .where(Shift.id == shift.id, Shift.status == "open")
        .values(
            status="closed",
            closed_at=now,
            counted_denominations={str(c): n for c, n in counts.items() if n},
            counted_amount=counted,
            expected_amount=expected,
            difference=counted - expected,
            close_note=(note or "").strip()[:200] or None,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ShiftNotOpen()
    session.refresh(shift)
    audit.record(
        session,
        actor,
        "shift.close",
        "shift",
        shift.id,
        before=before,
        after={**_state(shift), "note": shift.close_note},
    )
    return shift


def acknowledge(session: Session, actor: Staff, shift_id: uuid.UUID, note: str) -> Shift:
    """A manager of the store (or an admin) accepts a closed shift's difference, saying why."""
    shift = session.get(Shift, shift_id)
    if shift is None or not (actor.is_manager and actor.may_see_store(shift.store_id)):
        raise ShiftNotFound()
    before = _state(shift)
    done = session.execute(
        update(Shift)
        .where(Shift.id == shift.id, Shift.status == "closed", Shift.difference != 0)
        .values(
            status="acknowledged",
            acknowledged_by=actor.id,
            acknowledged_at=clock.now(),
            acknowledge_note=note.strip()[:200],
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NothingToAcknowledge()
    session.refresh(shift)
    audit.record(
        session,
        actor,
        "shift.acknowledge",
        "shift",
        shift.id,
        before=before,
        after={**_state(shift), "note": shift.acknowledge_note},
    )
    return shift


def of_day(
    session: Session, store_id: uuid.UUID, start: datetime, end: datetime
) -> list[ShiftView]:
    """The store's shifts opened in [start, end), in the order they opened."""
    query = (
        select(Shift)
        .where(Shift.store_id == store_id, Shift.opened_at >= start, Shift.opened_at < end)
        .order_by(Shift.opened_at)
    )
    return _views(session, list(session.scalars(query)))
