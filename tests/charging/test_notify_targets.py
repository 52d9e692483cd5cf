"""The notifyUri the network gives is called only at a network function's address: never cloud metadata,
a private or loopback address unless TONGKA_NF_NOTIFY_ALLOW lists it (dev allows loopback), and
redirects are not followed. A URI that can never be called is a 400 at create."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from tests.charging.test_api import BASE, _assert_problem, request
from tests.charging.test_notify import Receiver, live_session_out_of_data, receiver, send  # noqa: F401 (a fixture)
from tongka.charging.models import ChargingNotification, ChargingSession
from tongka.config import Settings

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.mark.parametrize(
    "uri",
    [
        METADATA,
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.5/notify",
        "http://0.0.0.0:8080/notify",
        "http://224.0.0.1/notify",
        "file:///etc/passwd",
        "gopher://smf.example/",
        "http://user:secret@smf.example/",
        "http:///notify",
        "http://smf.example/" + "x" * 2048,
        "http://smf..example/notify",
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_a_notify_uri_that_can_never_be_called_is_a_400_at_create(nchf, uri: str) -> None:
    body = request(0, gpsi="msisdn-85299999999", requested=1)
    body["notifyUri"] = uri
    _assert_problem(nchf.post(BASE, json=body), "OPTIONAL_IE_INCORRECT", "/notifyUri")


def _overage_on(client, headers, line, cap: int = 5000) -> None:  # type: ignore[no-untyped-def]
    r = client.put(
        f"/api/v1/lines/{line['id']}/overage",
        headers=headers,
        json={"enabled": True, "monthly_cap": cap, "currency": "HKD"},
    )
    assert r.status_code == 200, r.text


def _last_error(sessions) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        n = s.scalars(
            select(ChargingNotification).order_by(ChargingNotification.created_at.desc())
        ).first()
        return n.status, n.last_error


def test_a_notify_uri_at_the_metadata_address_is_never_posted_to(
    client, nchf, session, sessions, receiver
) -> None:
    """As reproduced: a session's notifyUri at 169.254.169.254 (kept from before this check) made the
    server POST there. Now it is given up unsent."""
    headers, line, ref = live_session_out_of_data(client, nchf, sessions, receiver)
    with sessions.begin() as s:
        s.execute(
            update(ChargingSession)
            .where(ChargingSession.charging_data_ref == ref)
            .values(notify_uri=METADATA)
        )
    _overage_on(client, headers, line)
    report = send(sessions)
    assert (report.sent, report.retrying, report.failed) == (0, 0, 1)
    status, error = _last_error(sessions)
    assert status == "failed" and error is not None and error.startswith("refused: ")


def test_a_notify_uri_the_resolver_cannot_take_is_given_up_and_the_next_one_sent(
    client, nchf, session, sessions, receiver
) -> None:
    """Its UnicodeError (an empty DNS label) escaped the sender: the notifications queued after it waited for ever."""
    headers, line, ref = live_session_out_of_data(client, nchf, sessions, receiver)
    with sessions.begin() as s:
        s.execute(
            update(ChargingSession)
            .where(ChargingSession.charging_data_ref == ref)
            .values(notify_uri="http://smf..example/notify")
        )
    _overage_on(client, headers, line)
    with sessions.begin() as s:
        s.execute(
            update(ChargingSession)
            .where(ChargingSession.charging_data_ref == ref)
            .values(notify_uri=receiver.url + "/smf/notify/7")
        )
    _overage_on(client, headers, line, cap=6000)
    report = send(sessions)
    assert (report.sent, report.failed) == (1, 1)
    assert len(receiver.received) == 1


def test_production_calls_loopback_only_when_listed(
    client, nchf, session, sessions, receiver
) -> None:
    headers, line, ref = live_session_out_of_data(client, nchf, sessions, receiver)
    with sessions.begin() as s:  # by name: resolved when sent, and every address checked
        s.execute(
            update(ChargingSession)
            .where(ChargingSession.charging_data_ref == ref)
            .values(notify_uri=receiver.url.replace("127.0.0.1", "localhost") + "/smf/notify/7")
        )
    _overage_on(client, headers, line)
    assert send(sessions, "", dev=False).failed == 1  # production, nothing listed
    assert (
        send(sessions, "localhost", dev=False).failed == 0
    )  # the name listed, but its address is loopback
    _overage_on(client, headers, line, cap=6000)
    assert send(sessions, "localhost", dev=False).failed == 1
    assert receiver.received == []

    _overage_on(client, headers, line, cap=7000)
    assert send(sessions, "smf.example, 127.0.0.0/8", dev=False).sent == 1  # its network listed
    _overage_on(client, headers, line, cap=8000)
    assert send(sessions).sent == 1  # dev: loopback allowed, as `make run` and its simulator need
    assert [path for path, _body in receiver.received] == ["/smf/notify/7"] * 2


def test_a_redirect_is_not_followed(client, nchf, session, sessions, receiver) -> None:
    elsewhere = Receiver()
    try:
        headers, line, _ref = live_session_out_of_data(client, nchf, sessions, receiver)
        receiver.status, receiver.location = 307, elsewhere.url + "/steal"
        _overage_on(client, headers, line)
        assert send(sessions).failed == 1
        assert elsewhere.received == [] and len(receiver.received) == 1
        assert _last_error(sessions) == ("failed", "HTTP 307: a redirect, not followed")
    finally:
        elsewhere.server.shutdown()


def test_the_allow_list_setting_is_checked_when_read(settings) -> None:
    Settings(
        **{
            **settings.model_dump(),
            "nf_notify_allow": "smf1.operator.net, .nf.operator.net, 10.20.0.0/16",
        }
    )
    with pytest.raises(ValidationError, match="nf_notify_allow"):
        Settings(
            **{**settings.model_dump(), "nf_notify_allow": "smf1.operator.net, http://10.20.0.0/16"}
        )
