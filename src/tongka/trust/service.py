"""Is this official? The operator's channels, the check anyone may run, and scam reports.

Whatever a person types is read as one thing (`read`): a phone number (E.164), a web address (its
host, in lower-case ASCII: a Unicode host becomes its `xn--` form, so a look-alike in another
script never equals ours), an email address, a social-media account, or a store code. The check
compares that reading with the official channels exactly: a host is ours only if it is one of our
hosts or a subdomain of one (`tongka.hk.evil.com` and `tongka-hk.com` are not), so a look-alike
is "not official" without a list of look-alikes. Active stores count as official by their code.

Scam reports are grouped by that reading (`ScamCampaign.key`): the same number written three ways
is one campaign.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock, throttle
from tongka.db import transaction
from tongka.errors import NotFound, TooManyRequests, Unprocessable
from tongka.i18n import _, gettext
from tongka.staff import audit
from tongka.staff.service import Staff
from tongka.stores.models import Store
from tongka.trust.models import (
    CAMPAIGN_STATUSES,
    CHANNEL_KINDS,
    SEEN_IN,
    OfficialChannel,
    ScamCampaign,
    ScamReport,
)


class NotReadable(Unprocessable):
    code = "not_readable"
    message = _(
        "Enter a phone number, a web address, an email address, a social-media account or a store code."
    )


class ChannelNotFound(NotFound):
    code = "official_channel_not_found"
    message = _("No such official channel.")


class ChannelExists(Unprocessable):
    code = "official_channel_exists"
    message = _("This channel is already on the list.")


class CampaignNotFound(NotFound):
    code = "scam_campaign_not_found"
    message = _("No such scam report.")


class ScreenshotRefused(Unprocessable):
    code = "screenshot_refused"
    message = _("A screenshot must be a PNG or JPEG picture of at most 2 MB.")


class TooManyChecks(TooManyRequests):
    code = "too_many_checks"
    message = _("Too many checks from your connection. Try again in {wait}.")


class TooManyReports(TooManyRequests):
    code = "too_many_reports"
    message = _("Too many reports from your connection today. Try again in {wait}.")


class ValueReportedEnough(TooManyRequests):
    code = "value_reported_enough"
    message = _("This has been reported many times today: we have it. Thank you.")


CHECKS_BY_ADDRESS = throttle.Limit("official_check_address", 60, 3600, TooManyChecks)
REPORTS_BY_ADDRESS = throttle.Limit("scam_report_address", 5, 86400, TooManyReports)
REPORTS_BY_VALUE = throttle.Limit("scam_report_value", 50, 86400, ValueReportedEnough)

SCREENSHOT_MAX_BYTES = 2 * 1024 * 1024
MAX_INPUT = 300

# Profile addresses of the platforms people meet us on: the first path segment is the account.
PLATFORM_HOSTS = {
    "facebook.com": "facebook",
    "instagram.com": "instagram",
    "x.com": "x",
    "twitter.com": "x",
    "threads.net": "threads",
    "youtube.com": "youtube",
    "tiktok.com": "tiktok",
    "weibo.com": "weibo",
    "xiaohongshu.com": "xiaohongshu",
    "douyin.com": "douyin",
}
PLATFORMS = tuple(sorted(set(PLATFORM_HOSTS.values()) | {"wechat", "whatsapp", "telegram"}))
# Names an impostor borrows: a reading that carries one and is not ours "looks like" ours.
OUR_NAMES = ("tongka", "通卡", "tong-ka", "tongca")


@dataclass(frozen=True)
class Reading:
    """What a person typed, read as one kind of channel, normalised."""

    kind: str  # phone | web | email | social | store
    value: str
    platform: str = ""

    @property
    def key(self) -> str:
        return ":".join(p for p in (self.kind, self.platform, self.value) if p)


_DOTS = str.maketrans({"。": ".", "．": ".", "｡": ".", "\\": "/"})
_PHONE = re.compile(r"\+?[\d\s\-().]{6,24}")
_EMAIL = re.compile(r"[^@\s/]+@([^@\s/]+\.[^@\s/]+)")
_HANDLE = re.compile(r"[\w.\-]{1,64}")
_STORE = re.compile(r"[a-z0-9][a-z0-9\-]{1,39}")


def _host(text: str) -> str:
    """A host in lower-case ASCII: a Unicode label becomes its punycode (`xn--`) form."""
    host = text.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        # Not a name IDNA accepts (a label too long, a forbidden character): still compared as
        # text, so it can only fail to equal one of ours.
        return host


def read_phone(text: str) -> str:
    """A number in E.164: 8 digits are Hong Kong's, 11 starting with 1 the mainland's."""
    raw = re.sub(r"[\s\-().]", "", text)
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    region = "CN" if len(raw) == 11 and raw.startswith("1") else "HK"
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise NotReadable() from None
    if not phonenumbers.is_possible_number(number):
        raise NotReadable()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def read_email(text: str) -> str:
    """An address ("Name <a@b>" and "mailto:" taken off), lower case, its domain in ASCII; or
    "@domain" for every address of a domain."""
    text = text.strip()
    found = re.search(r"<([^<>]+)>", text)
    if found:
        text = found.group(1)
    text = text.removeprefix("mailto:").strip().lower()
    if text.startswith("@") and "." in text:
        return "@" + _host(text[1:])
    if not _EMAIL.fullmatch(text):
        raise NotReadable()
    local, _at, domain = text.rpartition("@")
    return f"{local}@{_host(domain)}"


def read_web(text: str) -> str:
    """The host of a web address (any scheme, user part, port or path taken off)."""
    text = text.strip().translate(_DOTS)
    if "://" not in text:
        text = "http://" + text.lstrip("/")
    try:
        host = urlsplit(text).hostname
    except ValueError:
        raise NotReadable() from None
    host = _host(host or "")
    # A name of labels with a dot between (not "." alone, which "。" reads as, nor "a..b").
    if "." not in host or "" in host.split("."):
        raise NotReadable()
    return host


def read_handle(text: str) -> str:
    handle = text.strip().removeprefix("@").lower()
    if not _HANDLE.fullmatch(handle):
        raise NotReadable()
    return handle


def _profile(host: str, text: str) -> Reading | None:
    """A profile address on a platform we know (facebook.com/tongkahk): that platform's account."""
    bare = host.removeprefix("www.").removeprefix("m.")
    platform = PLATFORM_HOSTS.get(bare)
    if platform is None:
        return None
    path = urlsplit(text if "://" in text else "http://" + text).path
    first = next((p for p in path.split("/") if p), "")
    try:
        return Reading("social", read_handle(first), platform)
    except NotReadable:
        return None


