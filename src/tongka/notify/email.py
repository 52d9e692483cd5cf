"""Email over SMTP: the sender the delivery worker hands email to (`TONGKA_SMTP_URL`, `TONGKA_MAIL_FROM`).

`smtp://user:password@host:port` speaks SMTP and upgrades with STARTTLS whenever the server offers
it; a password is sent to another machine only over TLS (a server that offers no STARTTLS then
gets nothing: a temporary failure, logged). `smtps://` is TLS from the first byte (port 465).
Certificates are checked against the system's CAs, or `TONGKA_SMTP_CA_FILE`.

Each message is multipart/alternative (the plain text, then the HTML), carries the outbox row's id
as its `Message-ID` (`<id@domain of MAIL_FROM>`), the same on every try, so a repeat is recognisable
and mail software folds it with the first; and is DKIM-signed (dkimpy) when a key and selector are
set. One connection is kept open between messages and opened again if the server dropped it.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dkim
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tongka import clock
from tongka.config import Settings, loopback
from tongka.notify.senders import Outgoing, PermanentFailure, TemporaryFailure

log = structlog.get_logger()

# Signed headers: what a forger would change. The DKIM signature covers the body too.
DKIM_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-language",
]


@dataclass(frozen=True)
class SmtpServer:
    """Where the email goes, read from `TONGKA_SMTP_URL`."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("an SMTP URL is smtp://[user:password@]host[:port] or smtps://…")
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def __str__(self) -> str:
        """For logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class Dkim:
    selector: str
    domain: str
    private_key: (
        bytes  # PEM (PKCS#1 or PKCS#8) of an RSA key: rsa-sha256, what every verifier knows
    )

    def __post_init__(self) -> None:
        # A wrong key stops the start, not each message at its first signature.
        key = serialization.load_pem_private_key(self.private_key, password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("TONGKA_DKIM_KEY_FILE must hold an RSA private key (PEM)")

    def sign(self, data: bytes) -> bytes:
        """The DKIM-Signature header line for `data` (a message in CRLF form)."""
        return bytes(
            dkim.sign(
                data,
                self.selector.encode(),
                self.domain.encode(),
                self.private_key,
                include_headers=DKIM_HEADERS,
                # relaxed/relaxed: survives relays that refold headers or trim trailing spaces
                canonicalize=(b"relaxed", b"relaxed"),
            )
        )


class SmtpSender:
    """The `Sender` of the channel `email` (notify/senders.py)."""

    channel = "email"

    def __init__(
        self,
        server: SmtpServer,
        mail_from: str,
        *,
        dkim_signer: Dkim | None = None,
        timeout: float = 20.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.mail_from = mail_from
        self.envelope_from = parseaddr(mail_from)[1]
        self.domain = self.envelope_from.rpartition("@")[2]
        if not self.domain:
            raise ValueError(f"TONGKA_MAIL_FROM {mail_from!r} has no address with a domain")
        self.dkim = dkim_signer
        self.timeout = timeout
        self.tls = tls or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None

    def message_id(self, message: Outgoing) -> str:
        return f"<{message.id}@{self.domain}>"

    def compose(self, message: Outgoing) -> bytes:
        """The message as it goes on the wire (CRLF line ends), signed if DKIM is set."""
        mail = EmailMessage(policy=SMTP)
        mail["From"] = self.mail_from
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(clock.now())
        mail["Message-ID"] = self.message_id(message)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        # After the parts: making the message multipart moves Content-* headers to its first part.
        mail["Content-Language"] = message.language
        data = mail.as_bytes()
        return self.dkim.sign(data) + data if self.dkim else data

    def send(self, message: Outgoing) -> str:
        data = self.compose(message)
        try:
            kept = self._smtp is not None
            try:
                self._send(data, message.to)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not kept:
                    raise
                # The connection kept open from an earlier message was closed by the server meanwhile.
                self.close()
                self._send(data, message.to)
        except smtplib.SMTPRecipientsRefused as error:
            code, reason = next(iter(error.recipients.values()))
            raise _failure(code, reason) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            self.close()
            raise _failure(error.smtp_code, error.smtp_error) from None
        except smtplib.SMTPAuthenticationError as error:
            self.close()
            log.error("smtp_login_refused", server=str(self.server), code=error.smtp_code)
            raise TemporaryFailure(f"SMTP log-in refused ({error.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as error:  # OSError: refused, timed out, TLS
            self.close()
            raise TemporaryFailure(f"{type(error).__name__}: {error}"[:300]) from None
        return self.message_id(message)

    def _send(self, data: bytes, to: str) -> None:
        smtp = self._smtp or self._connect()
        smtp.sendmail(self.envelope_from, [to], data)

    def _connect(self) -> smtplib.SMTP:
        server = self.server
        smtp: smtplib.SMTP
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=self.timeout, context=self.tls
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            secure = server.implicit_tls
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=self.tls)
                smtp.ehlo()
                secure = True
            if server.username is not None:
                if not (secure or loopback(server.host)):
                    raise TemporaryFailure(
                        f"{server} offers no STARTTLS: the password is not sent in the clear"
                    )
                smtp.login(server.username, server.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def _failure(code: int, reason: bytes | str) -> TemporaryFailure | PermanentFailure:
    """5xx: the server will never take it as it is; 4xx: it may later (RFC 5321 4.2.1)."""
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
    failure = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return failure(f"SMTP {code}: {text}"[:300])


def sender_from(settings: Settings) -> SmtpSender | None:
    """The email sender the settings describe, or None when no SMTP server is set."""
    if settings.smtp_url is None or not settings.mail_from:
        return None
    server = SmtpServer.parse(settings.smtp_url.get_secret_value())
    tls = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    signer = None
    if settings.dkim_key_file is not None and settings.dkim_selector:
        domain = settings.dkim_domain or parseaddr(settings.mail_from)[1].rpartition("@")[2]
        signer = Dkim(settings.dkim_selector, domain, Path(settings.dkim_key_file).read_bytes())
    return SmtpSender(
        server,
        settings.mail_from,
        dkim_signer=signer,
        timeout=settings.smtp_timeout_seconds,
        tls=tls,
    )
