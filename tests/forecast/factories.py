"""A line with Hong Kong data and four weeks of steady use, on Monday 7 December 2026 at noon."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from tests.charging.factories import HK_PLMN, ensure_networks
from tongka.charging.models import UsageDay
from tongka.db import transaction
from tongka.forecast import model
from tongka.ledger import buckets

TODAY = date(2026, 12, 7)  # a Monday
NOON = model.day_start(TODAY) + timedelta(hours=12)


def given(
    sessions: sessionmaker[Session], line_id: str, *, hk_daily: int, hk_left: int, now: datetime
) -> None:
    """The line has `hk_left` bytes of Hong Kong data for 30 days, and used `hk_daily` a day for 4 weeks."""
    with transaction(sessions) as s:
        ensure_networks(s)
        buckets.grant(
            s,
            line_id=uuid.UUID(line_id),
            zone="hk",
            amount=hk_left,
            valid_from=now,
            expires_at=now + timedelta(days=30),
            reason="pack_purchase",
            reference=f"order:test-{uuid.uuid4()}",
        )
        for i in range(1, 29 if hk_daily else 1):
            s.add(
                UsageDay(
                    line_id=uuid.UUID(line_id),
                    day=TODAY - timedelta(days=i),
                    zone="hk",
                    plmn=HK_PLMN,
                    bytes=hk_daily,
                    zero_rated_bytes=0,
                )
            )
