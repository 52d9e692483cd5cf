"""The alerts the ledger tells of (`alerts.scan`): data used, data expiring, overage; each once."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from tests.alerts.helpers import GB, bucket, events, owner, sent, use
from tests.charging import factories as cf
from tests.helpers import FrozenClock
from tongka.alerts import scan, service
from tongka.money import MB


def test_each_threshold_fires_once_per_bucket_by_the_default_channels(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with sessions() as session:
        account, line = owner(session)
        held = bucket(session, line, 10 * GB)
        use(session, line, 7 * GB)
        assert scan.scan(session) == 0
        use(session, line, GB + 200 * MB)  # 8.2 GB of 10: past 80 %
        assert scan.scan(session) == 1
        assert scan.scan(session) == 0  # seen again (the window is read twice): not sent again
        assert events(session, account) == [("data_used_80", f"bucket:{held.id}:80")]
        (sms,) = sent(session, account)
        assert sms.channel == "sms" and sms.to == line.hk_number
        assert sms.body.startswith(f"[tongka] Line ...{line.hk_number[-4:]}: HK data 80% used")
        assert "1.80 GB left" in sms.body and "We never ask" in sms.body
        frozen_clock.advance(minutes=1)
        use(session, line, 2 * GB)  # all of it (the rest is owed), 90 and 100 at once
        assert scan.scan(session) == 2
        assert [k for k, _ in events(session, account)] == [
            "data_used_100",
            "data_used_80",
            "data_used_90",
        ]
        messages = sent(session, account)
        # 100 % goes by SMS and email by default.
        assert sorted((m.template, m.channel) for m in messages[1:]) == [
            ("alert_data_used_100", "email"),
            ("alert_data_used_100", "sms"),
            ("alert_data_used_90", "sms"),
        ]
        email = next(m for m in messages if m.channel == "email")
        assert email.subject == "Your Hong Kong data is used up"
        assert email.to == account.email and "tongka will never ask you" in email.body
        session.commit()


def test_the_message_is_in_the_subscribers_language(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with sessions() as session:
        hans, hans_line = owner(session, "zh-Hans")
        hant, hant_line = owner(session, "zh-Hant")
        for line in (hans_line, hant_line):
            bucket(session, line, 10 * GB)
            use(session, line, 9 * GB)  # 80 and 90 at once
        assert scan.scan(session) == 4
        tail = hans_line.hk_number[-4:]
        bodies = {m.template: m.body for m in sent(session, hans)}
        assert bodies["alert_data_used_90"] == (
            f"【tongka】尾号{tail}香港流量已用90%，剩1 GB。请在通卡App续费。"
            "通卡绝不会索取密码、验证码或以链接收款。"
        )
        tail = hant_line.hk_number[-4:]
        bodies = {m.template: m.body for m in sent(session, hant)}
        assert bodies["alert_data_used_80"].startswith(
            f"【tongka】尾號{tail}香港數據已用80%，餘1 GB。"
        )
        session.commit()


def test_expiry_warns_three_days_then_one_day_before_and_not_for_a_short_pack(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with sessions() as session:
        account, line = owner(session)
        month = bucket(session, line, 10 * GB, days=30)
        day = bucket(session, line, GB, days=1)  # a day pack: "expires within a day" from the start
        assert scan.scan(session) == 0
        frozen_clock.advance(days=26, hours=23)
        assert scan.scan(session) == 0
        frozen_clock.advance(hours=1, minutes=1)  # 2 days 23:59 left
        assert scan.scan(session) == 1
        assert scan.scan(session) == 0
        frozen_clock.advance(days=2)  # 23:59 left
        assert scan.scan(session) == 1
        assert events(session, account) == sorted(
            [
                ("data_expiring_3d", f"bucket:{month.id}:exp3"),
                ("data_expiring_1d", f"bucket:{month.id}:exp1"),
            ]
        )
        assert all(str(day.id) not in key for _, key in events(session, account))
        texts = [(m.template, m.channel, m.body) for m in sent(session, account)]
        assert texts[0][:2] == ("alert_data_expiring_3d", "sms")
        assert "10 GB of HK data expires in 3 days" in texts[0][2]
        assert {t[:2] for t in texts[1:]} == {
            ("alert_data_expiring_1d", "sms"),
            ("alert_data_expiring_1d", "email"),
        }
        session.commit()


def test_a_bucket_used_up_is_not_warned_of_expiring(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with sessions() as session:
        account, line = owner(session)
        held = bucket(session, line, GB, days=10)
        use(session, line, GB)
        frozen_clock.advance(days=9, hours=1)
        scan.scan(session)
        assert events(session, account) == sorted(
            (f"data_used_{p}", f"bucket:{held.id}:{p}") for p in (80, 90, 100)
        )
        session.commit()


def test_a_choice_of_none_sends_nothing_but_records_the_event(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    with sessions() as session:
        account, line = owner(session)
        service.choose(session, account.id, "data_used_80", "none")
        service.choose(session, account.id, "data_used_90", "email")
        bucket(session, line, 10 * GB)
        use(session, line, 9 * GB)
        assert scan.scan(session) == 2
        assert [k for k, _ in events(session, account)] == ["data_used_80", "data_used_90"]
        assert [(m.template, m.channel) for m in sent(session, account)] == [
            ("alert_data_used_90", "email")
        ]
        session.commit()


def test_overage_started_and_its_cap_reached_once_a_month(
    sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    from tests.ledger.factories import T0

    frozen_clock.now = T0
    with sessions() as session:
        cf.ensure_networks(session)
        line, account = cf.overage_line(session, wallet=100_00, cap=100)  # HK$1.00: 20 MB
        use(session, line, 4 * MB)  # HK$0.20
        assert scan.scan(session) == 1
        use(session, line, 30 * MB)  # to the cap; the rest is owed
        assert scan.scan(session) == 1
        assert scan.scan(session) == 0
        month = "2030-01"
        assert events(session, account) == [
            ("overage_cap_reached", f"overage_cap:{line.id}:{month}"),
            ("overage_started", f"overage:{line.id}:{month}"),
        ]
        bodies = {(m.template, m.channel): m.body for m in sent(session, account)}
        assert "now uses overage, up to HK$1.00 a month" in bodies[("alert_overage_started", "sms")]
        assert "HK$0.20 so far this month" in bodies[("alert_overage_started", "email")]
        assert (
            "hit its monthly overage cap, HK$1.00" in bodies[("alert_overage_cap_reached", "sms")]
        )
        frozen_clock.advance(days=20)  # February
        use(session, line, MB)
        assert scan.scan(session) == 1  # a new month's overage is news again
        session.commit()
