"""Email over SMTP, against real SMTP servers (aiosmtpd) on this machine: plain, STARTTLS, smtps."""

from __future__ import annotations

import base64
import secrets
import ssl
import uuid
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from structlog.testing import capture_logs

from tests.notify.conftest import DOMAIN, MAIL_FROM
from tongka.config import Settings, problems
from tongka.notify import email, render
from tongka.notify.senders import Outgoing, PermanentFailure, TemporaryFailure, senders_from
from tongka.sandbox.mail import MailServer


def outgoing(to: str = "ada@example.com", language: str = "zh-Hans") -> Outgoing:
    mail = render.email(
        "receipt",
        language,
        number="ONL-00000007",
        volume=5 * 1024**3,
        lines=["+85251021014"],
        pack="5 GB",
        days=30,
        breakdown=["标价：HK$98.00", "实付：HK$98.00（支付宝）"],
        issued_at="2026-12-06T08:00:00Z",
    )
    return Outgoing(uuid.uuid4(), "email", to, mail.subject, mail.text, mail.html, language)


def settings_for(url: str, tmp_path: Path, **more: object) -> Settings:
    return Settings(
        secret_key=secrets.token_urlsafe(32),
        smtp_url=url,
        mail_from=MAIL_FROM,
        _env_file=None,  # type: ignore[call-arg]
        **more,  # type: ignore[arg-type]
    )


def test_a_message_arrives_multipart_in_its_language_with_a_stable_message_id(
    mail: MailServer, smtp: email.SmtpSender
) -> None:
    message = outgoing(language="zh-Hans")
    assert smtp.send(message) == f"<{message.id}@{DOMAIN}>"
    assert smtp.send(message) == f"<{message.id}@{DOMAIN}>"  # a repeat: the same Message-ID
    first, again = mail.wait_for(2)
    assert first.rcpt_tos == ["ada@example.com"] and first.mail_from == "no-reply@mail.tongka.test"
    parsed = first.parsed()
    assert parsed["Message-ID"] == again.parsed()["Message-ID"] == f"<{message.id}@{DOMAIN}>"
    assert parsed["Subject"] == "您的流量已到账 · 收据 ONL-00000007"
    assert parsed["From"] == MAIL_FROM and parsed["Content-Language"] == "zh-Hans"
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "流量已到账" in plain.get_content() and "实付：HK$98.00（支付宝）" in plain.get_content()
    assert '<html lang="zh-Hans">' in html.get_content()
    assert not first.tls  # a plain server offers no STARTTLS: nothing to upgrade to


@pytest.mark.parametrize(
    ("how", "url"),
    [
        # smtp://: upgraded with STARTTLS when offered; the password's URL escapes undone
        ("starttls", "smtp://tongka:p%40ss%20word%2F1@localhost:{port}"),
        (
            "implicit_tls",
            "smtps://tongka:p%40ss%20word%2F1@localhost:{port}",
        ),  # TLS from the first byte
    ],
)
def test_tls_is_used_and_the_login_goes_over_it(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, how: str, url: str
) -> None:
    server = MailServer(**{how: server_tls}, users={"tongka": "p@ss word/1"})
    server.start()
    try:
        sender = email.SmtpSender(
            email.SmtpServer.parse(url.format(port=server.port)),
            MAIL_FROM,
            tls=client_tls,
            timeout=5,
        )
        sender.send(outgoing())
        sender.close()
        [received] = server.wait_for(1)
        assert received.tls and received.login == "tongka"
    finally:
        server.stop()


def test_a_certificate_not_from_a_trusted_ca_is_refused(server_tls: ssl.SSLContext) -> None:
    server = MailServer(starttls=server_tls)
    server.start()
    try:
        sender = email.SmtpSender(  # the system's CAs: they never issued the test certificate
            email.SmtpServer.parse(f"smtp://localhost:{server.port}"), MAIL_FROM, timeout=5
        )
        with pytest.raises(TemporaryFailure, match="CERTIFICATE_VERIFY_FAILED"):
            sender.send(outgoing())
        assert server.received == []
    finally:
        server.stop()


@pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS"
)  # the server's, on loopback
def test_a_wrong_password_is_temporary_and_never_shown(mail: MailServer) -> None:
    server = MailServer(users={"tongka": "right"})
    server.start()
    try:
        url = f"smtp://tongka:wrong-Pa55@127.0.0.1:{server.port}"
        sender = email.SmtpSender(email.SmtpServer.parse(url), MAIL_FROM, timeout=5)
        with capture_logs() as logs, pytest.raises(TemporaryFailure) as failure:
            sender.send(outgoing())
        assert "wrong-Pa55" not in str(failure.value) and "wrong-Pa55" not in repr(logs)
        assert logs and logs[0]["server"] == f"smtp://tongka@127.0.0.1:{server.port}"
        assert server.received == []
    finally:
        server.stop()


def test_the_password_stays_out_of_the_settings_repr(tmp_path: Path) -> None:
    settings = settings_for("smtp://tongka:Sup3r-secret@mail.example.com:587", tmp_path)
    assert "Sup3r-secret" not in repr(settings) and "Sup3r-secret" not in str(settings)
    assert "Sup3r-secret" not in str(email.SmtpServer.parse(settings.smtp_url.get_secret_value()))  # type: ignore[union-attr]


def test_refusals_5xx_are_permanent_4xx_temporary(mail: MailServer, smtp: email.SmtpSender) -> None:
    mail.refuse["gone@example.com"] = "550 5.1.1 no such mailbox"
    mail.refuse["busy@example.com"] = "451 4.3.0 try again later"
    with pytest.raises(PermanentFailure, match="550"):
        smtp.send(outgoing("gone@example.com"))
    with pytest.raises(TemporaryFailure, match="451"):
        smtp.send(outgoing("busy@example.com"))
    smtp.send(outgoing("ada@example.com"))  # the connection still serves
    assert [r.rcpt_tos for r in mail.wait_for(1)] == [["ada@example.com"]]


def test_no_server_is_a_temporary_failure() -> None:
    server = MailServer()
    host, port = server.start()
    server.stop()  # nothing listens there now
    sender = email.SmtpSender(email.SmtpServer.parse(f"smtp://{host}:{port}"), MAIL_FROM, timeout=2)
    with pytest.raises(TemporaryFailure):
        sender.send(outgoing())


def test_a_connection_the_server_dropped_is_opened_again() -> None:
    server = MailServer()
    server.start()
    sender = email.SmtpSender(email.SmtpServer.parse(server.url), MAIL_FROM, timeout=5)
    try:
        sender.send(outgoing("first@example.com"))
        port = server.port
        server.stop()  # the kept connection is closed under the sender
        server = MailServer(port=port)
        server.start()
        sender.send(outgoing("second@example.com"))
        assert [r.rcpt_tos for r in server.wait_for(1)] == [["second@example.com"]]
    finally:
        sender.close()
        server.stop()


def _dns(selector: str, public_key: bytes, kind: str = "rsa"):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{selector}._domainkey.{DOMAIN}.".encode()
        return f"v=DKIM1; k={kind}; p=".encode() + base64.b64encode(public_key)

    return lookup


def test_dkim_signature_verifies_against_the_published_key(
    mail: MailServer, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = settings_for(mail.url, tmp_path, dkim_key_file=key_file, dkim_selector="tongka2026")
    sender = senders_from(settings)["email"]
    message = outgoing(language="zh-Hant")
    sender.send(message)
    sender.close()
    [received] = mail.wait_for(1)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert received.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.data, dnsfunc=_dns("tongka2026", public))
    # Changed on the way, it no longer verifies.
    tampered = received.data.replace(b"ONL-00000007", b"ONL-00000008")
    assert tampered != received.data
    assert not dkim.verify(tampered, dnsfunc=_dns("tongka2026", public))


def test_a_dkim_key_that_is_not_rsa_stops_the_start(mail: MailServer) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="RSA"):
        email.Dkim("ed", DOMAIN, pem)


