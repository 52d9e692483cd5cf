"""What GET /api/v1/lines/{line_id}/balance costs the database: a fixed number of statements,
however long the line's charging history and however many buckets and debts it has (issue 12)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.charging import calls as charging
from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, MAINLAND_PLMN
from tests.charging.test_usage import owned_line
from tests.ledger.factories import T0
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.money import MB

# The token with its account and the line's owner in one statement; the line's buckets with their
# balances and its debts in every zone in another; on SQLite the BEGIN too (tongka.db begins its
# transactions itself).
MOST = 3


def read(client, app, line, headers) -> tuple[int, dict[str, Any]]:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        r = client.get(f"/api/v1/lines/{line.id}/balance", headers=headers)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
    assert r.status_code == 200, r.text
    return len([s for s in seen if not s.startswith("PRAGMA")]), r.json()


def test_a_balance_read_costs_the_same_whatever_the_history_buckets_and_debts(
    client, app, session
) -> None:  # type: ignore[no-untyped-def]
    line, headers = owned_line(client, session)  # a bucket in each zone
    first, balance = read(client, app, line, headers)
    assert first <= MOST
    assert balance["zones"]["hk"]["remaining_bytes"] == 500 * MB

    # 1,000 charging updates on the line
    for plmn in (HK_PLMN, MAINLAND_PLMN):
        cs = f.open_session(session, line, plmn)
        for n in range(500):
            result = charging.request_quota(session, cs, 10, MB // 4, 600, T0)
            charging.report_usage(session, result.grant, MB // 8)
            if n % 100 == 99:
                session.commit()
    session.commit()
    after_history, balance = read(client, app, line, headers)
    assert balance["zones"]["hk"]["remaining_bytes"] == 500 * MB - 500 * (MB // 8)
    assert after_history == first

    # 60 more buckets, and a debt in each zone
    for n in range(60):
        f.bucket(session, line, ("hk", "mainland", "both")[n % 3], MB)
    for zone in ("hk", "mainland"):
        debt = buckets.debt_account(session, line.id, zone, create=True)
        assert debt is not None
        ledger.transfer(
            session,
            debt,
            ledger.system_account(session, "data_used", "bytes"),
            MB,
            reason="usage",
            reference=f"test:{zone}",
        )
    session.commit()
    crowded, balance = read(client, app, line, headers)
    assert crowded == first
    assert len(balance["buckets"]) == 62
    assert balance["zones"]["mainland"]["owed_bytes"] == MB
    assert balance["zones"]["hk"]["bucket_count"] == 1 + 40
