"""SMS over SMPP against a real SMSC over TCP (tongka.sandbox.smsc): encodings, long messages,
dropped links, the SMSC's refusals, and the keep-alive."""

from __future__ import annotations

import threading
import time

import pytest

from tests.notify.sms_helpers import (
    NUMBER,
    PASSWORD,
    Receipts,
    eventually,
    make_sender,
    server,  # noqa: F401  (a fixture)
    sms,
)
from tongka.notify import render
from tongka.notify.senders import PermanentFailure, TemporaryFailure
from tongka.notify.sms import SmppBindRefused
from tongka.sandbox import smsc


@pytest.mark.parametrize(
    ("language", "says"),
    [("zh-Hans", "您的通卡验证码是 12345678"), ("zh-Hant", "您的通卡驗證碼是 12345678")],
)
def test_chinese_text_goes_as_ucs2_and_decodes_back_equal(
    server: smsc.Smsc, language: str, says: str
) -> None:
    text = render.sms("bind_code", language, code="12345678", minutes=10)
    assert says in text
    sender = make_sender(server)
    try:
        message_id = sender.send(sms(text))
    finally:
        sender.close()
    [got] = server.received
    assert got.message_id == message_id
    assert got.data_coding == 8  # UCS-2
    assert got.short_message.decode("utf-16-be") == text
    assert got.esm_class & 0x40 == 0  # one SMS, no UDH
    assert got.registered_delivery & 0x03 == 1  # a receipt asked for
    assert got.destination == NUMBER.removeprefix("+")
    assert got.source == "tongka"


def test_the_english_bind_code_goes_as_gsm_7bit_in_one_part(server: smsc.Smsc) -> None:
    """Its template's brand line is [tongka], not 【tongka】 (full-width brackets are not in GSM
    7-bit and would make it UCS-2: two parts where GSM needs one)."""
    text = render.sms("bind_code", "en", code="12345678", minutes=10)
    sender = make_sender(server)
    try:
        sender.send(sms(text))
    finally:
        sender.close()
    assert [p.data_coding for p in server.received] == [0]
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


def test_text_that_fits_gsm_goes_as_gsm_7bit(server: smsc.Smsc) -> None:
    text = "Your tongka code is 12345678. It is valid for 10 minutes (@ £ ü)."
    sender = make_sender(server)
    try:
        sender.send(sms(text))
    finally:
        sender.close()
    [got] = server.received
    assert got.data_coding == 0
    assert len(got.short_message) == len(text)  # one septet an octet, unpacked
    assert got.text == text


def test_long_chinese_message_is_split_with_udh_and_reassembles(server: smsc.Smsc) -> None:
    text = (
        "【tongka】" + "您的流量包已续订，感谢使用。" * 11
    )  # 161 characters: 3 parts of at most 67
    sender = make_sender(server)
    try:
        message_id = sender.send(sms(text))
    finally:
        sender.close()
    parts = server.received
    assert len(parts) == 3
    assert message_id == parts[0].message_id  # the row records the first part's id
    references = set()
    for number, part in enumerate(parts, start=1):
        assert part.esm_class & 0x40  # UDHI
        assert part.data_coding == 8
        assert len(part.short_message) <= 140
        assert part.udh[:3] == b"\x05\x00\x03"  # concatenation, 8-bit reference
        assert part.concat is not None
        reference, total, seq = part.concat
        assert (total, seq) == (3, number)
        references.add(reference)
    assert len(references) == 1
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


def test_a_long_gsm_text_is_split_in_gsm_parts(server: smsc.Smsc) -> None:
    text = "Your data pack renews tomorrow. " * 8  # 256 characters: 2 parts of at most 153
    sender = make_sender(server)
    try:
        sender.send(sms(text))
    finally:
        sender.close()
    assert [(p.data_coding, p.concat and p.concat[1:]) for p in server.received] == [
        (0, (2, 1)),
        (0, (2, 2)),
    ]
    assert all(len(p.payload) <= 153 for p in server.received)
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


