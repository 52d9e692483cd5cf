"""What the console's forms share: reading a posted form's fields, and local times."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# The console's times are Hong Kong time (Shenzhen keeps the same), as staff read a clock.
LOCAL_TIME = ZoneInfo("Asia/Hong_Kong")
LANGUAGES = ("en", "zh-Hans", "zh-Hant")


def text(posted: Any, name: str) -> str:
    value = posted.get(name)
    return value.strip() if isinstance(value, str) else ""


def chosen(posted: Any, name: str, allowed: tuple[str, ...]) -> list[str]:
    """The ticked boxes called `name`, in `allowed`'s order."""
    ticked = {v for v in posted.getlist(name) if isinstance(v, str)}
    return [a for a in allowed if a in ticked]


def names(posted: Any, prefix: str = "name") -> dict[str, str]:
    """A name per language from the fields `name_en`, `name_zh-Hans`, `name_zh-Hant`; empty ones left out."""
    return {
        lang: text(posted, f"{prefix}_{lang}")
        for lang in LANGUAGES
        if text(posted, f"{prefix}_{lang}")
    }


def local_time(value: str) -> datetime | None:
    """A `datetime-local` field (Hong Kong time) as an aware time; None when empty. ValueError when
    it is not a time."""
    return datetime.fromisoformat(value).replace(tzinfo=LOCAL_TIME) if value else None


def local_input(moment: datetime | None) -> str:
    """An aware time as a `datetime-local` field's value, in Hong Kong time."""
    return "" if moment is None else moment.astimezone(LOCAL_TIME).strftime("%Y-%m-%dT%H:%M")