def test_settings_problems_of_email(tmp_path: Path) -> None:
    def found(**values: object) -> list[str]:
        settings = Settings(
            secret_key=secrets.token_urlsafe(32),
            env="dev",
            _env_file=None,  # type: ignore[call-arg]
            **values,  # type: ignore[arg-type]
        )
        return [p for p in problems(settings) if "MAIL" in p or "DKIM" in p or "SMTP" in p]

    assert found() == []
    assert found(smtp_url="smtp://localhost:25", mail_from=MAIL_FROM) == []
    assert any("TONGKA_MAIL_FROM" in p for p in found(smtp_url="smtp://localhost:25"))
    assert any("go together" in p for p in found(dkim_selector="s1"))
    assert any(
        "not a file" in p for p in found(dkim_key_file=tmp_path / "none.pem", dkim_selector="s")
    )
    assert any("LEASE" in p for p in found(message_lease_seconds=30, smtp_timeout_seconds=20))
    with pytest.raises(ValueError) as refused:
        Settings(
            secret_key=secrets.token_urlsafe(32),
            smtp_url="http://user:Sup3r-secret@mail.example.com",
            _env_file=None,  # type: ignore[call-arg]
        )
    assert "Sup3r-secret" not in str(refused.value)
    assert senders_from(Settings(secret_key="x" * 32, _env_file=None)) == {}  # type: ignore[call-arg]
    empty = Settings(secret_key="x" * 32, smtp_url="", _env_file=None)  # type: ignore[call-arg]
    assert empty.smtp_url is None and senders_from(empty) == {}


def test_the_dev_mail_server_starts_once_keeps_what_it_receives_and_stops() -> None:
    from tongka.sandbox import mail as dev_mail

    host, port = dev_mail.start()
    try:
        assert dev_mail.start() == (host, port)  # one per process
        sender = email.SmtpSender(email.SmtpServer.parse(f"smtp://{host}:{port}"), MAIL_FROM)
        message = outgoing(language="en")
        sender.send(message)
        sender.close()
        [kept] = dev_mail.received()
        assert kept.parsed()["Message-ID"] == f"<{message.id}@{DOMAIN}>"
    finally:
        dev_mail.stop()
    assert dev_mail.received() == []
    with pytest.raises(TemporaryFailure):  # stopped: nothing listens
        email.SmtpSender(email.SmtpServer.parse(f"smtp://{host}:{port}"), MAIL_FROM).send(
            outgoing()
        )


def test_dev_start_up_sends_email_to_the_local_server_unless_one_is_set(tmp_path: Path) -> None:
    from tongka.sandbox import mail as dev_mail

    own = settings_for("smtps://tongka:pw@smtp.example.com", tmp_path)
    assert dev_mail.with_local_mail(own) is own  # an SMTP server of its own: used as it is
    bare = Settings(secret_key=secrets.token_urlsafe(32), env="dev", _env_file=None)  # type: ignore[call-arg]
    try:
        local = dev_mail.with_local_mail(bare)
        assert local.smtp_url is not None and local.mail_from == dev_mail.DEV_MAIL_FROM
        sender = senders_from(local)["email"]
        sender.send(outgoing())
        sender.close()
        assert len(dev_mail.received()) == 1
    finally:
        dev_mail.stop()


def _outward_address() -> str | None:
    """This machine's address toward other machines (a UDP "connection" sends nothing), if any."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is asked
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the test's server
def test_no_password_in_the_clear_to_another_machine() -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    server = MailServer(host=address, users={"tongka": "secret"})  # no STARTTLS offered
    server.start()
    try:
        sender = email.SmtpSender(
            email.SmtpServer.parse(f"smtp://tongka:secret@{address}:{server.port}"),
            MAIL_FROM,
            timeout=5,
        )
        with pytest.raises(TemporaryFailure, match="offers no STARTTLS"):
            sender.send(outgoing())
        assert server.received == []
    finally:
        server.stop()
