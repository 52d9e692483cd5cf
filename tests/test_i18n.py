"""Every message the code marks with _() has a translation in both Chinese catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

import tongka
from tongka.i18n import catalog, gettext, negotiate

SOURCE = Path(tongka.__file__).parent


def marked_messages() -> set[str]:
    """_() in the code and in the web site's templates (Jinja2, read by Jinja2's Babel extractor)."""
    found = extract_from_dir(
        str(SOURCE),
        method_map=[("**.py", "python"), ("templates/web/**.html", "jinja2.ext:babel_extract")],
        keywords={"_": None},
    )
    return {
        message for _file, _line, message, _comments, _context in found if isinstance(message, str)
    }


@pytest.mark.parametrize("language", ["zh-Hans", "zh-Hant"])
def test_every_marked_message_is_translated(language: str) -> None:
    messages = marked_messages()
    assert len(messages) > 30
    missing = sorted(m for m in messages if m not in catalog(language))  # type: ignore[arg-type]
    assert not missing, f"untranslated in {language}: {missing}"


def test_placeholders_survive_translation() -> None:
    for message in marked_messages():
        for language in ("zh-Hans", "zh-Hant"):
            translated = catalog(language)[message]  # type: ignore[arg-type]
            assert sorted(_fields(translated)) == sorted(_fields(message)), (language, message)


def _fields(text: str) -> list[str]:
    import string

    return [name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("zh-CN,zh;q=0.9", "zh-Hans"),
        ("zh-HK", "zh-Hant"),
        ("zh-TW,en;q=0.5", "zh-Hant"),
        ("fr-FR, en;q=0.8", "en"),
        ("de, zh-Hant;q=0.4, zh-Hans;q=0.6", "zh-Hans"),
        ("garbage;;q=x", "en"),
    ],
)
def test_negotiate(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_gettext_formats_in_language() -> None:
    assert (
        gettext("The code is wrong. {remaining} tries left.", "zh-Hans", remaining=2)
        == "验证码错误，还可以尝试 2 次。"
    )
    assert gettext("No such order.", "xx") == "No such order."


def test_a_wait_is_said_in_words_of_the_readers_language() -> None:
    from tongka.account.service import LoginThrottled

    refusal = LoginThrottled(seconds=54_000)
    assert refusal.headers() == {"Retry-After": "54000"}
    assert refusal.detail("en") == "Too many failed log-ins. Try again in 15 hours."
    assert refusal.detail("zh-Hans") == "登录失败次数过多，请在15小时后再试。"
    assert "15 小時後" in refusal.detail("zh-Hant")
    assert "1 second." in LoginThrottled(seconds=1).detail("en")