def read(text: str) -> Reading:
    """What `text` is, normalised; NotReadable if it is none of the kinds we check."""
    text = (text or "").strip()
    if not text or len(text) > MAX_INPUT:
        raise NotReadable()
    if _PHONE.fullmatch(text) and sum(c.isdigit() for c in text) >= 6:
        return Reading("phone", read_phone(text))
    if "@" in text and not text.startswith("@") and "/" not in text.split("@")[0]:
        try:
            return Reading("email", read_email(text))
        except NotReadable:
            pass
    if text.startswith("@"):
        return Reading("social", read_handle(text))
    if "." in text.translate(_DOTS) or "://" in text:
        host = read_web(text)
        return _profile(host, text.translate(_DOTS)) or Reading("web", host)
    if _STORE.fullmatch(text.lower()):
        return Reading("store", text.lower())
    return Reading("social", read_handle(text))


def normalise(kind: str, text: str) -> str:
    """An official channel's value as the check compares it (the operator says which kind)."""
    if kind == "phone":
        return read_phone(text)
    if kind == "web":
        return read_web(text)
    if kind == "email":
        return read_email(text)
    if kind == "social":
        return read_handle(text)
    raise NotReadable()


# --- the check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    reading: Reading
    official: bool
    labels: Mapping[str, str] | None = None  # what it is, by language, when official
    looks_like_ours: bool = False

    def label(self, language: str) -> str | None:
        if self.labels is None:
            return None
        return self.labels.get(language) or self.labels.get("en")


def _store_labels(store: Store) -> dict[str, str]:
    return {language: store.name(language) for language in ("en", "zh-Hans", "zh-Hant")}


def _matches(reading: Reading) -> Any:
    channel = OfficialChannel
    if reading.kind == "web":
        labels = reading.value.split(".")
        # The host itself and each parent domain: a subdomain of ours is ours.
        parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        return (channel.kind == "web") & channel.value.in_(parents)
    if reading.kind == "email":
        domain = "@" + reading.value.rpartition("@")[2]
        return (channel.kind == "email") & channel.value.in_([reading.value, domain])
    if reading.kind == "social":
        found = (channel.kind == "social") & (channel.value == reading.value)
        return found & (channel.platform == reading.platform) if reading.platform else found
    return (channel.kind == reading.kind) & (channel.value == reading.value)


