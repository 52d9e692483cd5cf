"""Nobody types a command: the background runner's loops run in threads, the clock moves, and unpaid
orders expire, silent charging sessions close, and a renewal's REAUTHORIZATION reaches the network."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta

from sqlalchemy import select

from tests import factories as f
from tests.charging import factories as cf
from tests.charging.test_api import BASE, create, msisdn, remaining, request
from tests.charging.test_notify import Receiver, live_session_out_of_data
from tests.jobs.conftest import finished_runs, wait_for
from tests.payment.factories import status
from tongka.charging import notify
from tongka.charging.models import ChargingSession, Grant
from tongka.jobs import registry, scheduler
from tongka.money import MB
from tongka.order.models import Order

POLL = 0.02  # the loop looks for due jobs this often (real seconds)


def every_job_ran_once(sessions) -> bool:  # type: ignore[no-untyped-def]
    runs = finished_runs(sessions)
    return all(runs.get(job.name) for job in registry.JOBS if job.every is not None)


def test_unpaid_orders_expire_and_their_payments_close_by_themselves(
    client, app, sessions, settings, frozen_clock, background, cli
) -> None:
    f.load_demo(sessions, settings)
    headers = f.subscriber(client)
    line = f.bind(client, headers, f.spare_numbers(sessions)[0])
    order = f.order(client, headers, line["id"])
    assert status(client, headers, order) == ("awaiting_payment", "pending")

    # Provider calls go to the simulators in the app, in-process (as the app's own do here).
    loop = functools.partial(scheduler.run, poll=POLL, http=client)
    background([("scheduler", loop)])
    wait_for(lambda: every_job_ran_once(sessions), "the first run of every job")
    assert status(client, headers, order) == ("awaiting_payment", "pending")  # not yet due

    frozen_clock.advance(seconds=settings.order_payment_ttl_seconds + 61)

    def expired() -> bool:
        with sessions() as s:
            return s.get_one(Order, uuid.UUID(order["id"])).status == "expired"

    wait_for(expired, "the order expired")
    # Closed at the provider too (in the same job's run, just after).
    wait_for(lambda: status(client, headers, order) == ("expired", "cancelled"), "payment closed")
    provider = app.state.providers["alipay"]
    assert provider.query(order["payment"]["id"], None).status == "closed"

    listing = cli("jobs", "list").output
    assert "orders-expire  (every 1 min)" in listing
    assert "expired 1 order(s); pending payments of closed orders: closed at the provider 1" in (
        listing
    )


def test_a_silent_charging_session_closes_by_itself_and_a_talking_one_stays(
    nchf, sessions, settings, frozen_clock, networks, background, cli
) -> None:
    s = sessions()  # the test's reads; each ends its transaction at once (remaining)
    line = cf.line(s)
    bucket = cf.bucket(s, line, "hk", 100 * MB, valid_from=frozen_clock.now - timedelta(days=1))
    gpsi = msisdn(line)
    s.commit()
    silent = create(nchf, request(1, gpsi=gpsi, requested=30 * MB))
    other_pdu = request(1, gpsi=gpsi, requested=30 * MB)  # another PDU session of the phone
    other_pdu["pDUSessionChargingInformation"]["pduSessionInformation"]["pduSessionID"] = 6
    talking = create(nchf, other_pdu)
    assert remaining(s, bucket) == 40 * MB

    background([("scheduler", functools.partial(scheduler.run, poll=POLL))])
    wait_for(lambda: every_job_ran_once(sessions), "the first run of every job")

    frozen_clock.advance(minutes=5)  # one SMF reports, the other has died
    r = nchf.post(f"{BASE}/{talking}/update", json=request(2, requested=30 * MB, used=10 * MB))
    assert r.status_code == 200, r.text
    # The silent one's validity time (600 s) and the grace (300 s) are over; the other's are not.
    frozen_clock.advance(seconds=10 * 60 + settings.charging_silence_grace_seconds - 5 * 60 + 1)

    def released(ref: str) -> bool:
        with sessions() as check:
            found = check.scalars(
                select(ChargingSession).where(ChargingSession.charging_data_ref == ref)
            ).one()
            return found.status == "released"

    wait_for(lambda: released(silent), "the silent session closed")
    gone = s.scalars(
        select(ChargingSession).where(ChargingSession.charging_data_ref == silent)
    ).one()
    grants = s.scalars(select(Grant).where(Grant.charging_session_id == gone.id)).all()
    assert [(g.status, g.used_bytes) for g in grants] == [("settled", 0)]
    # Its 30 MB are back; the talking one used 10 MB and holds 30 MB.
    assert remaining(s, bucket) == 60 * MB
    assert not released(talking)
    r = nchf.post(f"{BASE}/{talking}/update", json=request(3, requested=30 * MB, used=5 * MB))
    assert r.status_code == 200, r.text
    assert nchf.post(f"{BASE}/{silent}/update", json=request(2, used=1 * MB)).status_code == 404
    s.close()

    verify = cli("ledger", "verify")
    assert verify.exit_code == 0, verify.output
    assert "charging-silent  (every 1 min)" in cli("jobs", "list").output


def test_a_renewal_reaches_the_live_session_without_a_command(
    client, nchf, sessions, settings, networks, background
) -> None:
    receiver = Receiver()
    try:
        headers, line, _ref = live_session_out_of_data(client, nchf, sessions, receiver)
        every = settings.model_copy(update={"charging_notify_every_seconds": 0.05})
        background([("charging-notify", notify.run)], every)
        order = f.order(client, headers, line["id"], "hk-1gb-7d")
        f.pay(client, order["payment"]["id"])
        wait_for(lambda: len(receiver.received) == 1, "the REAUTHORIZATION")
        ((path, body),) = receiver.received
        assert (path, body["notificationType"]) == ("/smf/notify/7", "REAUTHORIZATION")
    finally:
        receiver.server.shutdown()