def test_a_long_gsm_text_with_extension_characters_goes_as_ucs2(server: smsc.Smsc) -> None:
    text = "Price: 10 € [HK] " * 12  # escapes (€ [ ]) that a 7-bit split could cut in two
    sender = make_sender(server)
    try:
        sender.send(sms(text))
    finally:
        sender.close()
    assert all(part.data_coding == 8 for part in server.received)
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


@pytest.mark.parametrize("drop", ["reset", "unbind"])
def test_a_dropped_link_is_bound_again_and_the_message_delivered_once(
    server: smsc.Smsc, drop: str
) -> None:
    sender = make_sender(server)
    try:
        sender.send(sms("before"))
        server.drop_clients() if drop == "reset" else server.unbind_clients()
        sender.send(sms("after"))
        eventually(lambda: server.binds == 2)  # bound again, whichever session took "after"
    finally:
        sender.close()
    assert [text for _, text in server.messages()] == ["before", "after"]


def test_an_smsc_that_stops_answering_is_left_and_the_message_sent_on_a_new_session(
    server: smsc.Smsc,
) -> None:
    sender = make_sender(server, response_timeout=1.5)
    try:
        sender.send(sms("first"))
        server.answering = False  # takes the next submit_sm and answers nothing

        def answer_again() -> None:
            eventually(lambda: server.ignored == 1)
            server.answering = True

        threading.Thread(target=answer_again).start()
        sender.send(sms("second"))
    finally:
        sender.close()
    assert [text for _, text in server.messages()] == ["first", "second"]
    assert server.binds == 2


def test_a_drop_between_parts_sends_no_acknowledged_part_twice(server: smsc.Smsc) -> None:
    text = "长" * 150  # 3 parts
    sender = make_sender(server)
    try:
        server.drop_after(1)  # the link resets right after part 1 is acknowledged
        sender.send(sms(text))
    finally:
        sender.close()
    assert server.binds == 2
    assert [part.concat and part.concat[2] for part in server.received] == [1, 2, 3]
    assert len({part.concat and part.concat[0] for part in server.received}) == 1
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


def test_throttling_is_a_temporary_failure_and_the_retry_sends_it_once(server: smsc.Smsc) -> None:
    sender = make_sender(server)
    message = sms("throttled once")
    try:
        server.throttle(1)
        with pytest.raises(TemporaryFailure, match="Throttling"):
            sender.send(message)
        assert server.received == []
        sender.send(message)  # the worker's next attempt
    finally:
        sender.close()
    assert [text for _, text in server.messages()] == ["throttled once"]


def test_a_message_given_up_midway_resumes_without_sending_acknowledged_parts_again(
    server: smsc.Smsc,
) -> None:
    text = "长" * 150
    message = sms(text)
    sender = make_sender(server)
    eventually(lambda: server.binds == 1)
    try:
        # Part 1 is acknowledged, then the link drops and every re-bind is refused: the send
        # gives up (temporary) having sent part 1 only.
        server.drop_after(1)
        server.refuse_binds = True
        with pytest.raises(TemporaryFailure):
            sender.send(message)
        assert len(server.received) == 1
        server.refuse_binds = False
        sender.send(message)  # the worker's next attempt: parts 2 and 3 only
    finally:
        sender.close()
    assert [part.concat and part.concat[2] for part in server.received] == [1, 2, 3]
    assert server.messages() == [(NUMBER.removeprefix("+"), text)]


def test_an_invalid_destination_is_a_permanent_failure(server: smsc.Smsc) -> None:
    sender = make_sender(server)
    try:
        with pytest.raises(PermanentFailure, match="Invalid Destination Address"):
            sender.send(sms("hello", to="+12"))
    finally:
        sender.close()
    assert server.received == []


