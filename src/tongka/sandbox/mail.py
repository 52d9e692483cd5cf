"""Dev and tests: a local SMTP server (aiosmtpd, a real one) that keeps what it receives.

`make run` starts one inside the process (`start()` -> (host, port), `stop()`) and points the
delivery worker at it, so the demo's email goes through the real SMTP client, STARTTLS and all,
and `GET /dev/outbox` shows each message's status. The tests start their own `MailServer`, with
STARTTLS or implicit TLS (a throwaway certificate), a log-in, and refusals of chosen recipients.

It runs its own event loop in a thread, so it serves while the caller blocks in smtplib.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from tongka import clock
from tongka.config import Settings

KEEP = 1000  # the newest messages kept by a long-running dev server


@dataclass(frozen=True)
class Received:
    """One message as the server took it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as sent (dot-stuffing undone): what a DKIM verifier checks
    tls: bool
    login: str | None
    at: datetime

    def parsed(self) -> EmailMessage:
        message = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class _Handler:
    received: list[Received]
    # Recipient -> the SMTP reply to RCPT TO ("550 5.1.1 no such user", "451 4.3.0 try later").
    refuse: MutableMapping[str, str] = field(default_factory=dict)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    implicit_tls: bool = False
    # Tests: while `paused` is set, a message's data is not answered (`holding` says one is waiting);
    # once cleared it is refused with a 451 and not kept, as if the server had failed meanwhile.
    paused: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if answer := self.refuse.get(address):
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.paused.is_set():
            self.holding.set()
            while self.paused.is_set():
                await asyncio.sleep(0.02)
            return "451 4.3.0 not taken: the server paused"
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        data = envelope.original_content or b""
        with self.arrived:
            self.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    tls=self.implicit_tls or session.ssl is not None,
                    login=login.decode() if isinstance(login, bytes) else None,
                    at=clock.now(),
                )
            )
            del self.received[:-KEEP]
            self.arrived.notify_all()
        return "250 OK: queued"


class MailServer:
    """A local SMTP server. `starttls`: offer STARTTLS with this context; `implicit_tls`: speak TLS
    from the first byte (smtps); `users`: require a log-in (over TLS if there is any)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.users = users
        self.received: list[Received] = []
        self.handler = _Handler(self.received, implicit_tls=implicit_tls is not None)
        self.refuse = self.handler.refuse
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _smtp(self) -> SMTP:
        options: dict[str, Any] = {
            "hostname": "sandbox.tongka.test",
            "ident": "tongka sandbox SMTP",
        }
        if self.starttls is not None:
            options["tls_context"] = self.starttls
        if self.users is not None:
            options["authenticator"] = self._authenticate
            options["auth_required"] = True
            # With implicit TLS the whole session is encrypted, but aiosmtpd counts only STARTTLS as TLS.
            options["auth_require_tls"] = self.starttls is not None
        with warnings.catch_warnings():
            if self.implicit_tls is not None:  # "AUTH without TLS": not so, the socket is TLS
                warnings.simplefilter("ignore", UserWarning)
            return SMTP(self.handler, **options)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        users = self.users or {}
        ok = (
            isinstance(data, LoginPassword)
            and users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> tuple[str, int]:
        """Listen (port 0: any free port) and serve in a thread; returns where."""
        loop = asyncio.new_event_loop()
        started: list[Any] = []
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = loop.run_until_complete(
                    loop.create_server(self._smtp, self.host, self.port, ssl=self.implicit_tls)
                )
            except BaseException as error:  # told to the caller of start()
                started.append(error)
                ready.set()
                return
            started.append(server)
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="sandbox-smtp", daemon=True)
        self._thread.start()
        ready.wait(10)
        if not started or isinstance(started[0], BaseException):
            raise RuntimeError(f"the sandbox SMTP server did not start: {started[:1]}")
        self._loop = loop
        self.host, self.port = started[0].sockets[0].getsockname()[:2]
        return self.host, self.port

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The messages once at least `count` have arrived (for tests); fewer if `timeout` passes."""
        with self.handler.arrived:
            self.handler.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{self.host}:{self.port}"


_running: MailServer | None = None


def start(host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
    """The process's dev mail server (`make run`): started once, its address returned."""
    global _running
    if _running is None:
        server = MailServer(host, port)
        address = server.start()
        _running = server
        return address
    return _running.host, _running.port


DEV_MAIL_FROM = "tongka <no-reply@tongka.test>"


def with_local_mail(settings: Settings) -> Settings:
    """Dev start-up: settings whose email goes to this process's mail server (started here), unless
    they name an SMTP server of their own (`TONGKA_SMTP_URL`, then used as it is)."""
    if settings.smtp_url is not None:
        return settings
    host, port = start()
    return settings.model_copy(
        update={
            "smtp_url": SecretStr(f"smtp://{host}:{port}"),
            "mail_from": settings.mail_from or DEV_MAIL_FROM,
        }
    )


def stop() -> None:
    global _running
    server, _running = _running, None
    if server is not None:
        server.stop()


def received() -> list[Received]:
    """What the process's dev mail server has received, oldest first."""
    return list(_running.received) if _running is not None else []