def check(session: Session, text: str) -> Answer:
    """Whether `text` is one of tongka's channels, and what it is."""
    reading = read(text)
    if reading.kind == "store":
        store = session.scalar(
            select(Store).where(Store.code == reading.value, Store.active.is_(True))
        )
        if store is not None:
            return Answer(reading, True, _store_labels(store))
        reading = Reading("social", reading.value)  # a word: perhaps an account's name
    found = session.scalars(
        select(OfficialChannel)
        .where(_matches(reading), OfficialChannel.active.is_(True))
        .order_by(OfficialChannel.created_at)
        .limit(1)
    ).first()
    if found is not None:
        return Answer(reading, True, found.labels)
    looks = any(name in reading.value or name in text.lower() for name in OUR_NAMES)
    return Answer(reading, False, None, looks)


KIND_NAMES = {
    "phone": _("Phone number"),
    "web": _("Web site"),
    "email": _("Email sender"),
    "social": _("Social-media account"),
    "store": _("Store"),
}
OFFICIAL = _("This is {what}.")
NOT_OFFICIAL = _(
    "This is not one of tongka's channels. Do not pay or give a code; report it below."
)
LOOKS_LIKE = _("It uses tongka's name, but it is not ours: impostors copy our name.")


def answer_view(answer: Answer, language: str) -> dict[str, Any]:
    """The answer as the page and the API say it, in `language`."""
    what = answer.label(language)
    return {
        "official": answer.official,
        "kind": answer.reading.kind,
        "kind_name": gettext(KIND_NAMES[answer.reading.kind], language),
        "normalised": answer.reading.value,
        "platform": answer.reading.platform or None,
        "what": what,
        "message": gettext(OFFICIAL, language, what=what)
        if answer.official
        else gettext(NOT_OFFICIAL, language),
        "looks_like_ours": answer.looks_like_ours,
        "warning": gettext(LOOKS_LIKE, language) if answer.looks_like_ours else None,
    }


def count_check(sessions: sessionmaker[Session], address: str | None) -> None:
    """Count one check against the client's address, in a transaction of its own: a check is a GET,
    whose request session only reads. Refused (and not counted) once the hour's checks are used."""
    if address:
        with transaction(sessions) as session:
            throttle.take(session, CHECKS_BY_ADDRESS, address)


# --- the list -----------------------------------------------------------------------------------


def _seen(channel: OfficialChannel) -> dict[str, Any]:
    return {
        "kind": channel.kind,
        "platform": channel.platform,
        "value": channel.value,
        "labels": dict(channel.labels),
        "active": channel.active,
    }


def channels(session: Session, *, active_only: bool = False) -> list[OfficialChannel]:
    query = select(OfficialChannel)
    if active_only:
        query = query.where(OfficialChannel.active.is_(True))
    return list(
        session.scalars(
            query.order_by(
                OfficialChannel.active.desc(), OfficialChannel.kind, OfficialChannel.value
            )
        )
    )


def add_channel(
    session: Session,
    actor: Staff,
    *,
    kind: str,
    value: str,
    labels: Mapping[str, str],
    platform: str = "",
) -> OfficialChannel:
    """Put a channel on the list (or back on it, with these labels, if it was removed)."""
    if kind not in CHANNEL_KINDS:
        raise NotReadable()
    platform = platform.strip().lower() if kind == "social" else ""
    normalised = normalise(kind, value)
    existing = session.scalar(
        select(OfficialChannel).where(
            OfficialChannel.kind == kind,
            OfficialChannel.platform == platform,
            OfficialChannel.value == normalised,
        )
    )
    if existing is not None and existing.active:
        raise ChannelExists()
    before = _seen(existing) if existing is not None else None
    channel = existing or OfficialChannel(kind=kind, platform=platform, value=normalised)
    channel.labels = {k: v.strip() for k, v in labels.items() if v and v.strip()}
    if "en" not in channel.labels:
        raise Unprocessable(_("Say what it is in English at least."))
    channel.active = True
    session.add(channel)
    session.flush()
    audit.record(
        session,
        actor,
        "official.add",
        "official_channel",
        channel.id,
        before=before,
        after=_seen(channel),
    )
    return channel


def remove_channel(session: Session, actor: Staff, channel_id: uuid.UUID) -> OfficialChannel:
    """Take a channel off the list (kept, inactive, so the audit log still names it)."""
    channel = session.get(OfficialChannel, channel_id)
    if channel is None:
        raise ChannelNotFound()
    before = _seen(channel)
    channel.active = False
    audit.record(
        session,
        actor,
        "official.remove",
        "official_channel",
        channel.id,
        before=before,
        after=_seen(channel),
    )
    return channel


def find_channel(session: Session, kind: str, value: str) -> OfficialChannel | None:
    normalised = normalise(kind, value)
    return session.scalar(
        select(OfficialChannel).where(
            OfficialChannel.kind == kind, OfficialChannel.value == normalised
        )
    )