@pytest.mark.parametrize(
    ("system_id", "password", "says"),
    [("tongka", "wrong", "Invalid Password"), ("nobody", PASSWORD, "Invalid System ID")],
)
def test_bad_credentials_are_a_clear_error(
    server: smsc.Smsc, system_id: str, password: str, says: str
) -> None:
    sender = make_sender(server, system_id=system_id, password=password)
    try:
        with pytest.raises(SmppBindRefused) as refused:
            sender.send(sms("hello"))
    finally:
        sender.close()
    message = str(refused.value)
    assert says in message and "TONGKA_SMPP_URL" in message and repr(system_id) in message
    assert password not in message
    assert isinstance(refused.value, TemporaryFailure)  # the message waits for the right settings
    assert server.received == [] and server.binds == 0


def test_an_unreachable_smsc_is_a_temporary_failure(server: smsc.Smsc) -> None:
    server.stop()
    sender = make_sender(server, response_timeout=0.5)
    try:
        with pytest.raises(TemporaryFailure, match="cannot reach the SMSC"):
            sender.send(sms("hello"))
    finally:
        sender.close()


def test_an_idle_link_is_kept_alive_with_enquire_link(server: smsc.Smsc) -> None:
    # The answer timeout stays long: a slow bind on a busy machine is not what this test is about.
    sender = make_sender(server, enquire_link_seconds=0.1)
    try:
        sender.send(sms("one"))
        eventually(lambda: server.enquire_links >= 3)
        sender.send(sms("two"))
    finally:
        sender.close()
    assert server.binds == 1


def test_a_silent_link_is_found_dead_by_enquire_link_and_bound_again(server: smsc.Smsc) -> None:
    sender = make_sender(server, enquire_link_seconds=0.1, response_timeout=1.0)
    try:
        sender.send(sms("one"))
        bound = server.binds
        server.answering = False  # nor does it answer enquire_link
        eventually(lambda: server.binds > bound, seconds=10)
        server.answering = True
        sender.send(sms("two"))
    finally:
        sender.close()
    assert [text for _, text in server.messages()] == ["one", "two"]


@pytest.mark.parametrize(
    ("tlvs", "delay"),
    [(True, 0.02), (False, 0.02), (True, 0.0)],
    ids=["tlvs", "text only", "at once"],  # at once: right behind the submit_sm_resp
)
def test_receipts_come_back_with_the_message_id_and_final_status(
    server: smsc.Smsc, tlvs: bool, delay: float
) -> None:
    receipts = Receipts()
    sender = make_sender(server, receipts)
    server.undeliverable = {"85260000000"}
    server.receipt_tlvs, server.receipt_delay = tlvs, delay
    try:
        delivered = sender.send(sms("arrives"))
        lost = sender.send(sms("does not", to="+85260000000"))
        long_one = sender.send(sms("长" * 150))
        eventually(lambda: len(receipts.got) == 3)
        time.sleep(0.2)  # nothing more comes: a long message's parts make one receipt
    finally:
        sender.close()
    outcomes = {message_id: status for message_id, status, _ in receipts.got}
    assert outcomes == {delivered: "delivered", lost: "undeliverable", long_one: "delivered"}
    assert len(receipts.got) == 3


def test_senders_on_many_threads_share_the_session_and_each_message_goes_once(
    server: smsc.Smsc,
) -> None:
    receipts = Receipts()
    sender = make_sender(server, receipts)
    texts = [f"消息 {n}" for n in range(12)] + ["长" * 100]  # the last in 2 parts
    ids: list[str] = []
    try:
        threads = [
            threading.Thread(target=lambda text=text: ids.append(sender.send(sms(text))))
            for text in texts
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        eventually(lambda: len(receipts.got) == len(texts))
    finally:
        sender.close()
    assert sorted(text for _, text in server.messages()) == sorted(texts)
    assert len(server.received) == len(texts) + 1 and server.binds == 1
    assert sorted(receipts_id for receipts_id, _, _ in receipts.got) == sorted(ids)
