"""The network's listener as a packet core meets it: a real `tongka nchf serve` (granian) in its own
process, spoken to over real HTTP/2: h2c with prior knowledge, TLS with ALPN h2, mutual TLS.

The certificates are made here: two CAs, a server certificate from the first, a client certificate
from each. The session test runs on each backend; the TLS ones on SQLite (the database is not
what they are about).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.charging import factories as f
from tests.charging.test_api import BASE, msisdn, remaining, request
from tests.conftest import nf_headers
from tests.helpers import START_TIMEOUT, TONGKA, free_port, log_tail
from tongka.charging import nf_auth
from tongka.config import Settings
from tongka.money import MB

NOW = datetime.now(UTC) - timedelta(
    days=1
)  # the listener's clock is real: buckets valid from yesterday


@dataclass(frozen=True)
class Listener:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def environment(settings: Settings, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        TONGKA_ENV=settings.env,
        TONGKA_DATABASE_URL=settings.database_url,
        TONGKA_SECRET_KEY=settings.secret_key.get_secret_value(),
        TONGKA_SANDBOX_PAYMENT_SECRET=settings.sandbox_payment_secret.get_secret_value(),  # type: ignore[union-attr]
        TONGKA_PUBLIC_BASE_URL=settings.public_base_url,
        TONGKA_NRF_DEV_KEY_FILE=settings.nrf_dev_key_file,
        PYTHONUNBUFFERED="1",
        **values,
    )
    return env


def _until_connectable(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the listener exited with {process.returncode}:\n{log_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port} after {START_TIMEOUT}s:\n{log_tail(log)}")


@contextmanager
def listening(
    settings: Settings, home: Path, *, scheme: str = "http", **values: str
) -> Iterator[Listener]:
    """`tongka nchf serve` on a free port of loopback, with `values` (TONGKA_*) on top of the test's
    settings; stopped with SIGTERM, and its log must stay free of errors."""
    port = free_port()
    log = home / f"nchf-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(TONGKA), "nchf", "serve"],
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(settings, TONGKA_NCHF_BIND=f"127.0.0.1:{port}", **values),
        )
    try:
        _until_connectable(port, process, log)
        yield Listener(f"{scheme}://127.0.0.1:{port}", port, process, log)
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "unhandled_error" not in text, log_tail(log, 80)
    assert process.returncode == 0, log_tail(log)


def line_with_data(session) -> tuple[object, str]:  # type: ignore[no-untyped-def]
    f.ensure_networks(session)
    line = f.line(session)
    bucket = f.bucket(session, line, "hk", 100 * MB, valid_from=NOW)
    session.commit()
    return bucket, msisdn(line)


def a_whole_session(client: httpx.Client, gpsi: str) -> list[httpx.Response]:
    """Create, update, release, as an SMF runs a PDU session; every answer checked and returned."""
    created = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.startswith(str(client.base_url).rstrip("/") + BASE + "/")  # on this listener
    updated = client.post(f"{location}/update", json=request(2, requested=30 * MB, used=20 * MB))
    assert updated.status_code == 200, updated.text
    released = client.post(f"{location}/release", json=request(3, used=5 * MB))
    assert released.status_code == 204, released.text
    return [created, updated, released]


# --- plaintext: h2c with prior knowledge, and HTTP/1.1 in dev --------------------------------


def test_a_whole_session_over_h2c_with_prior_knowledge_and_over_http_1_1_in_dev(
    settings, session, tmp_path
) -> None:
    hk, gpsi = line_with_data(session)
    other_hk, other_gpsi = line_with_data(session)
    with listening(settings, tmp_path) as nchf:
        with httpx.Client(
            base_url=nchf.url, http1=False, http2=True, timeout=10, headers=nf_headers(settings)
        ) as smf:
            answers = a_whole_session(smf, gpsi)
        assert [a.http_version for a in answers] == ["HTTP/2"] * 3
        with httpx.Client(
            base_url=nchf.url, timeout=10, headers=nf_headers(settings)
        ) as curl:  # a person's tool, in dev
            answers = a_whole_session(curl, other_gpsi)
        assert [a.http_version for a in answers] == ["HTTP/1.1"] * 3
    assert (
        remaining(session, hk) == remaining(session, other_hk) == 75 * MB
    )  # 20 + 5 charged, once each


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_FRAME = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, no flags, stream 0
)


def test_the_plaintext_port_answers_the_http2_preface_itself(settings, session, tmp_path) -> None:
    """granian's `auto` on plaintext: a client that opens with the HTTP/2 preface (prior knowledge,
    no Upgrade) gets HTTP/2 at once: the server's first frame is its SETTINGS."""
    with (
        listening(settings, tmp_path) as nchf,
        socket.create_connection(("127.0.0.1", nchf.port), timeout=10) as s,
    ):
        s.sendall(PREFACE + SETTINGS_FRAME)
        header = b""
        while len(header) < 9:
            chunk = s.recv(9 - len(header))
            assert chunk, "the server closed the connection"
            header += chunk
    assert header[3] == 0x4 and header[5:9] == b"\x00\x00\x00\x00"  # SETTINGS on stream 0


