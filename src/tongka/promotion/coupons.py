"""Coupon codes: made in batches, typed by people, hard to guess, stored only as keyed hashes.

A generated code is 12 symbols of Crockford's base32 drawn with `secrets` (60 bits), shown
as `7KQM-2XD9-HT4B`. Codes are read case-insensitively, with hyphens and spaces ignored and
the look-alikes O → 0, I and L → 1 mapped as Crockford does, so a code read aloud or
copied from a poster still works. A shared code chosen by the operator (`SPRING26`) goes
through the same normalisation.

Only HMAC-SHA256(`TONGKA_SECRET_KEY`, normalised code) is kept, unique, with the last four
symbols as a hint for staff: a copy of the database gives nobody a usable code, and the
lookup is one indexed equality. The plain codes are shown once, when the batch is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.errors import Conflict, Unprocessable
from tongka.i18n import _
from tongka.promotion.models import CouponCode, Offer

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
GENERATED_LENGTH = 12
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SHAPE = re.compile(r"^[0-9A-Z]{4,24}$")


class CouponCodeMalformed(Unprocessable):
    code = "coupon_code_malformed"
    message = _("A coupon code is 4 to 24 letters and digits.")


class CouponCodeTaken(Conflict):
    code = "coupon_code_taken"
    message = _("This coupon code already exists.")


class NotACouponOffer(Conflict):
    code = "offer_not_coupon"
    message = _("Codes can only be made for an offer of the coupon kind that has not ended.")


def normalise(text: str) -> str | None:
    """The canonical form of a code as typed, or None if it cannot be one."""
    cleaned = re.sub(r"[\s\-]", "", text).upper().translate(_LOOKALIKES)
    return cleaned if _SHAPE.match(cleaned) else None


def code_hash(secret: str, normalised: str) -> str:
    return hmac.new(secret.encode(), normalised.encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(GENERATED_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, GENERATED_LENGTH, 4))


def find(session: Session, secret: str, text: str) -> CouponCode | None:
    normalised = normalise(text)
    if normalised is None:
        return None
    return session.scalar(
        select(CouponCode).where(CouponCode.code_hash == code_hash(secret, normalised))
    )


def generate(
    session: Session,
    offer: Offer,
    secret: str,
    *,
    count: int = 1,
    max_uses: int | None = 1,
    code: str | None = None,
    batch: str | None = None,
) -> list[str]:
    """Make `count` random codes (or the one shared `code`) for a coupon offer; returns them in plain text, once."""
    if offer.kind != "coupon" or offer.status == "ended":
        raise NotACouponOffer()
    if code is not None:
        normalised = normalise(code)
        if normalised is None:
            raise CouponCodeMalformed()
        plain = [code.strip().upper()]
    else:
        plain = [new_code() for _ in range(count)]
    batch = batch or f"{offer.code}-{uuid.uuid4().hex[:8]}"
    for text in plain:
        normalised = normalise(text)
        assert normalised is not None
        digest = code_hash(secret, normalised)
        if session.scalar(select(CouponCode.id).where(CouponCode.code_hash == digest)) is not None:
            raise CouponCodeTaken()
        session.add(
            CouponCode(
                offer_id=offer.id,
                code_hash=digest,
                hint=normalised[-4:],
                batch=batch[:40],
                max_uses=max_uses,
            )
        )
    session.flush()
    return plain
