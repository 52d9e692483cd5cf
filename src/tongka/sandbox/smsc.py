"""A small SMSC speaking SMPP 3.4 over TCP: what tests and the dev demo send SMS to.

It does what an operator's SMSC does for tongka, on a real socket: checks a bind's system_id and
password, answers `submit_sm` with a message id, answers `enquire_link` and `unbind`, and a moment
after accepting a message that asked for one, sends a delivery receipt (`deliver_sm`, esm_class
"SMSC delivery receipt", text `id:… stat:DELIVRD …` and the receipted_message_id/message_state
TLVs) to a session bound as a receiver of that system_id; a receipt the ESME answers with an error,
or whose session drops first, is sent again later, as SMSCs do. PDUs are smpplib's own classes
(parse and generate), so no byte of the protocol is encoded here; only the 4-byte length framing
is read by hand. What it received is kept in `received` (`text`, `concat`, and `messages()` to
reassemble long ones), for /dev/outbox and for tests, which can also misbehave it on purpose:
refuse binds, throttle, stall, unbind or reset every connection.

    server = start("127.0.0.1", 0, "tongka", "secret")  # port 0: any free port, see server.port
    ...
    server.stop()
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from smpplib import consts, smpp
from smpplib.client import SimpleSequenceGenerator
from smpplib.gsm import GSM_CHARACTER_TABLE

from tongka.config import Settings

log = logging.getLogger(__name__)

# esm_class bits 2-5 = 0001: the deliver_sm is an SMSC delivery receipt (SMPP 3.4 §5.2.12).
SMSC_DELIVERY_RECEIPT = 0x04
# A destination the SMSC accepts: an international number's digits (a leading + tolerated).
DESTINATION = re.compile(r"\+?[0-9]{5,20}")
UNDELIVERABLE_STAT = "UNDELIV"
KEPT = 1000  # messages kept in `received`


@dataclass(frozen=True)
class Received:
    """One submit_sm the SMSC accepted: one SMS, or one part of a long one."""

    message_id: str
    system_id: str
    source: str
    destination: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes
    at: datetime

    @property
    def udh(self) -> bytes:
        """The user data header (concatenation), when esm_class says there is one."""
        if not self.esm_class & consts.SMPP_GSMFEAT_UDHI or not self.short_message:
            return b""
        return self.short_message[: self.short_message[0] + 1]

    @property
    def payload(self) -> bytes:
        return self.short_message[len(self.udh) :]

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(reference, parts, this part's number, from 1) of a concatenated SMS, else None."""
        header, position = self.udh[1:], 0
        while position + 2 <= len(header):
            kind, size = header[position], header[position + 1]
            value = header[position + 2 : position + 2 + size]
            if kind == consts.SMPP_UDHIEIE_CONCATENATED and size == 3:
                return value[0], value[1], value[2]
            if kind == consts.SMPP_UDHIEIE_CONCATENATED16 and size == 4:
                return int.from_bytes(value[:2], "big"), value[2], value[3]
            position += 2 + size
        return None

    @property
    def text(self) -> str:
        """This SMS's (or part's) text, decoded from its data_coding."""
        if self.data_coding == consts.SMPP_ENCODING_ISO10646:
            return self.payload.decode("utf-16-be", "replace")
        if self.data_coding == consts.SMPP_ENCODING_DEFAULT:
            return gsm_decode(self.payload)
        return self.payload.decode("latin-1")


def gsm_decode(octets: bytes) -> str:
    """GSM 03.38 default alphabet, one septet an octet (SMPP's data_coding 0), escapes included."""
    out, escaped = [], False
    for octet in octets:
        if octet == 0x1B and not escaped:
            escaped = True
            continue
        out.append(GSM_CHARACTER_TABLE[octet + 0x80 if escaped else octet])
        escaped = False
    return "".join(out)


def messages(received: list[Received]) -> list[tuple[str, str]]:
    """(destination, text) of every complete SMS, long ones reassembled from their parts in order."""
    complete: list[tuple[str, str]] = []
    groups: dict[tuple[str, str, int, int], dict[int, str]] = {}
    for one in received:
        if one.concat is None:
            complete.append((one.destination, one.text))
            continue
        reference, total, number = one.concat
        parts = groups.setdefault((one.destination, one.source, reference, total), {})
        parts[number] = one.text
        if len(parts) == total:
            complete.append((one.destination, "".join(parts[n] for n in range(1, total + 1))))
            del groups[(one.destination, one.source, reference, total)]
    return complete


@dataclass
class _Receipt:
    message: Received
    stat: str
    due: float
    attempts: int = 0