def test_production_speaks_http2_only(settings, session, tmp_path) -> None:
    production = settings.model_copy(
        update={"env": "production", "public_base_url": "https://tongka.example"}
    )
    jwks = tmp_path / "nrf-jwks.json"  # the NRF's public keys, as an operator configures them
    key, kid = nf_auth.load_dev_key(settings.nrf_dev_key_file)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))  # PyJWT's, not tongka's
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "ES256"}]}))
    with listening(
        production,
        tmp_path,
        TONGKA_PAYMENT_SANDBOX="false",
        TONGKA_NRF_JWKS=str(jwks),
        TONGKA_NRF_ISSUER=nf_auth.DEV_NRF_INSTANCE_ID,
    ) as nchf:
        with httpx.Client(base_url=nchf.url, http1=False, http2=True, timeout=10) as smf:
            r = smf.get("/healthz")
            assert (r.status_code, r.http_version) == (200, "HTTP/2")
        with (
            httpx.Client(base_url=nchf.url, timeout=5) as http11,
            pytest.raises(httpx.TransportError),
        ):
            http11.get("/healthz")


def test_an_smf_with_a_token_from_the_nrf_is_served_and_without_one_nothing_changes(
    settings, session, tmp_path
) -> None:
    """The whole exchange an SMF has with a CHF in dev, over h2c: a token from /oauth2/token, then a session.
    Without a token, or with one for another audience or scope, every Nchf route is 401 and nothing is charged."""
    hk, gpsi = line_with_data(session)
    someone = "0e2d5c4b-3a29-4817-9605-f4e3d2c1b0a9"
    wrong = {
        "no token": {},
        "another audience": {
            "Authorization": "Bearer " + nf_auth.issue_dev_token(settings, someone, audience="PCF")
        },
        "another scope": {
            "Authorization": "Bearer "
            + nf_auth.issue_dev_token(settings, someone, scope="nudm-sdm")
        },
    }
    with (
        listening(settings, tmp_path) as nchf,
        httpx.Client(base_url=nchf.url, http1=False, http2=True, timeout=10) as smf,
    ):
        token = smf.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "nfInstanceId": someone,
                "nfType": "SMF",
                "targetNfType": "CHF",
                "scope": "nchf-convergedcharging",
            },
        )
        assert (token.status_code, token.http_version, token.json()["token_type"]) == (
            200,
            "HTTP/2",
            "Bearer",
        )
        created = smf.post(
            BASE,
            json=request(1, gpsi=gpsi, requested=30 * MB),
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert created.status_code == 201, created.text
        ref = created.headers["location"].rsplit("/", 1)[1]
        for why, headers in wrong.items():
            for path, body in (
                (BASE, request(1, gpsi=gpsi, requested=30 * MB)),
                (f"{BASE}/{ref}/update", request(2, requested=30 * MB, used=20 * MB)),
                (f"{BASE}/{ref}/release", request(3, used=5 * MB)),
            ):
                r = smf.post(path, json=body, headers=headers)
                assert r.status_code == 401, (why, path, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer"), why
                assert r.headers["content-type"] == "application/problem+json"
                assert (
                    gpsi.removeprefix("msisdn-") not in r.text and ref not in r.text
                )  # says nothing of lines
        assert remaining(session, hk) == 70 * MB  # only the authenticated create's 30 MB reserved
        for path, body in (
            (f"{BASE}/{ref}/update", request(2, requested=30 * MB, used=20 * MB)),
            (f"{BASE}/{ref}/release", request(3, used=5 * MB)),
        ):
            r = smf.post(
                path, json=body, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
            assert r.status_code in (200, 204), r.text
    assert remaining(session, hk) == 75 * MB


# --- TLS and mutual TLS ------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate) -> None:
    Path(f"{path}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:  # PKCS#8, the form granian reads
        Path(f"{path}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class CA:
    def __init__(self, home: Path, name: str) -> None:
        self.key, self.name = _key(), _name(name)
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = home / f"{name}.crt"
        _write(home / name, None, self.cert)

    def issue(self, home: Path, name: str, *, server: bool) -> Issued:
        key, now = _key(), datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
                ),
                critical=False,
            )
        _write(home / name, key, builder.sign(self.key, hashes.SHA256()))
        return Issued(Path(f"{home / name}.crt"), Path(f"{home / name}.key"))


@dataclass(frozen=True)
class PKI:
    operator: CA  # issues the CHF's certificate and the operator's SMFs'
    stranger: CA  # anyone else's
    server: Issued
    smf: Issued
    stranger_smf: Issued


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    home = tmp_path / "pki"
    home.mkdir()
    operator, stranger = CA(home, "operator-ca"), CA(home, "stranger-ca")
    return PKI(
        operator,
        stranger,
        operator.issue(home, "chf.nf.example", server=True),
        operator.issue(home, "smf1.nf.example", server=False),
        stranger.issue(home, "smf9.elsewhere", server=False),
    )


def sqlite_only(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("TLS is the listener's, whatever the database: SQLite is enough")


def smf_client(
    url: str, pki: PKI, client: Issued | None = None, headers: dict[str, str] | None = None
) -> httpx.Client:
    context = ssl.create_default_context(cafile=pki.operator.path)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return httpx.Client(
        base_url=url, http1=False, http2=True, verify=context, timeout=10, headers=headers
    )


def tls_values(pki: PKI, *, client_ca: Path | None = None) -> dict[str, str]:
    values = {
        "TONGKA_NCHF_TLS_CERT": str(pki.server.cert),
        "TONGKA_NCHF_TLS_KEY": str(pki.server.key),
    }
    if client_ca is not None:
        values["TONGKA_NCHF_CLIENT_CA"] = str(client_ca)
    return values


def alpn(port: int, pki: PKI) -> str | None:
    """The protocol the listener picks when a client offers h2 and http/1.1."""
    context = ssl.create_default_context(cafile=pki.operator.path)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.selected_alpn_protocol()


def test_with_a_certificate_the_listener_is_tls_and_negotiates_h2(
    settings, session, tmp_path, pki
) -> None:
    sqlite_only(settings)
    hk, gpsi = line_with_data(session)
    with listening(settings, tmp_path, scheme="https", **tls_values(pki)) as nchf:
        assert alpn(nchf.port, pki) == "h2"
        with smf_client(nchf.url, pki, None, nf_headers(settings)) as smf:
            answers = a_whole_session(smf, gpsi)
        assert [a.http_version for a in answers] == ["HTTP/2"] * 3
        with httpx.Client(
            base_url=nchf.url.replace("https:", "http:"), http1=False, http2=True, timeout=5
        ) as h2c:
            with pytest.raises(httpx.TransportError):  # no plaintext beside it
                h2c.get("/healthz")
    assert remaining(session, hk) == 75 * MB


def test_with_a_client_ca_only_its_clients_are_let_in(settings, session, tmp_path, pki) -> None:
    sqlite_only(settings)
    hk, gpsi = line_with_data(session)
    with listening(
        settings, tmp_path, scheme="https", **tls_values(pki, client_ca=pki.operator.path)
    ) as nchf:
        for who in (None, pki.stranger_smf):  # no certificate; one another CA issued
            with (
                smf_client(nchf.url, pki, who, nf_headers(settings)) as smf,
                pytest.raises(httpx.TransportError),
            ):
                smf.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
        assert remaining(session, hk) == 100 * MB  # nothing reached charging
        with smf_client(nchf.url, pki, pki.smf, nf_headers(settings)) as smf:
            answers = a_whole_session(smf, gpsi)
        assert [a.http_version for a in answers] == ["HTTP/2"] * 3
    assert remaining(session, hk) == 75 * MB


# --- `tongka serve`: both listeners, stopped together --------------------------------------


def _children(pid: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in found.split()]


@contextmanager
def serving_both(
    settings: Settings, home: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    port, nchf_port = free_port(), free_port()
    log = home / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(TONGKA), "serve", "--port", str(port)],
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(settings, TONGKA_NCHF_BIND=f"127.0.0.1:{nchf_port}"),
        )
    try:
        _until_connectable(port, process, log)
        _until_connectable(nchf_port, process, log)
        yield process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nchf_port}", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _gone(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_serve_runs_both_listeners_and_ctrl_c_stops_both(settings, session, tmp_path) -> None:
    sqlite_only(settings)
    _hk, gpsi = line_with_data(session)
    with serving_both(settings, tmp_path) as (serve, public, nchf_url, log):
        assert httpx.get(f"{public}/healthz", timeout=10).json() == {"status": "ok"}
        assert (
            httpx.post(f"{public}{BASE}", json=request(1, gpsi=gpsi), timeout=10).status_code == 404
        )
        with httpx.Client(
            base_url=nchf_url, http1=False, http2=True, timeout=10, headers=nf_headers(settings)
        ) as smf:
            a_whole_session(smf, gpsi)
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0, log_tail(log)
        assert _gone(public) and _gone(nchf_url)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "unhandled_error" not in text, log_tail(log, 80)


def test_if_the_nchf_listener_dies_serve_stops_the_public_app_and_fails(
    settings, session, tmp_path
) -> None:
    sqlite_only(settings)
    with serving_both(settings, tmp_path) as (serve, public, nchf_url, log):
        (nchf,) = _children(serve.pid)
        os.kill(nchf, signal.SIGKILL)
        assert serve.wait(timeout=30) == 1, log_tail(log)
        assert "the Nchf listener exited" in log.read_text()
        assert _gone(public) and _gone(nchf_url)  # granian's workers go with their main process


def test_if_the_public_app_cannot_start_the_nchf_listener_stops_too(
    settings, session, tmp_path
) -> None:
    sqlite_only(settings)
    nchf_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        log = tmp_path / "serve.log"
        with log.open("w") as out:
            serve = subprocess.run(
                [str(TONGKA), "serve", "--port", str(taken.getsockname()[1])],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment(settings, TONGKA_NCHF_BIND=f"127.0.0.1:{nchf_port}"),
                timeout=60,
                check=False,
            )
    assert serve.returncode != 0, log_tail(log)  # uvicorn says 3: it could not start
    assert _gone(f"http://127.0.0.1:{nchf_port}")


def test_serve_killed_outright_takes_its_nchf_listener_along(settings, session, tmp_path) -> None:
    sqlite_only(settings)
    with serving_both(settings, tmp_path) as (serve, _public, nchf_url, _log):
        serve.kill()  # SIGKILL: nothing of tongka serve runs again
        serve.wait()
        deadline = time.monotonic() + 20
        while not _gone(nchf_url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(nchf_url)
