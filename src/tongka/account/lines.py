"""Lines: the SIM inventory, binding a line to an account by SMS code, real-name records."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import io
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload
from stdnum import luhn

from tongka import clock, throttle
from tongka.account.identity import (
    DOCUMENT_TYPES,
    InvalidDocument,
    InvalidNumber,
    mask,
    mask_name,
    normalise_document,
    parse_number,
)
from tongka.account.models import Account, BindChallenge, Line, RealNameRecord
from tongka.config import Settings
from tongka.db import matched
from tongka.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from tongka.i18n import _
from tongka.notify import service as notify


class LineNotFound(NotFound):
    code = "line_not_found"
    message = _("No such line.")


class LineAlreadyYours(Conflict):
    code = "line_already_yours"
    message = _("This line is already bound to your account.")


class LineBoundElsewhere(Conflict):
    # Says that the line is taken, never by whom; only to one who proved they hold the SIM
    # (the right code), when another account bound it first.
    code = "line_bound_elsewhere"
    message = _(
        "This number is bound to another account. If the SIM card is yours, bring it and your ID to a tongka store."
    )


class BindCodeTooSoon(TooManyRequests):
    code = "bind_code_too_soon"
    message = _("A code was just sent to this number. You can ask for another in {wait}.")


class BindCodesUsedUpToday(TooManyRequests):
    code = "bind_codes_used_up_today"
    message = _("Too many codes were asked for today. Try again in {wait}.")


class BindGuessesUsedUpToday(TooManyRequests):
    code = "bind_guesses_used_up_today"
    message = _("Too many wrong codes were entered for this number today. Try again in {wait}.")


class BindCodeWrong(Unprocessable):
    code = "bind_code_wrong"
    message = _("The code is wrong. {remaining} tries left.")
    commit_anyway = True  # the failed try must count even though the request is refused


class BindCodeExpired(Conflict):
    code = "bind_code_expired"
    message = _("This code has expired or was used up. Ask for a new code.")


class BindCodeUsedUp(Conflict):
    code = "bind_code_used_up"
    message = _("The code is wrong and no tries are left. Ask for a new code.")
    commit_anyway = True


class RealNameExists(Conflict):
    code = "real_name_exists"
    message = _(
        "This line already has a real-name record. To change it, visit a tongka store with your ID."
    )


CODE_DIGITS = 8
# Daily caps, per Hong Kong day; every request counts, whether or not a code is sent (a number
# that is no line, or another's, gets a decoy), so the caps do not tell the numbers apart either.
BIND_PER_NUMBER = throttle.Limit(
    "bind_number",
    allowed=5,
    window_seconds=86_400,
    error=BindCodesUsedUpToday,
    spacing_error=BindCodeTooSoon,
)
BIND_PER_ACCOUNT = throttle.Limit(
    "bind_account", allowed=10, window_seconds=86_400, error=BindCodesUsedUpToday
)
BIND_PER_ADDRESS = throttle.Limit(
    "bind_address", allowed=20, window_seconds=86_400, error=BindCodesUsedUpToday
)
# Wrong codes per number per day, across all accounts and codes: with 8-digit codes the odds of
# taking a number by guessing stay at most 20 / 10^8 = 2e-7 a day (docs/SECURITY.md).
BIND_WRONG_PER_NUMBER = throttle.Limit(
    "bind_wrong", allowed=20, window_seconds=86_400, error=BindGuessesUsedUpToday
)

# The SMS: templates/messages/bind_code/<language>.sms.
BIND_SMS = "bind_code"


# --- inventory ----------------------------------------------------------------------------


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number in the file, reason)


def _parse_row(row: dict[str, str | None]) -> tuple[str, str | None, str | None, str | None]:
    iccid = (row.get("iccid") or "").strip()
    if not (
        18 <= len(iccid) <= 22
        and iccid.isdigit()
        and iccid.startswith("89")
        and luhn.is_valid(iccid)
    ):
        raise ValueError(f"invalid ICCID {iccid!r} (18-22 digits starting 89, Luhn check digit)")
    numbers: dict[str, str | None] = {}
    for column, region in (("hk_number", "HK"), ("cn_number", "CN")):
        text = (row.get(column) or "").strip()
        if not text:
            numbers[column] = None
            continue
        if not text.startswith("+"):
            raise ValueError(f"{column} {text!r} is not in E.164 form (+852..., +86...)")
        try:
            numbers[column] = parse_number(text, region)
        except InvalidNumber:
            raise ValueError(f"{column} {text!r} is not a valid {region} mobile number") from None
    if not numbers["hk_number"] and not numbers["cn_number"]:
        raise ValueError("a line needs at least one number")
    imsi = (row.get("imsi") or "").strip() or None
    if imsi is not None and not (imsi.isdigit() and 14 <= len(imsi) <= 15):
        raise ValueError(f"invalid IMSI {imsi!r}")
    return iccid, numbers["hk_number"], numbers["cn_number"], imsi


def import_lines(session: Session, rows: Iterable[str]) -> ImportReport:
    """Load SIM inventory from CSV text (`iccid,hk_number,cn_number[,imsi]`).

    Each good row is kept, each bad one reported with its line number and skipped;
    a row already imported with the same values counts as unchanged, so importing a
    file twice changes nothing.
    """
    report = ImportReport()
    reader = csv.DictReader(rows)
    missing = {"iccid", "hk_number", "cn_number"} - set(reader.fieldnames or ())
    if missing:
        report.errors.append((1, f"missing columns: {', '.join(sorted(missing))}"))
        return report
    for row in reader:
        line_no = reader.line_num
        try:
            iccid, hk, cn, imsi = _parse_row(row)
        except ValueError as e:
            report.errors.append((line_no, str(e)))
            continue
        existing = session.scalar(select(Line).where(Line.iccid == iccid))
        if existing is not None:
            if (existing.hk_number, existing.cn_number, existing.imsi) == (
                hk,
                cn,
                imsi or existing.imsi,
            ):
                report.unchanged += 1
            else:
                report.errors.append(
                    (line_no, f"ICCID {iccid} was imported before with other numbers or IMSI")
                )
            continue
        taken = [n for n in (hk, cn) if n and _line_by_number(session, n) is not None]
        if taken:
            report.errors.append((line_no, f"number {taken[0]} belongs to another ICCID"))
            continue
        try:
            with session.begin_nested():
                session.add(Line(iccid=iccid, hk_number=hk, cn_number=cn, imsi=imsi))
        except IntegrityError:
            report.errors.append((line_no, "duplicate ICCID, number or IMSI"))
            continue
        report.added += 1
    return report


def import_csv_text(session: Session, text: str) -> ImportReport:
    return import_lines(session, io.StringIO(text))


# --- lines of an account ------------------------------------------------------------------


def _line_by_number(session: Session, number: str) -> Line | None:
    return session.scalar(
        select(Line).where(or_(Line.hk_number == number, Line.cn_number == number))
    )


def lines_of(session: Session, account: Account) -> list[Line]:
    return list(
        session.scalars(select(Line).where(Line.account_id == account.id).order_by(Line.bound_at))
    )


def own_line(session: Session, account: Account, line_id: uuid.UUID) -> Line:
    """The account's line, or 404 — the same answer whether it is someone else's or nobody's."""
    # The real-name record only when asked for: most callers check ownership and use the id.
    line = session.get(Line, line_id, options=[lazyload(Line.real_name)])
    if line is None or line.account_id != account.id:
        raise LineNotFound()
    return line


