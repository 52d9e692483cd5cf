"""Phone numbers and identity documents: parsing, checking, masking.

Mainland resident ID numbers are checked with python-stdnum (`cn.ric`); stdnum does
not cover the Hong Kong identity card, whose published check digit is computed here.
Passports are checked for form only.
"""

from __future__ import annotations

import re

import phonenumbers
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from tongka.errors import Unprocessable
from tongka.i18n import _

REGION_PREFIX = {"HK": "+852", "CN": "+86"}


class InvalidNumber(Unprocessable):
    code = "invalid_number"
    message = _("This is not a valid Hong Kong or mainland mobile number.")


class InvalidDocument(Unprocessable):
    code = "invalid_document"
    message = _("This identity document number is not valid.")


def parse_number(text: str, region: str | None = None) -> str:
    """A Hong Kong or mainland mobile number in E.164 (`+85291234567`).

    Accepts E.164 with spaces or dashes, or a national number: 8 digits are read as
    Hong Kong, 11 digits starting with 1 as mainland. With `region`, the number must
    belong to it.
    """
    raw = re.sub(r"[\s\-()]", "", text or "")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    guess = (
        None
        if raw.startswith("+")
        else ("HK" if len(raw) == 8 else "CN" if len(raw) == 11 else None)
    )
    if not raw.startswith("+") and guess is None:
        raise InvalidNumber()
    try:
        number = phonenumbers.parse(raw, guess)
    except phonenumbers.NumberParseException:
        raise InvalidNumber() from None
    if number.extension:
        raise InvalidNumber()
    found = phonenumbers.region_code_for_number(number)
    if found not in REGION_PREFIX or not phonenumbers.is_valid_number(number):
        raise InvalidNumber()
    if region is not None and found != region:
        raise InvalidNumber()
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidNumber()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# cn_exit_permit: the mainland's Exit-entry Permit for Travelling to and from Hong Kong and Macao
# (往来港澳通行证), the document most mainland visitors show at a Hong Kong counter (few carry a
# passport). Its card form's number is C and eight characters (C12345678; once the digits ran
# out, a letter second: CA1234567). The booklet (W...) has not been issued since 2014 and no longer
# is valid.
DOCUMENT_TYPES = ("cn_resident_id", "hkid", "passport", "cn_exit_permit")
_HKID = re.compile(r"^([A-Z]{1,2})([0-9]{6})(?:\(([0-9A])\)|([0-9A]))$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_EXIT_PERMIT = re.compile(r"^C[0-9A-Z][0-9]{7}$")


def hkid_check_digit(prefix: str, digits: str) -> str:
    values = (
        ([36] if len(prefix) == 1 else [])
        + [ord(c) - 55 for c in prefix]
        + [int(d) for d in digits]
    )
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True))
    remainder = (11 - total % 11) % 11
    return "A" if remainder == 10 else str(remainder)


def normalise_document(document_type: str, number: str) -> str:
    """The canonical form of a document number, or InvalidDocument."""
    text = re.sub(r"[\s\-]", "", number or "").upper()
    if document_type == "cn_resident_id":
        try:
            return str(ric.validate(text))
        except ValidationError:
            raise InvalidDocument() from None
    if document_type == "hkid":
        match = _HKID.match(text)
        check = match and (match[3] or match[4])
        if not match or hkid_check_digit(match[1], match[2]) != check:
            raise InvalidDocument()
        return f"{match[1]}{match[2]}{check}"
    if document_type == "passport":
        if not _PASSPORT.match(text):
            raise InvalidDocument()
        return text
    if document_type == "cn_exit_permit":
        if not _EXIT_PERMIT.match(text):
            raise InvalidDocument()
        return text
    raise InvalidDocument()


def mask(text: str) -> str:
    """Enough to recognise, not enough to use: `11**************2X`, `A******3`."""
    if len(text) <= 4:
        return "*" * len(text)
    keep = 2 if len(text) >= 12 else 1
    return text[:keep] + "*" * (len(text) - 2 * keep) + text[-keep:]


def mask_name(name: str) -> str:
    """`陈**`, `王 *`, `C*** T** M**`: the first letter of the name and the initials of longer parts, never all of it."""
    parts = name.split()
    if sum(len(p) for p in parts) <= 1:
        return "*" * len(name)
    masked = []
    for i, part in enumerate(parts):
        keep = 1 if i == 0 or len(part) > 1 else 0
        masked.append(part[:keep] + "*" * (len(part) - keep))
    return " ".join(masked)