@dataclass(eq=False)  # a session is itself, kept in a set
class _Session:
    sock: socket.socket
    peer: str
    sequence: SimpleSequenceGenerator = field(default_factory=SimpleSequenceGenerator)
    write: threading.Lock = field(default_factory=threading.Lock)
    system_id: str | None = None
    dropped: bool = False  # by a test: nothing more is read from it
    transmits: bool = False
    receives: bool = False
    # deliver_sm sequence -> the receipt it carries, until the ESME answers.
    unanswered: dict[int, _Receipt] = field(default_factory=dict)

    def send(self, command: str, **fields: Any) -> int:
        """Send a PDU; a response takes `sequence=` the request's. Returns its sequence number."""
        answer_to = fields.pop("sequence", None)
        with self.write:
            pdu = smpp.make_pdu(command, client=self.sequence, **fields)
            if answer_to is not None:
                pdu.sequence = answer_to
            self.sock.sendall(pdu.generate())
            return int(pdu.sequence)


class Smsc:
    """The server: `start()` makes one. Knobs for tests: `refuse_binds`, `undeliverable`,
    `answering`, `throttle()`, `drop_after()`, `drop_clients()`, `unbind_clients()`."""

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        *,
        receipt_delay: float = 0.05,
        receipt_retry: float = 0.2,
    ) -> None:
        self.system_id, self._password = system_id, password
        self.receipt_delay, self.receipt_retry = receipt_delay, receipt_retry
        self.received: list[Received] = []
        # Message ids whose receipt the ESME answered with ESME_ROK (each at most once here).
        self.receipts_delivered: list[str] = []
        self.receipts_refused = 0  # answered with an error status (then sent again later)
        self.binds = 0  # successful binds, so a test can see a re-bind
        self.enquire_links = 0  # answered, so a test can see the keep-alive
        self.ignored = 0  # submit_sm taken and not answered (while not `answering`)
        self.refuse_binds = False  # answer every bind ESME_RBINDFAIL
        self.undeliverable: set[str] = set()  # destinations whose receipts say UNDELIV
        # False: receipts carry their text only (id:… stat:…), as many SMSCs send them
        self.receipt_tlvs = True
        # False: take submit_sm and enquire_link and answer nothing (a stalled SMSC)
        self.answering = True
        self._throttled = 0
        self._drop_after: int | None = None
        self._lock = threading.Condition()
        self._sessions: set[_Session] = set()
        self._receipts: list[_Receipt] = []
        self._stopped = False
        self._listener = socket.create_server((host, port))
        # Set here, not in the accept thread: a stop() right after start closes the socket first.
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._threads = [
            threading.Thread(target=self._accept, name="smsc-accept", daemon=True),
            threading.Thread(target=self._send_receipts, name="smsc-receipts", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # --- what tests and the dev pages use ---------------------------------------------------

    def messages(self) -> list[tuple[str, str]]:
        with self._lock:
            return messages(list(self.received))

    def throttle(self, count: int = 1) -> None:
        """Answer the next `count` submit_sm with ESME_RTHROTTLED."""
        with self._lock:
            self._throttled = count

    def drop_after(self, answers: int) -> None:
        """Close every connection right after the next `answers` submit_sm have been answered."""
        with self._lock:
            self._drop_after = answers

    def drop_clients(self, *, reset: bool = True) -> None:
        """End every connection at once, reading nothing more from it: a TCP reset (as a crashed
        SMSC or a firewall would), or with `reset=False` a plain close (what was sent arrives)."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.dropped = True
            _reset(session.sock) if reset else _close(session.sock)

    def unbind_clients(self) -> None:
        """Ask every bound ESME to unbind (as an SMSC going down for maintenance does)."""
        with self._lock:
            sessions = [s for s in self._sessions if s.system_id is not None]
        for session in sessions:
            try:
                session.send("unbind")
            except OSError:
                pass

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._listener.close()
        self.drop_clients()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- the protocol -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            sock.settimeout(None)
            session = _Session(sock, f"{peer[0]}:{peer[1]}")
            with self._lock:
                self._sessions.add(session)
            threading.Thread(
                target=self._serve, args=(session,), name="smsc-session", daemon=True
            ).start()

    def _serve(self, session: _Session) -> None:
        try:
            while True:
                raw = _read_frame(session.sock)
                if raw is None or session.dropped:
                    return
                pdu = smpp.parse_pdu(raw, client=session.sequence, allow_unknown_opt_params=True)
                if not self._handle(session, pdu):
                    return
        except (OSError, ValueError) as error:
            log.info("smsc: session %s ended: %s", session.peer, error)
        except Exception:
            log.exception("smsc: session %s failed", session.peer)
        finally:
            session.sock.close()  # after drop_clients' linger 0, a reset; otherwise a clean close
            with self._lock:
                self._sessions.discard(session)
                # Receipts it had not answered go to the next session bound for them.
                for receipt in session.unanswered.values():
                    receipt.due = time.monotonic() + self.receipt_retry
                    self._receipts.append(receipt)
                session.unanswered.clear()
                self._lock.notify_all()

    def _handle(self, session: _Session, pdu: Any) -> bool:
        """Act on one PDU; False ends the session."""
        command, sequence = pdu.command, pdu.sequence
        log.debug("smsc: %s %s seq %s status %s", session.peer, command, sequence, pdu.status)
        if command in ("bind_transceiver", "bind_transmitter", "bind_receiver"):
            status = self._bind_status(session, pdu)
            session.send(f"{command}_resp", sequence=sequence, status=status, system_id="smsc")
            if status == consts.SMPP_ESME_ROK:
                session.system_id = pdu.system_id.decode()
                session.transmits = command != "bind_receiver"
                session.receives = command != "bind_transmitter"
                with self._lock:
                    self.binds += 1
                    self._lock.notify_all()  # receipts waiting for a receiver
            return True
        if command == "submit_sm":
            return self._submit(session, pdu)
        if command == "deliver_sm_resp":
            with self._lock:
                receipt = session.unanswered.pop(sequence, None)
                if receipt is not None and pdu.status == consts.SMPP_ESME_ROK:
                    self.receipts_delivered.append(receipt.message.message_id)
                elif receipt is not None:  # the ESME could not take it now: again later
                    self.receipts_refused += 1
                    receipt.due = time.monotonic() + self.receipt_retry
                    self._receipts.append(receipt)
                    self._lock.notify_all()
            return True
        if command == "enquire_link":
            if self.answering:
                session.send("enquire_link_resp", sequence=sequence)
                with self._lock:
                    self.enquire_links += 1
            return True
        if command == "unbind":
            session.send("unbind_resp", sequence=sequence)
            return False
        if command in ("unbind_resp", "generic_nack"):
            return command != "unbind_resp"
        if command == "enquire_link_resp":
            return True
        session.send("generic_nack", sequence=sequence, status=consts.SMPP_ESME_RINVCMDID)
        return True

    def _bind_status(self, session: _Session, pdu: Any) -> int:
        if session.system_id is not None:
            return int(consts.SMPP_ESME_RALYBND)
        if self.refuse_binds:
            return int(consts.SMPP_ESME_RBINDFAIL)
        if (pdu.system_id or b"").decode() != self.system_id:
            return int(consts.SMPP_ESME_RINVSYSID)
        if not secrets.compare_digest((pdu.password or b"").decode(), self._password):
            return int(consts.SMPP_ESME_RINVPASWD)
        return int(consts.SMPP_ESME_ROK)

    def _submit(self, session: _Session, pdu: Any) -> bool:
        if session.system_id is None or not session.transmits:
            session.send(
                "submit_sm_resp", sequence=pdu.sequence, status=consts.SMPP_ESME_RINVBNDSTS
            )
            return True
        if not self.answering:
            with self._lock:
                self.ignored += 1
            return True
        destination = (pdu.destination_addr or b"").decode()
        with self._lock:
            throttled = self._throttled > 0
            self._throttled -= throttled
        if throttled:
            session.send(
                "submit_sm_resp", sequence=pdu.sequence, status=consts.SMPP_ESME_RTHROTTLED
            )
            return True
        if not DESTINATION.fullmatch(destination):
            session.send(
                "submit_sm_resp", sequence=pdu.sequence, status=consts.SMPP_ESME_RINVDSTADR
            )
            return True
        message = Received(
            message_id=secrets.token_hex(8),  # unique across restarts, as an SMSC's ids are
            system_id=session.system_id,
            source=(pdu.source_addr or b"").decode(),
            destination=destination,
            data_coding=pdu.data_coding or 0,
            esm_class=pdu.esm_class or 0,
            registered_delivery=pdu.registered_delivery or 0,
            short_message=pdu.short_message or b"",
            at=datetime.now(UTC),
        )
        with self._lock:
            self.received.append(message)
            del self.received[:-KEPT]  # a dev server runs for days
            if message.registered_delivery & consts.SMPP_SMSC_DELIVERY_RECEIPT_BITMASK:
                stat = UNDELIVERABLE_STAT if destination in self.undeliverable else "DELIVRD"
                wanted = message.registered_delivery & consts.SMPP_SMSC_DELIVERY_RECEIPT_BITMASK
                if wanted == consts.SMPP_SMSC_DELIVERY_RECEIPT_BOTH or stat != "DELIVRD":
                    due = time.monotonic() + self.receipt_delay
                    self._receipts.append(_Receipt(message, stat, due))
                    self._lock.notify_all()
        session.send("submit_sm_resp", sequence=pdu.sequence, message_id=message.message_id)
        with self._lock:
            drop = self._drop_after is not None and self._drop_after <= 1
            if self._drop_after is not None:
                self._drop_after = None if drop else self._drop_after - 1
        if drop:  # a close, not a reset: the answer just sent arrives first
            self.drop_clients(reset=False)
        return True

    def _send_receipts(self) -> None:
        with self._lock:
            while not self._stopped:
                now = time.monotonic()
                due = [r for r in self._receipts if r.due <= now]
                for receipt in due:
                    session = next(
                        (
                            s
                            for s in self._sessions
                            if s.receives and s.system_id == receipt.message.system_id
                        ),
                        None,
                    )
                    if session is None:
                        continue  # kept until an ESME binds to receive it
                    self._receipts.remove(receipt)
                    receipt.attempts += 1
                    try:
                        sequence = self._deliver(session, receipt)
                    except OSError:
                        receipt.due = now + self.receipt_retry
                        self._receipts.append(receipt)
                        continue
                    session.unanswered[sequence] = receipt
                waits = [r.due - now for r in self._receipts if r.due > now]
                self._lock.wait(min([*waits, 0.5]))

    def _deliver(self, session: _Session, receipt: _Receipt) -> int:
        message, stamp = receipt.message, datetime.now(UTC).strftime("%y%m%d%H%M")
        delivered = receipt.stat == "DELIVRD"
        text = (
            f"id:{message.message_id} sub:001 dlvrd:{'001' if delivered else '000'} "
            f"submit date:{message.at.strftime('%y%m%d%H%M')} done date:{stamp} "
            f"stat:{receipt.stat} err:{'000' if delivered else '001'} text:"
        )
        state = (
            consts.SMPP_MESSAGE_STATE_DELIVERED
            if delivered
            else consts.SMPP_MESSAGE_STATE_UNDELIVERABLE
        )
        tlvs = {"receipted_message_id": message.message_id, "message_state": state}
        return session.send(
            "deliver_sm",
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=message.destination.lstrip("+"),
            destination_addr=message.source,
            esm_class=SMSC_DELIVERY_RECEIPT,
            short_message=text.encode("ascii"),
            **(tlvs if self.receipt_tlvs else {}),
        )


def _read_frame(sock: socket.socket) -> bytes | None:
    """One PDU's bytes (its 4-byte length, then the rest), or None when the peer closed."""
    head = _read_exactly(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">L", head)
    if not 16 <= length <= 64 * 1024:
        raise ValueError(f"a PDU of {length} bytes")
    body = _read_exactly(sock, length - 4)
    if body is None:
        return None
    return head + body


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _reset(sock: socket.socket) -> None:
    """End a connection with a TCP reset: linger 0, then wake the session's blocked read."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def start(host: str, port: int, system_id: str, password: str, **knobs: float) -> Smsc:
    """An SMSC listening on host:port (0: a free port, then see `.port`) for this one account."""
    return Smsc(host, port, system_id, password, **knobs)


# --- dev mode's SMSC ------------------------------------------------------------------------

_running: Smsc | None = None
_password = ""
DEV_SYSTEM_ID = "tongka-dev"


def with_local_smsc(settings: Settings) -> Settings:
    """Dev start-up: settings whose SMS go to an SMSC in this process (started here, on a free port,
    with a throwaway password), unless they name an SMSC of their own (`TONGKA_SMPP_URL`)."""
    global _running, _password
    if settings.smpp_url is not None:
        return settings
    if _running is None:
        _password = secrets.token_hex(4)  # SMPP passwords are at most 8 characters
        _running = start("127.0.0.1", 0, DEV_SYSTEM_ID, _password)
    url = f"smpp://{DEV_SYSTEM_ID}:{_password}@127.0.0.1:{_running.port}"
    return settings.model_copy(update={"smpp_url": SecretStr(url)})


def main() -> None:  # pragma: no cover - a tool for people, run by hand
    """`python -m tongka.sandbox.smsc`: a throwaway SMSC outside the server, printing each SMS it
    takes (long ones reassembled), to point TONGKA_SMPP_URL at (README)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--system-id", default="tongka")
    parser.add_argument("--password", default="secret")
    args = parser.parse_args()
    server = start(args.host, args.port, args.system_id, args.password)
    print(
        f"SMSC on {args.host}:{server.port}, system_id {args.system_id}; Ctrl-C stops", flush=True
    )
    shown = 0
    try:
        while True:
            time.sleep(0.5)
            taken = server.messages()
            for to, text in taken[shown:]:
                print(f"to +{to}: {text}", flush=True)
            shown = len(taken)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