def unbound_count(session: Session) -> int:
    """How many lines of the inventory nobody has bound yet (SIMs still to sell)."""
    return session.scalar(select(func.count()).where(Line.account_id.is_(None))) or 0


def unbound_lines(session: Session) -> list[Line]:
    return list(session.scalars(select(Line).where(Line.account_id.is_(None)).order_by(Line.iccid)))


# --- binding by one-time code -------------------------------------------------------------


def _code_digest(secret: str, challenge_id: uuid.UUID, code: str) -> str:
    return hmac.new(
        secret.encode(), f"bind:{challenge_id}:{code}".encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class BindPolicy:
    secret: str
    ttl_seconds: int = 600
    max_attempts: int = 5
    resend_seconds: int = 60
    # Codes a Hong Kong day (settings `bind_codes_per_*_per_day`): the caps of BIND_PER_*.
    per_number_per_day: int = BIND_PER_NUMBER.allowed
    per_account_per_day: int = BIND_PER_ACCOUNT.allowed
    per_address_per_day: int = BIND_PER_ADDRESS.allowed


def bind_policy(settings: Settings) -> BindPolicy:
    """The policy the settings give (the app and the web site bind by the same one)."""
    return BindPolicy(
        secret=settings.secret_key.get_secret_value(),
        ttl_seconds=settings.bind_code_ttl_seconds,
        max_attempts=settings.bind_code_max_attempts,
        resend_seconds=settings.bind_code_resend_seconds,
        per_number_per_day=settings.bind_codes_per_number_per_day,
        per_account_per_day=settings.bind_codes_per_account_per_day,
        per_address_per_day=settings.bind_codes_per_address_per_day,
    )


def request_bind(
    session: Session,
    account: Account,
    number_text: str,
    policy: BindPolicy,
    *,
    address: str | None = None,
) -> BindChallenge:
    """Send an 8-digit code by SMS to a line's number, to prove the caller holds the SIM.

    The answer is the same whether a code was sent or the number is no line or another's: then
    a decoy challenge no code can match is kept instead, so neither this step nor the confirming
    one tells anyone which numbers are lines and which are bound. Only the caller's own line is
    told apart (`LineAlreadyYours`), which tells them nothing new.
    """
    number = parse_number(number_text)
    line = _line_by_number(session, number)
    if line is not None and line.account_id == account.id:
        raise LineAlreadyYours()
    now = clock.now()
    # One request a minute per number, whoever asks (nobody can flood a number with SMS), and caps a day.
    throttle.take(
        session,
        dataclasses.replace(
            BIND_PER_NUMBER,
            allowed=policy.per_number_per_day,
            spacing_seconds=policy.resend_seconds,
        ),
        number,
        now,
    )
    throttle.take(
        session,
        dataclasses.replace(BIND_PER_ACCOUNT, allowed=policy.per_account_per_day),
        str(account.id),
        now,
    )
    if address:
        throttle.take(
            session,
            dataclasses.replace(BIND_PER_ADDRESS, allowed=policy.per_address_per_day),
            address,
            now,
        )
    bindable = line is not None and line.account_id is None
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    challenge = BindChallenge(
        id=uuid.uuid4(),
        account_id=account.id,
        line_id=line.id if bindable and line is not None else None,
        number=number,
        expires_at=now + timedelta(seconds=policy.ttl_seconds),
        created_at=now,
        code_hash="",
    )
    challenge.code_hash = _code_digest(policy.secret, challenge.id, code)
    session.add(challenge)
    if bindable:
        notify.send_sms(
            session,
            to=number,
            template=BIND_SMS,
            language=account.language,
            account_id=account.id,
            code=code,
            minutes=policy.ttl_seconds // 60,
        )
    session.flush()
    return challenge


def confirm_bind(
    session: Session, account: Account, number_text: str, code: str, policy: BindPolicy
) -> Line:
    number = parse_number(number_text)
    challenge = session.scalar(
        select(BindChallenge)
        .where(BindChallenge.account_id == account.id, BindChallenge.number == number)
        .order_by(BindChallenge.created_at.desc())
        .with_for_update()
    )
    now = clock.now()
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= now
        or challenge.attempts >= policy.max_attempts
    ):
        raise BindCodeExpired()
    throttle.check(session, BIND_WRONG_PER_NUMBER, number, now)
    challenge.attempts += 1
    right = hmac.compare_digest(
        challenge.code_hash, _code_digest(policy.secret, challenge.id, code.strip())
    )
    if not right or challenge.line_id is None:  # a decoy's code was never sent: no guess is right
        throttle.hit(session, BIND_WRONG_PER_NUMBER, number, now)
        remaining = policy.max_attempts - challenge.attempts
        if remaining <= 0:
            raise BindCodeUsedUp()
        raise BindCodeWrong(remaining=remaining)
    challenge.consumed_at = now
    # Guarded: of two accounts confirming at once, one binds and the other is refused.
    bound = session.execute(
        update(Line)
        .where(Line.id == challenge.line_id, Line.account_id.is_(None))
        .values(account_id=account.id, bound_at=now)
    )
    line = session.get(Line, challenge.line_id, populate_existing=True)
    assert line is not None
    if matched(bound) != 1:
        raise LineAlreadyYours() if line.account_id == account.id else LineBoundElsewhere()
    return line


