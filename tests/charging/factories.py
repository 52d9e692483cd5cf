"""Charging test helpers: the seeded network registry, lines with buckets or overage, open sessions."""

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
from tongka.account.models import Account, Line
from tongka.charging import overage
from tongka.charging.models import ChargingSession, Network
from tongka.ledger import buckets
from tongka.ledger.models import Bucket
from tongka.wallet import service as wallets

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0003_charging.py"
DAY = timedelta(days=1)
HK_PLMN, MAINLAND_PLMN = "454-00", "460-00"  # HKT/csl, China Mobile
HK_RATE = 5  # overage_line's price in Hong Kong: HK$0.05 a MB (the mainland's is 2 cents more)

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


def overage_line(
    session: Session, *, wallet: int = 0, cap: int | None = None, currency: str = "HKD"
) -> tuple[Line, Account]:
    """A line whose owner has `wallet` minor units, with overage on up to `cap` if a cap is given."""
    owner = Account(
        username=f"owner{next(_refs)}", email="o@example.com", password_hash="x", language="en"
    )
    session.add(owner)
    session.flush()
    line = lf.line(session)
    line.account_id = owner.id
    overage.set_rate(session, "hk", currency, HK_RATE)
    overage.set_rate(session, "mainland", currency, HK_RATE + 2)
    if wallet:
        wallets.credit(session, owner, wallet, currency, reference=f"test-{owner.id}")
    if cap is not None:
        overage.configure(session, line, owner, enabled=True, monthly_cap=cap, currency=currency)
    session.flush()
    return line, owner


def open_session(session: Session, line: Line, plmn: str = HK_PLMN) -> ChargingSession:
    return calls.open_session(session, line, plmn, f"ref-{next(_refs)}")


def remaining(session: Session, bucket: Bucket) -> int:
    """A bucket's available balance as stored now."""
    d_posted, c_posted, d_pending, _ = lf.balances(session, bucket.account)
    return c_posted - d_posted - d_pending