# --- scam reports -------------------------------------------------------------------------------


def screenshot_type(data: bytes) -> str:
    """The picture's type from its first bytes (never from what the browser says)."""
    if len(data) > SCREENSHOT_MAX_BYTES:
        raise ScreenshotRefused()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    raise ScreenshotRefused()


def _campaign(session: Session, key: str) -> ScamCampaign:
    found = session.scalar(select(ScamCampaign).where(ScamCampaign.key == key))
    if found is not None:
        return found
    try:
        with session.begin_nested():  # two first reports at once: one makes it, both use it
            campaign = ScamCampaign(key=key, status="new", note="")
            session.add(campaign)
        return campaign
    except IntegrityError:
        return session.scalars(select(ScamCampaign).where(ScamCampaign.key == key)).one()


def report(
    session: Session,
    *,
    value: str,
    seen_in: str,
    text: str = "",
    screenshot: bytes | None = None,
    address: str | None = None,
    now: datetime | None = None,
) -> ScamReport:
    """A suspected scam, grouped with every other report of the same reading."""
    now = now or clock.now()
    if seen_in not in SEEN_IN:
        raise Unprocessable(_("Choose one of the options."))
    reading = read(value)
    kind = screenshot_type(screenshot) if screenshot else None
    if address:
        throttle.take(session, REPORTS_BY_ADDRESS, address, now)
    throttle.take(session, REPORTS_BY_VALUE, reading.key, now)
    campaign = _campaign(session, reading.key)
    entry = ScamReport(
        campaign_id=campaign.id,
        value=value.strip()[:MAX_INPUT],
        seen_in=seen_in,
        text=text.strip()[:2000],
        screenshot=screenshot or None,
        screenshot_type=kind,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class Campaign:
    id: uuid.UUID
    key: str
    status: str
    note: str
    count: int
    first_seen: datetime
    last_seen: datetime
    seen_in: list[str]
    screenshots: int


def campaigns(session: Session, status: str | None = None, limit: int = 100) -> list[Campaign]:
    """Reported values, the most recently reported first: how often, when, where seen."""
    query = (
        select(
            ScamCampaign,
            func.count(ScamReport.id),
            func.min(ScamReport.created_at),
            func.max(ScamReport.created_at),
            func.count(ScamReport.screenshot_type),
        )
        .join(ScamReport, ScamReport.campaign_id == ScamCampaign.id)
        .group_by(ScamCampaign.id)
        .order_by(func.max(ScamReport.created_at).desc(), ScamCampaign.key)
        .limit(limit)
    )
    if status is not None:
        query = query.where(ScamCampaign.status == status)
    rows = session.execute(query).all()
    ids = [row[0].id for row in rows]
    where: dict[uuid.UUID, set[str]] = {}
    for campaign_id, seen in session.execute(
        select(ScamReport.campaign_id, ScamReport.seen_in)
        .where(ScamReport.campaign_id.in_(ids))
        .distinct()
    ):
        where.setdefault(campaign_id, set()).add(seen)
    return [
        Campaign(
            c.id,
            c.key,
            c.status,
            c.note,
            count,
            first,
            last,
            [s for s in SEEN_IN if s in where.get(c.id, set())],
            shots,
        )
        for c, count, first, last, shots in rows
    ]


def reports(session: Session, campaign_id: uuid.UUID, limit: int = 200) -> list[ScamReport]:
    return list(
        session.scalars(
            select(ScamReport)
            .where(ScamReport.campaign_id == campaign_id)
            .order_by(ScamReport.created_at.desc())
            .limit(limit)
        )
    )


def campaign(session: Session, campaign_id: uuid.UUID) -> ScamCampaign:
    found = session.get(ScamCampaign, campaign_id)
    if found is None:
        raise CampaignNotFound()
    return found


def review(
    session: Session, actor: Staff, campaign_id: uuid.UUID, *, status: str, note: str
) -> ScamCampaign:
    """Mark a reported value reviewed or reported to the police, with a note (what was blocked)."""
    if status not in CAMPAIGN_STATUSES:
        raise Unprocessable(_("Choose one of the options."))
    found = campaign(session, campaign_id)
    before = {"status": found.status, "note": found.note}
    found.status, found.note = status, note.strip()[:2000]
    audit.record(
        session,
        actor,
        "scam_report.review",
        "scam_campaign",
        found.id,
        before=before,
        after={"status": found.status, "note": found.note},
    )
    return found


def screenshot(session: Session, report_id: uuid.UUID) -> ScamReport:
    found = session.get(ScamReport, report_id)
    if found is None or found.screenshot is None:
        raise CampaignNotFound()
    return found
