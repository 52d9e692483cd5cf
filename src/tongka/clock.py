"""The one source of the current time, so tests can move it (`monkeypatch.setattr(clock, "now", ...)`).

Call it as `clock.now()`, never `from tongka.clock import now`, or a test cannot move it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
