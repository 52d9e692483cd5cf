"""Languages of the service: zh-Hans (mainland), zh-Hant (Hong Kong), en.

Text is written in English in the code, marked with `_()` so that
`pybabel extract` finds it, and translated from the gettext catalogs in
`tongka/locale/<lang>/LC_MESSAGES/messages.po`, read directly with Babel.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Literal

from babel import Locale, UnknownLocaleError
from babel.dates import format_timedelta
from babel.messages.pofile import read_po

Language = Literal["zh-Hans", "zh-Hant", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-Hans", "zh-Hant", "en")
DEFAULT_LANGUAGE: Language = "en"
LOCALE_DIR = Path(__file__).parent / "locale"


def _(message: str) -> str:
    """Marks a message for extraction; translation happens later, in the reader's language."""
    return message


@cache
def catalog(language: Language) -> dict[str, str]:
    """A language's translations as `gettext` reads them: {English message: translation}."""
    path = LOCALE_DIR / language.replace("-", "_") / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as f:
        po = read_po(f)
    return {
        m.id: m.string
        for m in po
        # Plural messages (tuples of forms) are not used.
        if m.id and m.string and not m.fuzzy and isinstance(m.id, str) and isinstance(m.string, str)
    }


def gettext(message: str, language: str, **params: object) -> str:
    text = catalog(language).get(message, message) if language in LANGUAGES else message
    return text.format(**params) if params else text


# Babel's locale for each of our languages (durations, in `wait`).
_BABEL = {"en": "en", "zh-Hans": "zh_Hans_CN", "zh-Hant": "zh_Hant_HK"}


def babel_locale(language: str) -> str:
    """Babel's locale for one of our languages (dates, numbers); English for any other."""
    return _BABEL.get(language, "en")


def wait(seconds: int, language: str) -> str:
    """A wait as a person says it: "45 seconds", "15 hours", "15小时" (rounded to its largest unit;
    Retry-After keeps the exact seconds)."""
    return format_timedelta(
        timedelta(seconds=seconds), threshold=1, format="long", locale=_BABEL.get(language, "en")
    )


def to_language(tag: str) -> Language | None:
    """Map a BCP 47 tag (zh-HK, zh-CN, zh-Hant, en-GB) to one of ours, by script."""
    try:
        locale = Locale.parse(tag.strip().replace("_", "-"), sep="-")
    except (ValueError, UnknownLocaleError):
        return None
    if locale.language == "en":
        return "en"
    if locale.language == "zh":
        return "zh-Hant" if locale.script == "Hant" else "zh-Hans"
    return None


def negotiate(accept_language: str | None) -> Language:
    """The best of our languages for an Accept-Language header, by quality value."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            choices.append((-quality, position, tag))
    for _q, _pos, tag in sorted(choices):
        language = to_language(tag)
        if language:
            return language
    return DEFAULT_LANGUAGE
