"""The web site in a real headless Chromium at phone size, in each language: every page passes axe,
loads nothing from another host, breaks no CSP rule, shows no English on a Chinese page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.site import LOCALES, PHONE, Watch, check_page

pytestmark = pytest.mark.e2e

LANGUAGES = ("zh-Hans", "zh-Hant", "en")


@pytest.fixture
def phone(
    browser: Any, live_server: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, Watch]]:
    """A new phone-sized tab whose browser speaks the test's language."""
    language = getattr(request, "param", "en")
    context = browser.new_context(
        base_url=live_server,
        viewport=PHONE,
        locale=LOCALES[language],
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(10_000)
    watch = Watch(live_server)
    page = context.new_page()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_pages_pass_axe_in_each_language(
    browser: Any, live_server: str, language: str
) -> None:
    context = browser.new_context(base_url=live_server, viewport=PHONE, locale=LOCALES[language])
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        for path in ("/", "/stores", "/register", "/login", "/password/forgot", "/no-such-page"):
            page.goto(f"{path}?lang={language}")
            check_page(page, language, watch, seen)
    finally:
        context.close()
    assert [p for p in watch.problems if "404" not in p] == []
