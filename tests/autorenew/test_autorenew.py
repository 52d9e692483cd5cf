"""Auto-renew: a crossing of the threshold buys once, within the month's cap; failures pause the rule."""

from __future__ import annotations

import threading

import pytest

from tests.autorenew import factories as af
from tongka.db import transaction
from tongka.jobs import registry
from tongka.ledger import service as ledger
from tongka.money import GB
from tongka.payment import providers as payment_providers
from tongka.renewal import autorenew


def test_a_crossing_buys_the_pack_once_from_the_wallet(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=150_00)
    af.rule(client, who)
    af.use(sessions, who, 7 * GB)  # 30 % left: above 20 %
    assert af.run(sessions, settings).bought == 0
    af.use(sessions, who, GB + GB // 2)  # 15 % left
    report = af.run(sessions, settings)
    assert (report.bought, report.failed) == (1, 0)
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]
    assert af.wallet(sessions, who) == 150_00 - 5800
    # The new 5 GB bucket lifts the line above the threshold: nothing more to buy, however often it runs.
    frozen_clock.advance(minutes=1)
    assert af.run(sessions, settings).bought == 0
    assert [a.status for a in af.attempts(sessions, who)] == ["succeeded"]
    [(kind, params)] = af.alerts(sessions, who)
    assert kind == "auto_renew_done" and params["amount"] == "HK$58.00"
    assert params["volume"] == "5 GB"
    r = client.get(f"/api/v1/lines/{who.line_id}/auto-renew", headers=who.headers)
    assert (
        r.json()["this_month"]["spent"] == 5800 and r.json()["this_month"]["left"] == 200_00 - 5800
    )
    # Falling below again (of the 15 GB now credited) is another crossing: it buys again.
    af.use(sessions, who, 5 * GB)  # 1.5 GB of 15 GB left
    assert af.run(sessions, settings).bought == 1
    assert [o[1] for o in af.orders(sessions, who)] == ["fulfilled", "fulfilled"]
    assert af.wallet(sessions, who) == 150_00 - 2 * 5800


def test_two_evaluations_at_once_buy_once(client, sessions, settings, demo, frozen_clock) -> None:  # type: ignore[no-untyped-def]
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the race needs PostgreSQL")
    who = af.owner(client, sessions, data=10 * GB)
    rule_id = af.rule(client, who) and af.the_rule(sessions, who).id
    af.use(sessions, who, 9 * GB)
    providers = payment_providers.build(settings)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def evaluate() -> None:
        report = autorenew.Report()
        barrier.wait()
        with transaction(sessions) as session:
            results.append(autorenew.evaluate(session, rule_id, providers, settings, report))

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and sum(r is not None for r in results) == 1
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]
    assert af.wallet(sessions, who) == 200_00 - 5800


def test_the_monthly_cap_is_never_passed_and_the_customer_is_told(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=300_00)
    af.rule(client, who, monthly_cap=100_00)  # room for one HK$58 pack, not two
    af.use(sessions, who, 9 * GB)
    assert af.run(sessions, settings).bought == 1
    af.use(sessions, who, 5 * GB)  # 1 GB of 15 GB left: a second crossing this month
    report = af.run(sessions, settings)
    assert (report.bought, report.capped) == (0, 1)
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]  # the second never made
    assert af.wallet(sessions, who) == 300_00 - 5800
    assert [a.status for a in af.attempts(sessions, who)] == ["succeeded", "capped"]
    told = [p for kind, p in af.alerts(sessions, who) if kind == "auto_renew_failed"]
    assert [(p["reason"], p["cap"]) for p in told] == [("cap", "HK$100.00")]
    # Told once for the crossing; the rule stays on (a cap is not a payment failure).
    frozen_clock.advance(minutes=30)
    assert af.run(sessions, settings).capped == 0
    assert (
        af.the_rule(sessions, who).active and af.the_rule(sessions, who).consecutive_failures == 0
    )
    # Its owner raises the cap: the crossing is tried again, and bought.
    af.rule(client, who, monthly_cap=120_00)
    assert af.run(sessions, settings).bought == 1
    assert [o[2] for o in af.orders(sessions, who)] == [5800, 5800]
    with sessions() as s:
        assert ledger.verify(s) == []  # the wallet's money went through clearing.wallet to sales


def test_a_wallet_too_poor_fails_and_three_failures_pause_the_rule(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=10_00)
    af.rule(client, who)
    af.use(sessions, who, 9 * GB)
    report = af.run(sessions, settings)
    assert (report.bought, report.failed, report.paused) == (0, 1, 0)
    assert af.orders(sessions, who) == [("auto", "cancelled", 5800)]
    assert af.wallet(sessions, who) == 10_00  # nothing taken
    # Not tried again at once: a failure waits ten minutes.
    frozen_clock.advance(minutes=5)
    assert af.run(sessions, settings).failed == 0
    frozen_clock.advance(minutes=6)
    assert af.run(sessions, settings).failed == 1
    frozen_clock.advance(minutes=11)
    report = af.run(sessions, settings)
    assert (report.failed, report.paused) == (1, 1)
    rule = af.the_rule(sessions, who)
    assert (rule.active, rule.consecutive_failures) == (False, 3)
    frozen_clock.advance(minutes=11)
    assert af.run(sessions, settings).failed == 0  # paused: not evaluated
    told = [p for kind, p in af.alerts(sessions, who) if kind == "auto_renew_failed"]
    assert sorted(p["paused"] for p in told) == [False, False, True]
    assert {p["reason"] for p in told} == {"wallet"}
    # Set again by its owner (the wallet topped up meanwhile): on, its failures forgotten, and it buys.
    with transaction(sessions) as s:
        from tongka.account.models import Account
        from tongka.wallet import service as wallets

        wallets.credit(s, s.get_one(Account, who.account_id), 100_00, "HKD", reference="more")
    body = af.rule(client, who)
    assert (body["active"], body["consecutive_failures"]) == (True, 0)
    assert af.run(sessions, settings).bought == 1
    assert af.wallet(sessions, who) == 110_00 - 5800


def test_the_job_runs_every_half_minute() -> None:
    job = registry.find("autorenew")
    assert job is not None and job.schedule == "every 30 s"
