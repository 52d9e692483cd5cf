"""Auto-renew test helpers: a subscriber's line with data and a wallet, a rule set through the API,
data used through the charging engine, and one evaluation as the job runs it."""

from __future__ import annotations

import itertools
import uuid
from typing import Any, NamedTuple

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.charging import calls
from tests.charging import factories as cf
from tongka import clock
from tongka.account.models import Account, Line
from tongka.alerts.models import AlertEvent
from tongka.autorenew.models import AutoRenewAttempt, AutoRenewRule
from tongka.config import Settings
from tongka.db import transaction
from tongka.money import GB
from tongka.order.models import Order
from tongka.payment import providers as payment_providers
from tongka.renewal import autorenew
from tongka.wallet import service as wallets

_refs = itertools.count(1)


class Owner(NamedTuple):
    headers: dict[str, str]
    line_id: uuid.UUID
    account_id: uuid.UUID


def owner(
    client: TestClient,
    sessions: sessionmaker[Session],
    *,
    data: int = 10 * GB,
    wallet: int = 200_00,
    currency: str = "HKD",
    language: str = "en",
) -> Owner:
    """A new subscriber whose bound line has `data` bytes in Hong Kong and whose wallet has `wallet`."""
    sub = f.new_subscriber(client, sessions, language=language)
    line_id = uuid.UUID(sub.line["id"])
    with transaction(sessions) as s:
        account = s.scalars(select(Account).where(Account.username == sub.username)).one()
        cf.bucket(s, s.get_one(Line, line_id), "hk", data, valid_from=clock.now())
        if wallet:
            wallets.credit(s, account, wallet, currency, reference=f"test-{account.id}")
        else:
            wallets.open_wallet(s, account, currency)
        return Owner(sub.headers, line_id, account.id)


def rule(client: TestClient, who: Owner, expect: int = 200, **body: Any) -> dict[str, Any]:
    """Set the line's rule through the API: buy hk-5gb-30d below 20 % in Hong Kong, HK$200 a month."""
    values = {
        "zone": "hk",
        "threshold_percent": 20,
        "pack_id": f.pack_id(client, "hk-5gb-30d"),
        "source": "wallet",
        "monthly_cap": 200_00,
        "currency": "HKD",
        **body,
    }
    r = client.put(f"/api/v1/lines/{who.line_id}/auto-renew", json=values, headers=who.headers)
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


def use(sessions: sessionmaker[Session], who: Owner, used: int) -> None:
    """`used` bytes in Hong Kong, charged by the charging engine (from the line's buckets)."""
    with transaction(sessions) as s:
        line = s.get_one(Line, who.line_id)
        calls.charge_usage(s, line, "hk", used, clock.now(), reference=f"use-{next(_refs)}")


def run(sessions: sessionmaker[Session], settings: Settings) -> autorenew.Report:
    return autorenew.run(sessions, payment_providers.build(settings), settings)


def attempts(sessions: sessionmaker[Session], who: Owner) -> list[AutoRenewAttempt]:
    with sessions() as s:
        return list(
            s.scalars(
                select(AutoRenewAttempt)
                .where(AutoRenewAttempt.line_id == who.line_id)
                .order_by(AutoRenewAttempt.created_at)
            )
        )


def orders(sessions: sessionmaker[Session], who: Owner) -> list[tuple[str, str, int]]:
    """(channel, status, amount) of the line's orders, oldest first."""
    with sessions() as s:
        return [
            (o.channel, o.status, o.amount)
            for o in s.scalars(
                select(Order).where(Order.line_id == who.line_id).order_by(Order.created_at)
            )
        ]


def wallet(sessions: sessionmaker[Session], who: Owner) -> int:
    with sessions() as s:
        found = wallets.wallet_of(s, who.account_id)
        assert found is not None
        return found.ledger_account.available


def alerts(sessions: sessionmaker[Session], who: Owner) -> list[tuple[str, dict[str, Any]]]:
    with sessions() as s:
        return [
            (e.kind, e.params)
            for e in s.scalars(
                select(AlertEvent)
                .where(AlertEvent.account_id == who.account_id, AlertEvent.kind.like("auto_renew%"))
                .order_by(AlertEvent.created_at)
            )
        ]


def the_rule(sessions: sessionmaker[Session], who: Owner) -> AutoRenewRule:
    with sessions() as s:
        found = s.scalars(select(AutoRenewRule).where(AutoRenewRule.line_id == who.line_id)).one()
        s.expunge(found)
        return found
