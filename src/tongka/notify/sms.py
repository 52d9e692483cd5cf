"""SMS over SMPP 3.4: the sender the delivery worker hands SMS to, through `smpplib`.

One `SmppSender` keeps one transceiver session bound to the operator's SMSC (`TONGKA_SMPP_URL`):
a thread of its own binds, reads every PDU (smpplib's `read_once`, the body of its listen loop),
sends `enquire_link` after `enquire_link_seconds` of silence, and counts the link dead when an
answer does not come within `response_timeout`; a dropped link (a TCP reset, an `unbind` from the
SMSC, a timeout) is bound again at once, then with a growing pause while binds fail.

Encoding and parts: GSM 7-bit (data_coding 0) when the whole text fits the default alphabet, UCS-2
(data_coding 8) otherwise, as for any Chinese text; a text longer than one SMS (160 GSM
characters, 70 UCS-2) is split by smpplib's helper into parts carrying a concatenation UDH
(esm_class UDHI), 153 or 67 characters each. A long GSM text with characters of the extension
table (€, [, ] …) goes as UCS-2 instead, because smpplib's split could cut their escape in two.
Characters outside the Basic Multilingual Plane (emoji) are not split safely either: templates
have none.

Nothing acknowledged is sent twice: the message ids the SMSC gave the parts of a message are
kept (in memory, by outbox id), so a send interrupted after part 2 of 3 (the link dropped, the
SMSC throttled) sends only part 3 when it is tried again, after a re-bind within the same call
or at the worker's next attempt, with the same concatenation reference. A part whose
submit_sm_resp never came is sent again, and may then reach the handset twice: SMPP has no way
to ask. A process that dies mid-message forgets its progress, and the next attempt sends every part.

Receipts: `registered_delivery` asks one for every part. The message's provider id is its first
part's id; a receipt is mapped back through the ids this process sent (all parts delivered:
`delivered`, any part undeliverable: `undeliverable`), or, for an id it does not know (sent
before a restart, or by another worker's session), taken as the message's own. `on_receipt(id,
status, at)` records it (`notify.service.record_receipt`); when it answers False (no row has that
id yet: the worker has not committed the id the SMSC answered a moment ago) the receipt is refused
with ESME_RX_T_APPN, which makes the SMSC deliver it again later. `at` is when the receipt came:
the receipt's own "done date" is in the SMSC's unstated local time and to the minute.
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.consts as c
import smpplib.exceptions
import smpplib.gsm
import structlog
from smpplib import smpp

from tongka import clock
from tongka.config import Settings, smpp_address
from tongka.notify.senders import OnReceipt, Outgoing, PermanentFailure, TemporaryFailure
from tongka.notify.smpp_fields import (
    BIND_REFUSALS,
    OUTCOME,
    PERMANENT,
    SMSC_DELIVERY_RECEIPT,
    address,
    parse_receipt,
    split,
    status_name,
    text_of,
)

log = structlog.get_logger("tongka.sms")
# smpplib's debug lines hex-dump every PDU, the bind's password among them: never below INFO.
logging.getLogger("tongka.sms.smpplib").setLevel(logging.INFO)

# How many times one send() binds again after a drop before leaving the message to the worker.
LINK_TRIES = 3
REMEMBERED = 10_000  # messages (and their parts' ids) kept in memory
# How many times a receipt for a message this process sent is refused while no row has its id.
RECEIPT_REFUSALS = 20


class SmppBindRefused(TemporaryFailure):
    """The SMSC refused our system_id or password: nothing is sent until TONGKA_SMPP_URL is right."""


class _LinkLost(Exception):
    """The session ended (or went silent) before a part was answered."""


class _Sequence:
    """smpplib's sequence numbers, safe across the sender's threads and kept across re-binds."""

    def __init__(self) -> None:
        self._numbers = smpplib.client.SimpleSequenceGenerator()
        self._lock = threading.Lock()

    @property
    def sequence(self) -> int:
        return int(self._numbers.sequence)

    def next_sequence(self) -> int:
        with self._lock:
            return int(self._numbers.next_sequence())


class _Client(smpplib.client.Client):
    """smpplib's client, writable from two threads (senders and the reader), that answers an
    SMSC's unbind: it says so (`unbound_at`), then reads on until the SMSC closes, so the answers
    to parts already sent still arrive."""

    def __init__(self, host: str, port: int, timeout: float, sequence: _Sequence) -> None:
        super().__init__(
            host,
            port,
            timeout=timeout,
            sequence_generator=sequence,
            logger_name="tongka.sms.smpplib",
            allow_unknown_opt_params=True,
        )
        self._write = threading.Lock()
        self.unbound_at: float | None = None
        self._selector: selectors.BaseSelector | None = None
        self.on_unbind: Callable[[_Client], None] = lambda client: None

    def send_pdu(self, p: Any) -> bool:
        with self._write:
            if self._socket is None:  # disconnected by the reader meanwhile
                raise smpplib.exceptions.ConnectionError("not connected")
            return bool(super().send_pdu(p))

    def disconnect(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        with self._write:
            self.state = (
                c.SMPP_CLIENT_STATE_OPEN
            )  # the link is gone: no "disconnecting while bound"
            super().disconnect()

    def read_pdu(self) -> Any:
        pdu = super().read_pdu()
        if pdu.command == "unbind":
            self.unbound_at = time.monotonic()
            self.on_unbind(self)  # no new part goes on this session
            answer = smpp.make_pdu("unbind_resp", client=self)
            answer.sequence = pdu.sequence
            self.send_pdu(answer)
        if pdu.command == "unbind_resp":
            raise smpplib.exceptions.ConnectionError("unbound")
        return pdu

    def readable(self, timeout: float) -> bool:
        # A selector, not select(): a busy server's descriptors may be past select's 1024.
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._socket, selectors.EVENT_READ)
        return bool(self._selector.select(max(timeout, 0)))

    def hang_up(self) -> None:
        """Wake the reader (its select returns, its read ends) and let it close the socket."""
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass


@dataclass
class _Answer:
    client: _Client
    message: _Message
    number: int  # the part's, from 0
    done: threading.Event = field(default_factory=threading.Event)
    pdu: Any = None  # the answer; None when done: the session ended first


@dataclass
class _Message:
    """One outbox message's parts and what the SMSC answered for them (and, later, receipted)."""

    text: str
    parts: list[bytes]
    data_coding: int
    esm_class: int
    ids: list[str] = field(default_factory=list)
    first_id: str | None = None  # the provider id the outbox row keeps
    outcomes: dict[str, str] = field(default_factory=dict)
    refusals: int = 0


