"""Messages from templates: every SMS and email is a template per language, rendered when it is queued.

The templates live in one place, `tongka/templates/messages/<name>/<language>.<part>`: `.sms` for an
SMS; `.subject`, `.txt` and `.html` for an email (its HTML extends `messages/_email.html`). They are
rendered with the same Babel formatting as the pages (money, data volumes, Hong Kong time), and the
outbox row keeps exactly what is sent, so a template changed later never alters a queued message.

An SMS template states on its first line how many segments its longest rendering fits
(`{# segments: 1 ... #}`): GSM-7 carries 160 characters in one segment and 153 in each part of a
longer one, UCS-2 (any Chinese character) 70 and 67. The tests render every SMS template at its
longest and hold it to that count, since each segment is paid for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tongka.config import public_base_url
from tongka.i18n import LANGUAGES, babel_locale
from tongka.money import Money, currency, format_bytes

DIRECTORY = Path(__file__).resolve().parent.parent / "templates" / "messages"
HONG_KONG = timezone(timedelta(hours=8), "HKT")  # no daylight saving time


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def sms(name: str, language: str, **params: Any) -> str:
    """The text of SMS `name` in `language` (English if it is not one of ours)."""
    return _render(name, _language(language), "sms", params).strip()


# Every email's frame says these (`_email.html`, and the plain-text twin here): the reader's
# anti-phishing code first, when they chose one; last, that we never ask for a payment by link
# (each template already says we never ask for a password or a code) and where to check one.
ANTI_PHISHING_LINE = {
    "en": "Your anti-phishing code: {code}",
    "zh-Hans": "您的防钓鱼码：{code}",
    "zh-Hant": "您的防釣魚碼：{code}",
}
CHECK_LINE = {
    "en": "tongka never asks for a payment by link. Is this official? Check a number or link at {url}",
    "zh-Hans": "通卡绝不会通过链接要求付款。是否官方渠道？可在 {url} 查核号码或链接",
    "zh-Hant": "通卡絕不會透過連結要求付款。是否官方渠道？可在 {url} 查核號碼或連結",
}


def official_url() -> str:
    return public_base_url() + "/official"


def email(
    name: str, language: str, *, anti_phishing_code: str | None = None, **params: Any
) -> Email:
    """Subject, plain text and HTML of email `name` in `language`: the HTML and its plain-text twin."""
    language = _language(language)
    code_line = (
        ANTI_PHISHING_LINE[language].format(code=anti_phishing_code) if anti_phishing_code else None
    )
    url = official_url()
    check_line = CHECK_LINE[language].format(url=url)
    frame = {"anti_phishing_line": code_line, "check_line": check_line, "official_url": url}
    text = _render(name, language, "txt", params).strip()
    body, signature, end = text.rpartition("\n-- \n")
    text = f"{body}\n\n{check_line}{signature}{end}" if signature else f"{text}\n\n{check_line}"
    if code_line:
        text = f"{code_line}\n\n{text}"
    return Email(
        subject=" ".join(_render(name, language, "subject", params).split()),
        text=text + "\n",
        html=_render(name, language, "html", {**frame, **params}),
    )


def templates() -> dict[str, set[str]]:
    """Each message's name and its parts (`sms`, or `subject`, `txt`, `html`), read from the directory."""
    found: dict[str, set[str]] = {}
    for path in DIRECTORY.glob("*/*.*"):
        found.setdefault(path.parent.name, set()).add(path.suffix.removeprefix("."))
    return found


def stated_segments(name: str, language: str) -> int:
    """The segment count an SMS template says its longest rendering fits (its first line)."""
    first = (DIRECTORY / name / f"{language}.sms").read_text(encoding="utf-8").splitlines()[0]
    found = re.match(r"\{#-?\s*segments:\s*(\d+)\b", first)
    if not found:
        raise ValueError(f"messages/{name}/{language}.sms does not state its segments first")
    return int(found.group(1))


# --- SMS segments -------------------------------------------------------------------------------

# GSM 03.38: the default alphabet, and the extension table (each of those takes two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segments:
    encoding: str  # gsm7 | ucs2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int


def segments(text: str) -> Segments:
    """How many SMS segments `text` takes, and in which encoding."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        single, part = 160, 153
        encoding = "gsm7"
    else:
        units = len(text.encode("utf-16-be")) // 2
        single, part = 70, 67
        encoding = "ucs2"
    count = 1 if units <= single else -(-units // part)
    return Segments(encoding, units, count)


# --- rendering ----------------------------------------------------------------------------------


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


def _render(name: str, language: str, part: str, params: dict[str, Any]) -> str:
    template = _environment().get_template(f"{name}/{language}.{part}")
    return template.render(language=language, **params)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(DIRECTORY),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,  # a missing value fails at queueing, not as a blank in a message
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["bytes"] = format_bytes
    env.filters["money"] = _money
    env.filters["hk_time"] = _hong_kong_time
    return env


def _money(part: dict[str, Any], language: str) -> str:
    return Money(part["amount"], currency(part["currency"])).format(language)


def _hong_kong_time(moment: datetime | str, language: str) -> str:
    """A moment as people in Hong Kong and the mainland read it (UTC+8), in the reader's language."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return format_datetime(moment, "medium", tzinfo=HONG_KONG, locale=babel_locale(language)) + (
        " (UTC+8)" if language == "en" else "（UTC+8）"
    )