# --- real-name records --------------------------------------------------------------------


def _digest(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def set_real_name(
    session: Session,
    line: Line,
    *,
    document_type: str,
    document_number: str,
    holder_name: str,
    secret: str,
    source: str,
    document_country: str | None = None,
) -> RealNameRecord:
    if document_type not in DOCUMENT_TYPES:
        raise InvalidDocument()
    number = normalise_document(document_type, document_number)
    name = " ".join(holder_name.split())
    if not name:
        raise InvalidDocument()
    if line.real_name is not None:
        raise RealNameExists()
    record = RealNameRecord(
        line_id=line.id,
        document_type=document_type,
        # The exit-entry permit is the mainland's alone, whatever was said.
        document_country="CN"
        if document_type == "cn_exit_permit"
        else (document_country or "").upper() or None,
        document_number_masked=mask(number),
        document_number_digest=_digest(secret, document_type, number),
        holder_name_masked=mask_name(name),
        holder_name_digest=_digest(secret, "name", name.casefold()),
        source=source,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise RealNameExists() from None
    session.refresh(line)
    return record


def document_digest(secret: str, document_type: str, document_number: str) -> str:
    """The keyed hash a document is registered under (the same document, the same digest), to count
    the lines registered to one document; InvalidDocument if the number is not valid."""
    if document_type not in DOCUMENT_TYPES:
        raise InvalidDocument()
    return _digest(secret, document_type, normalise_document(document_type, document_number))


def document_matches(
    record: RealNameRecord, document_type: str, document_number: str, secret: str
) -> bool:
    """Whether a presented document is the one registered (for store staff checking an ID)."""
    try:
        number = normalise_document(document_type, document_number)
    except InvalidDocument:
        return False
    return record.document_type == document_type and hmac.compare_digest(
        record.document_number_digest, _digest(secret, document_type, number)
    )
