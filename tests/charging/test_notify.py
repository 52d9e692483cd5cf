"""REAUTHORIZATION: a renewal or turning overage on tells a live session of its new quota at its notifyUri;
and a create sent twice opens one session."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests import factories as tf
from tests.charging import factories as f
from tests.charging import spec
from tests.charging.test_api import BASE, RG, create, msisdn, request
from tongka import outbound
from tongka.account.models import Line
from tongka.charging import notify
from tongka.charging.models import ChargingNotification, ChargingSession
from tongka.money import MB


class Receiver:
    """A packet core's notification endpoint: records what it is sent, answers with `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.status = 204
        self.location: str | None = None  # sent with the answer (a redirect)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def send(sessions, allow: str = "", *, dev: bool = True) -> notify.Delivery:  # type: ignore[no-untyped-def]
    """Send what is due, to the addresses `allow` lists, plus loopback in dev (the tests' settings are dev)."""
    with httpx.Client() as http:
        return notify.deliver_due(
            sessions, http, allowed=outbound.Allowed.parse(allow, loopback=dev)
        )


def live_session_out_of_data(
    client, nchf, sessions, receiver: Receiver
) -> tuple[dict[str, str], dict[str, Any], str]:  # type: ignore[no-untyped-def]
    """A subscriber's line in a session whose last grant ran out, with the network listening at receiver.
    (Tests using it take the `session` fixture: it puts the network registry back.)"""
    tf.load_demo(sessions, client.app.state.settings)
    headers, line, _ = tf.new_subscriber(client, sessions)
    gpsi = "msisdn-" + line["numbers"][0].removeprefix("+")
    body = request(0, gpsi=gpsi, requested=MB)
    body["notifyUri"] = receiver.url + "/smf/notify/7"
    r = nchf.post(BASE, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["multipleUnitInformation"][0]["resultCode"] == "QUOTA_LIMIT_REACHED"
    return headers, line, r.headers["location"].rsplit("/", 1)[1]


def test_a_renewal_tells_the_live_session_at_its_notify_uri(
    client, nchf, session, sessions, receiver
) -> None:
    headers, line, ref = live_session_out_of_data(client, nchf, sessions, receiver)
    assert send(sessions).sent == 0  # nothing to say yet

    order = tf.order(client, headers, line["id"], "hk-1gb-7d")
    tf.pay(client, order["payment"]["id"])
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == "fulfilled"
    )

    assert send(sessions).sent == 1
    ((path, body),) = receiver.received
    assert path == "/smf/notify/7"
    assert body == {
        "notificationType": "REAUTHORIZATION",
        "reauthorizationDetails": [{"ratingGroup": RG}],
    }
    spec.validate_notify_request(body)
    assert send(sessions).sent == 0  # sent once
    r = nchf.post(f"{BASE}/{ref}/update", json=request(1, requested=MB))
    assert r.json()["multipleUnitInformation"][0]["grantedUnit"] == {"totalVolume": MB}


def test_turning_overage_on_tells_the_live_session(
    client, nchf, session, sessions, receiver
) -> None:
    headers, line, _ref = live_session_out_of_data(client, nchf, sessions, receiver)
    r = client.put(
        f"/api/v1/lines/{line['id']}/overage",
        headers=headers,
        json={"enabled": True, "monthly_cap": 5000, "currency": "HKD"},
    )
    assert r.status_code == 200, r.text
    assert (
        send(sessions).sent == 1
        and receiver.received[0][1]["notificationType"] == "REAUTHORIZATION"
    )
    client.put(
        f"/api/v1/lines/{line['id']}/overage",
        headers=headers,
        json={"enabled": False, "monthly_cap": 0, "currency": "HKD"},
    )
    assert send(sessions).sent == 0  # turning it off gives no quota: nothing to say


def test_a_network_that_is_down_is_tried_again_and_one_that_refuses_is_given_up(
    client, nchf, session, sessions, receiver, frozen_clock
) -> None:
    headers, line, _ref = live_session_out_of_data(client, nchf, sessions, receiver)
    receiver.status = 503
    client.put(
        f"/api/v1/lines/{line['id']}/overage",
        headers=headers,
        json={"enabled": True, "monthly_cap": 5000, "currency": "HKD"},
    )
    assert send(sessions).retrying == 1
    assert send(sessions).retrying == 0  # not due again yet
    frozen_clock.advance(seconds=3)
    receiver.status = 204
    assert send(sessions).sent == 1
    assert len(receiver.received) == 2

    receiver.status = 404
    client.put(
        f"/api/v1/lines/{line['id']}/overage",
        headers=headers,
        json={"enabled": True, "monthly_cap": 6000, "currency": "HKD"},
    )
    assert send(sessions).failed == 1
    with sessions() as s:
        statuses = s.scalars(
            select(ChargingNotification.status).order_by(ChargingNotification.created_at)
        ).all()
        assert sorted(statuses) == ["failed", "sent"]


def test_a_create_sent_again_finds_the_first_session_and_charges_once(nchf, session) -> None:
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    session.commit()
    body = request(0, gpsi=msisdn(line), requested=30 * MB)
    body["pDUSessionChargingInformation"]["sMFchargingId"] = 12345
    ref = create(nchf, body)
    again = dict(body, retransmissionIndicator=True, invocationTimeStamp="2030-01-15T08:00:01Z")
    r = nchf.post(BASE, json=again)
    assert r.status_code == 201 and r.headers["location"].endswith("/" + ref)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ChargingSession)) == 1
    assert f.remaining(session, hk) == 70 * MB
    session.rollback()

    other = dict(
        body,
        pDUSessionChargingInformation={
            **body["pDUSessionChargingInformation"],
            "sMFchargingId": 12346,
        },
    )
    assert create(nchf, other) != ref  # another PDU session


def test_unknown_lines_have_no_session_to_tell(session) -> None:
    line = session.get(Line, f.line(session).id)
    assert notify.quota_changed(session, line.id) == 0
