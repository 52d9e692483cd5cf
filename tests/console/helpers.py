"""What the console's tests share: an admin's browser, and posting a console form as it would."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.web.helpers import ACCEPT_HTML, form_token


def post(client: httpx.Client, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Open `page` (for its form's CSRF token), then POST `data` to `action`; the answer, unfollowed."""
    token = form_token(client, page)
    return client.post(
        action, data={"csrf_token": token, **data}, headers=ACCEPT_HTML, follow_redirects=False
    )


def text(html: str) -> str:
    """A page's text with tags dropped and spaces squeezed, to look for a sentence in it."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")
