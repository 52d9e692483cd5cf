"""What the web site's browser tests check on every page: axe-core's accessibility rules, nothing
from another host, no CSP violation, no English left on a Chinese page, and links that lead somewhere."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from tongka.i18n import catalog

ROOT = Path(__file__).resolve().parents[2]
# axe-core from the npm registry (package.json's devDependencies, installed by `make`).
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
LOCALES = {"zh-Hans": "zh-CN", "zh-Hant": "zh-HK", "en": "en-GB"}
# Screenshots of the main pages, when asked for (`make screenshots` sets it to docs/screenshots).
SHOTS = os.environ.get("TONGKA_SCREENSHOTS")

# Words that stay as they are on a Chinese page: names, units, the language menu.
LATIN_ALLOWED = {
    "tongka",
    "English",
    "GB",
    "MB",
    "KB",
    "HK",
    "WeChat",
    "Pay",
    "Alipay",
    "PayPal",
    "Visa",
    "Mastercard",
    "CSV",
    "QR",
    "SIM",
    "eSIM",
    "MTR",
    "ICCID",
    "CNY",
    "HKD",
}


@dataclass
class Watch:
    """Problems seen on a page while a test used it: CSP violations, requests to another host."""

    base_url: str
    problems: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        ours = urlsplit(self.base_url).netloc
        # A page answered 4xx on purpose is not a problem; a stylesheet or script that fails is.
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text}")
                if "Content Security Policy" in m.text
                or (m.type == "error" and not m.text.startswith("Failed to load resource"))
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"{r.status}: {r.url}")
                if r.status >= 400 and r.request.resource_type != "document"
                else None
            ),
        )
        page.on(
            "request",
            lambda r: (
                self.problems.append(f"another host: {r.url}")
                if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != ours
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A and AA)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, which the page's CSP does not govern.
        page.evaluate(AXE.read_text())
    found = page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
            .then(r => r.violations
              .filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')))"""
    )
    return list(found)


def english_left(text: str, language: str) -> list[str]:
    """On a Chinese page: the site's own English sentences shown untranslated, and any run of three
    or more English words (which no Chinese page should have, names and units apart)."""
    if language == "en":
        return []
    left = [
        message
        for message, translated in catalog(language).items()  # type: ignore[arg-type]
        if translated != message
        and "{" not in message
        and len(message) >= 6
        and re.search(rf"(?<![\w@.-]){re.escape(message)}(?![\w@.-])", text)
    ]
    for run in re.findall(r"[A-Za-z][A-Za-z'’-]*(?:[ ,.]+[A-Za-z][A-Za-z'’-]*){2,}", text):
        words = re.findall(r"[A-Za-z][A-Za-z'’-]*", run)
        if sum(w not in LATIN_ALLOWED for w in words) >= 3:
            left.append(run)
    return left


def local_links(page: Any, base_url: str) -> set[str]:
    """Every link on the page to this site (no fragment), as absolute URLs."""
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    links = set()
    for href in hrefs:
        if href.startswith(("mailto:", "tel:", "geo:", "#", "javascript:")):
            continue
        url = urljoin(page.url, href).split("#")[0]
        if urlsplit(url).netloc == urlsplit(base_url).netloc:
            links.add(url)
    return links


def check_page(page: Any, language: str, watch: Watch, seen: dict[str, list[str]]) -> None:
    """The checks every page gets: <html lang>, axe, the language; its links noted for later."""
    assert page.locator("html").get_attribute("lang") == language, page.url
    violations = axe_violations(page)
    assert not violations, f"{page.url}: {violations}"
    left = english_left(page.inner_text("body"), language)
    assert not left, f"{page.url} in {language} shows English: {left}"
    key = urlsplit(page.url).path
    seen.setdefault(key, []).extend(sorted(local_links(page, watch.base_url)))


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