class SmppSender:
    """Sends SMS on one bound transceiver session; see the module's docstring."""

    channel = "sms"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        system_id: str,
        password: str,
        source: str,
        on_receipt: OnReceipt,
        enquire_link_seconds: float = 30.0,
        response_timeout: float = 10.0,
        rebind_max_seconds: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._system_id, self._password = system_id, password
        self._source = address(source)
        self._on_receipt = on_receipt
        self._enquire_link_seconds = enquire_link_seconds
        self._response_timeout = response_timeout
        self._rebind_max_seconds = rebind_max_seconds
        self._sequence = _Sequence()
        self._state = threading.Condition()
        self._client: _Client | None = None  # bound, or None
        self._failed_binds = 0
        self._bind_error: TemporaryFailure | None = None
        self._closed = False
        self._wake = threading.Event()
        self._answers: dict[int, _Answer] = {}
        # By outbox id: messages being sent; by part id: messages sent, for their receipts.
        self._sending: OrderedDict[uuid.UUID, _Message] = OrderedDict()
        self._sent: OrderedDict[str, _Message] = OrderedDict()
        self._thread = threading.Thread(target=self._keep_bound, name="smpp", daemon=True)
        self._thread.start()

    @property
    def where(self) -> str:
        return f"{self._system_id}@{self._host}:{self._port}"

    # --- Sender --------------------------------------------------------------------------------

    def send(self, message: Outgoing) -> str:
        """Submit every part not yet acknowledged; return the first part's message id."""
        with self._state:
            progress = self._sending.get(message.id)
            if progress is None or progress.text != message.text:
                try:
                    progress = _Message(message.text, *split(message.text))
                except smpplib.exceptions.MessageTooLong:
                    raise PermanentFailure("the text needs more than 255 SMS parts") from None
                self._remember(self._sending, message.id, progress)
        for _try in range(LINK_TRIES):
            client = self._bound()
            try:
                while len(progress.ids) < len(progress.parts):
                    number = len(progress.ids)
                    progress.ids.append(self._submit(client, message, progress, number))
                break
            except _LinkLost as lost:
                log.warning(
                    "sms.link_lost", smsc=self.where, error=str(lost), part=len(progress.ids) + 1
                )
        else:
            raise TemporaryFailure(f"the SMPP session with {self.where} dropped {LINK_TRIES} times")
        with self._state:
            self._sending.pop(message.id, None)
        return progress.ids[0]

    def close(self) -> None:
        """Unbind and stop the session's thread."""
        with self._state:
            self._closed = True
            client = self._client
            self._state.notify_all()
        self._wake.set()
        if client is not None:
            try:
                client.send_pdu(smpp.make_pdu("unbind", client=client))
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
                client.hang_up()
        self._thread.join(timeout=self._response_timeout)
        if self._thread.is_alive() and client is not None:
            client.hang_up()
            self._thread.join(timeout=self._response_timeout)

    # --- one part ------------------------------------------------------------------------------

    def _submit(self, client: _Client, message: Outgoing, progress: _Message, number: int) -> str:
        ton, npi, destination = address(message.to)
        pdu = smpp.make_pdu(
            "submit_sm",
            client=client,
            service_type="",
            source_addr_ton=self._source[0],
            source_addr_npi=self._source[1],
            source_addr=self._source[2],
            dest_addr_ton=ton,
            dest_addr_npi=npi,
            destination_addr=destination,
            esm_class=progress.esm_class,
            data_coding=progress.data_coding,
            registered_delivery=c.SMPP_SMSC_DELIVERY_RECEIPT_BOTH,
            short_message=progress.parts[number],
        )
        answer = _Answer(client, progress, number)
        with self._state:
            if self._client is not client:
                raise _LinkLost("the session ended before the part was sent")
            self._answers[pdu.sequence] = answer
        try:
            client.send_pdu(pdu)
            if not answer.done.wait(self._response_timeout):
                self._drop(client)
                raise _LinkLost(f"no submit_sm_resp within {self._response_timeout:g} s")
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError) as error:
            # PDUError: smpplib found the session no longer bound (the reader saw it end).
            self._drop(client)
            raise _LinkLost(str(error) or "connection lost") from None
        finally:
            with self._state:
                self._answers.pop(pdu.sequence, None)
        if answer.pdu is None:
            raise _LinkLost("the session ended before the part was answered")
        status = int(answer.pdu.status)
        if status == c.SMPP_ESME_ROK:
            return text_of(answer.pdu.message_id or b"")
        why = f"the SMSC refused part {number + 1} of {len(progress.parts)}: {status_name(status)}"
        if status in PERMANENT:
            with self._state:
                self._sending.pop(message.id, None)
                progress.refusals = RECEIPT_REFUSALS  # no row will have its parts' ids
            raise PermanentFailure(why)
        raise TemporaryFailure(why)  # progress kept: the next try starts at this part

    def _answered(self, pdu: Any, **_: Any) -> None:
        """smpplib's handler for submit_sm_resp (and, through `_error`, generic_nack)."""
        with self._state:
            answer = self._answers.get(pdu.sequence)
            if answer is None or answer.done.is_set():
                return
            if pdu.command == "submit_sm_resp" and pdu.status == c.SMPP_ESME_ROK:
                # Known for receipts before the sender's thread wakes: a receipt may come next.
                part_id = text_of(pdu.message_id or b"")
                if answer.number == 0:
                    answer.message.first_id = part_id
                self._remember(self._sent, part_id, answer.message)
            answer.pdu = pdu
            answer.done.set()

    def _error(self, pdu: Any) -> None:
        """smpplib calls this for any PDU with an error status before handling it: only a
        generic_nack needs handling here (submit_sm_resp comes to `_answered` next)."""
        if pdu.command == "generic_nack":
            self._answered(pdu)
        elif pdu.command != "submit_sm_resp":
            log.warning("sms.error_pdu", command=pdu.command, status=status_name(pdu.status))

    # --- the session ---------------------------------------------------------------------------

    def _bound(self) -> _Client:
        """The bound session, waiting for the thread to bind one (a refused bind is raised)."""
        with self._state:
            failed = self._failed_binds
            if self._client is None:
                self._wake.set()  # the thread may be pausing between binds: try now
            self._state.wait_for(
                lambda: self._client is not None or self._failed_binds > failed or self._closed,
                timeout=2 * self._response_timeout,
            )
            if self._client is not None:
                return self._client
            if self._closed:
                raise TemporaryFailure("the SMS sender is closed")
            error = self._bind_error
        if isinstance(error, SmppBindRefused):
            raise SmppBindRefused(str(error))
        raise TemporaryFailure(str(error) if error else f"no SMPP session with {self.where} yet")

    def _bind(self) -> _Client:
        client = _Client(self._host, self._port, self._response_timeout, self._sequence)
        client.set_message_sent_handler(self._answered)
        client.set_message_received_handler(self._received)
        client.set_error_pdu_handler(self._error)
        client.on_unbind = self._forget
        try:
            client.connect()
            client.bind_transceiver(system_id=self._system_id, password=self._password)
        except smpplib.exceptions.PDUError as error:
            client.disconnect()
            status = error.args[1] if len(error.args) > 1 else c.SMPP_ESME_RUNKNOWNERR
            if status in BIND_REFUSALS:
                raise SmppBindRefused(
                    f"the SMSC at {self._host}:{self._port} refused the bind of system_id "
                    f"{self._system_id!r}: {status_name(status)}; check TONGKA_SMPP_URL"
                ) from None
            raise TemporaryFailure(
                f"the SMSC at {self._host}:{self._port} refused the bind: {status_name(status)}"
            ) from None
        except (smpplib.exceptions.ConnectionError, OSError) as error:
            client.disconnect()
            raise TemporaryFailure(
                f"cannot reach the SMSC at {self._host}:{self._port}: {str(error) or 'connection closed'}"
            ) from None
        return client

    def _keep_bound(self) -> None:
        """The session's thread: bind, read until the link drops, bind again, until closed.
        Binds that fail, or sessions that end within a second, pause the next bind 0.5 s, then
        twice as long each time up to `rebind_max_seconds`; `_bound` cuts a pause short."""
        pause = 0.0
        while not self._closed:
            if pause:
                self._wake.wait(pause)
                self._wake.clear()
            try:
                client = self._bind()
            except TemporaryFailure as error:
                with self._state:
                    self._bind_error, self._failed_binds = error, self._failed_binds + 1
                    self._state.notify_all()
                pause = min(max(pause * 2, 0.5), self._rebind_max_seconds)
                log.warning("sms.bind_failed", error=str(error), retry_in=pause)
                continue
            with self._state:
                if self._closed:
                    client.disconnect()
                    return
                self._client, self._bind_error = client, None
                self._state.notify_all()
            log.info("sms.bound", smsc=self.where)
            began = time.monotonic()
            try:
                self._read(client)
            except Exception as error:
                if not self._closed:
                    log.warning(
                        "sms.session_ended", smsc=self.where, error=str(error) or repr(error)
                    )
            finally:
                self._lost(client)
            short = time.monotonic() - began < 1.0
            pause = min(max(pause * 2, 0.5), self._rebind_max_seconds) if short else 0.0

    def _read(self, client: _Client) -> None:
        """Read and act on PDUs; an enquire_link after a silence; raise when the link is dead."""
        heard, asked = time.monotonic(), None
        while True:
            if client.unbound_at is not None:  # the SMSC unbound: it should close at once
                wait = client.unbound_at + self._response_timeout - time.monotonic()
                if not client.readable(wait):
                    raise _LinkLost("the SMSC unbound the session and kept it open")
                client.read_once(auto_send_enquire_link=False)
                continue
            if asked is not None:
                wait = asked + self._response_timeout - time.monotonic()
            else:
                wait = heard + self._enquire_link_seconds - time.monotonic()
            if client.readable(wait):
                # The socket's timeout (response_timeout) bounds a PDU that stops half-way.
                client.read_once(auto_send_enquire_link=False)
                heard, asked = time.monotonic(), None
            elif asked is not None:
                raise _LinkLost(f"no answer to enquire_link within {self._response_timeout:g} s")
            else:
                client.send_pdu(smpp.make_pdu("enquire_link", client=client))
                asked = time.monotonic()

    def _drop(self, client: _Client) -> None:
        """A sender gave up on this session: forget it now (the thread binds a new one)."""
        self._forget(client)
        client.hang_up()

    def _forget(self, client: _Client) -> None:
        """No new part goes on `client`'s session: senders wait for the next one."""
        with self._state:
            if self._client is client:
                self._client = None

    def _lost(self, client: _Client) -> None:
        with self._state:
            if self._client is client:
                self._client = None
            for answer in self._answers.values():
                if answer.client is client:
                    answer.done.set()  # unanswered ones keep pdu None: lost
            self._state.notify_all()
        client.disconnect()

    # --- receipts ------------------------------------------------------------------------------

    def _received(self, pdu: Any, **_: Any) -> int:
        """smpplib's handler for deliver_sm: the status it answers with."""
        if pdu.command != "deliver_sm":
            return int(c.SMPP_ESME_ROK)
        if (pdu.esm_class or 0) & 0x3C != SMSC_DELIVERY_RECEIPT:
            log.info("sms.mobile_originated_ignored")  # tongka asks for no replies
            return int(c.SMPP_ESME_ROK)
        receipt = parse_receipt(pdu)
        if receipt is None:
            # Only what comes before "text:", which quotes the message (a code, maybe).
            head = re.split(rb"(?i)\btext:", pdu.short_message or b"")[0]
            log.warning("sms.receipt_unreadable", receipt=text_of(head)[:120])
            return int(c.SMPP_ESME_ROK)
        part_id, stat = receipt
        outcome = OUTCOME.get(stat)
        if outcome is None:
            return int(c.SMPP_ESME_ROK)  # ENROUTE, ACCEPTD, UNKNOWN: not final
        with self._state:
            message = self._sent.get(part_id)
            if message is not None:
                message.outcomes[part_id] = outcome
                if outcome == "delivered" and len(message.outcomes) < len(message.parts):
                    return int(c.SMPP_ESME_ROK)  # the message is delivered when all its parts are
                if "undeliverable" in message.outcomes.values():
                    outcome = "undeliverable"
        provider_id = message.first_id if message is not None and message.first_id else part_id
        try:
            known = self._on_receipt(provider_id, outcome, clock.now())
        except Exception:
            log.exception("sms.receipt_not_recorded", provider_message_id=provider_id)
            return int(c.SMPP_ESME_RX_T_APPN)  # the SMSC delivers it again later
        if known is False and message is not None and message.refusals < RECEIPT_REFUSALS:
            # Sent by this process a moment ago: the worker has not committed its id yet.
            message.refusals += 1
            return int(c.SMPP_ESME_RX_T_APPN)
        return int(c.SMPP_ESME_ROK)

    @staticmethod
    def _remember(table: OrderedDict[Any, _Message], key: Any, message: _Message) -> None:
        table[key] = message
        table.move_to_end(key)
        while len(table) > REMEMBERED:
            table.popitem(last=False)


def sms_sender_from(settings: Settings, on_receipt: OnReceipt) -> SmppSender | None:
    """The SMS sender the settings describe, or None when TONGKA_SMPP_URL is not set."""
    if settings.smpp_url is None:
        return None
    smsc = smpp_address(settings.smpp_url.get_secret_value())
    return SmppSender(
        host=smsc.host,
        port=smsc.port,
        system_id=smsc.system_id,
        password=smsc.password,
        source=settings.sms_sender,
        on_receipt=on_receipt,
        enquire_link_seconds=settings.smpp_enquire_link_seconds,
        response_timeout=settings.smpp_response_timeout_seconds,
    )
