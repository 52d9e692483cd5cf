"""What the web site's tests share: reading a form's CSRF token off a page, and a browser signed in."""

from __future__ import annotations

import re

import httpx

from tests import factories as f

ACCEPT_HTML = {"Accept": "text/html,application/xhtml+xml"}


def csrf(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def form_token(client: httpx.Client, path: str) -> str:
    """GET a page as a browser does (which also sets the CSRF cookie) and read its form's token."""
    r = client.get(path, headers=ACCEPT_HTML)
    assert r.status_code == 200, r.text
    return csrf(r.text)


def signed_in(client: httpx.Client, language: str = "en") -> dict[str, str]:
    """A new subscriber whose browser (`client`) holds a session cookie; their API headers.

    The web session is an access token like the app's, so one issued by the API signs the
    browser in (the log-in page itself is tested on its own)."""
    headers = f.subscriber(client, language=language)
    client.cookies.set("tongka_session", headers["Authorization"].removeprefix("Bearer "))
    return headers
