"""Charging test helpers: the seeded network registry, lines with buckets, open sessions."""

from __future__ import annotations

import importlib.util
import itertools
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.charging import calls
from tests.ledger import factories as lf
from tests.ledger.factories import T0
from tongka.account.models import Line
from tongka.charging.models import ChargingSession, Network
from tongka.ledger import buckets
from tongka.ledger.models import Bucket

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0003_charging.py"
DAY = timedelta(days=1)
HK_PLMN, MAINLAND_PLMN = "454-00", "460-00"  # HKT/csl, China Mobile

_refs = itertools.count(1)


def seeded_networks() -> list[tuple[str, str, tuple[str, ...]]]:
    """The registry as migration 0003 seeds it: (operator, zone, PLMNs)."""
    spec = importlib.util.spec_from_file_location("migration_0003", MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NETWORKS


def ensure_networks(session: Session) -> None:
    """Put back the seeded registry where the test database was emptied (PostgreSQL truncates every table)."""
    if session.scalar(select(func.count()).select_from(Network)):
        return
    for operator, zone, plmns in seeded_networks():
        for plmn in plmns:
            session.add(
                Network(
                    plmn=plmn, mcc=plmn[:3], mnc=plmn[4:], operator=operator, zone=zone, active=True
                )
            )
    session.flush()


def line(session: Session) -> Line:
    return lf.line(session)


def bucket(
    session: Session,
    line: Line,
    zone: str,
    amount: int,
    *,
    days: float = 30,
    valid_from: datetime = T0,
) -> Bucket:
    return buckets.grant(
        session,
        line_id=line.id,
        zone=zone,
        amount=amount,
        valid_from=valid_from,
        expires_at=valid_from + timedelta(days=days),
        reason="pack_purchase",
        reference=f"order:test-{next(_refs)}",
    )


def open_session(session: Session, line: Line, plmn: str = HK_PLMN) -> ChargingSession:
    return calls.open_session(session, line, plmn, f"ref-{next(_refs)}")


def remaining(session: Session, bucket: Bucket) -> int:
    """A bucket's available balance as stored now."""
    d_posted, c_posted, d_pending, _ = lf.balances(session, bucket.account)
    return c_posted - d_posted - d_pending
