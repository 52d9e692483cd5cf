"""The signed renewal link the network sends a phone to when its data runs out.

`/renew/{line_id}?exp=<unix time>&sig=<hex>`: `sig` is an HMAC-SHA256 over the line id and the
expiry, under a key derived from tongka's secret key for this purpose only (the charging worker,
maybe a process of its own, holds that derived key, never the secret key itself). A valid link
lets the page offer that line's packs without a log-in, showing only the masked number; it is
made by tongka alone and lasts `renew_link_ttl_seconds` (24 h by default).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Verdict = Literal["valid", "expired", "bad"]


def link_key(secret_key: str) -> bytes:
    """The key renewal links are signed with, derived from the secret key."""
    return hmac.new(secret_key.encode(), b"tongka:renew-link", hashlib.sha256).digest()


def signature(key: bytes, line_id: uuid.UUID, expires: int) -> str:
    return hmac.new(key, f"{line_id}.{expires}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RenewLinks:
    """Makes the network's redirect addresses (picklable: a charging worker process gets a copy)."""

    base_url: str
    key: bytes
    ttl_seconds: int

    def url(self, line_id: uuid.UUID, now: datetime) -> str:
        expires = int(now.timestamp()) + self.ttl_seconds
        sig = signature(self.key, line_id, expires)
        return f"{self.base_url.rstrip('/')}/renew/{line_id}?exp={expires}&sig={sig}"


def check(key: bytes, line_id: uuid.UUID, exp: str, sig: str, now: datetime) -> Verdict:
    """ "bad" for a signature tongka did not make (say nothing more), "expired" for one it made that
    has lapsed, else "valid"."""
    if not exp.isdigit() or len(exp) > 12:
        return "bad"
    if not hmac.compare_digest(signature(key, line_id, int(exp)), sig):
        return "bad"
    return "valid" if int(exp) > now.timestamp() else "expired"
