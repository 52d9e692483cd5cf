"""Network functions' access tokens (charging/nf_auth.py): real JWTs signed with keys made here,
the real verifier and middleware on a small Starlette app, the dev NRF's token endpoint, JWKS
from a file and from a real https server, settings refusals, the dev key's file, and the logs."""

from __future__ import annotations

import datetime
import io
import json
import os
import secrets
import ssl
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.helpers import TONGKA
from tongka import config, logs
from tongka.charging import nf_auth
from tongka.charging.nf_auth import (
    CHF,
    SCOPE,
    NfAuth,
    NfAuthMiddleware,
    NfUnauthorized,
    issue_dev_token,
    token_endpoint,
)
from tongka.config import Settings

NRF = str(uuid.uuid4())
CHF_ID = str(uuid.uuid4())
SMF = str(uuid.uuid4())


class Key:
    """A signing key of the NRF's and its public JWK."""

    def __init__(self, private: Any, kid: str, alg: str) -> None:
        self.private, self.kid, self.alg = private, kid, alg
        algorithm = (
            jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        )
        self.jwk = {
            **json.loads(algorithm.to_jwk(private.public_key())),
            "kid": kid,
            "use": "sig",
            "alg": alg,
        }

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": NRF,
            "sub": SMF,
            "aud": CHF,
            "scope": SCOPE,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None},
            self.private,
            self.alg,
            headers={"kid": self.kid},
        )


@pytest.fixture(scope="module")
def es() -> Key:
    return Key(ec.generate_private_key(ec.SECP256R1()), "es-1", "ES256")


@pytest.fixture(scope="module")
def rs() -> Key:
    return Key(rsa.generate_private_key(65537, 2048), "rs-1", "RS256")


def jwks(*keys: Key) -> str:
    return json.dumps({"keys": [k.jwk for k in keys]})


def settings_for(env: str = "production", **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        **{
            "env": env,
            "secret_key": secrets.token_urlsafe(32),
            "public_base_url": "https://tongka.example",
            **values,
        },
        _env_file=None,
    )


@pytest.fixture
def jwks_file(tmp_path: Path, es: Key, rs: Key) -> Path:
    path = tmp_path / "nrf-jwks.json"
    path.write_text(jwks(es, rs))
    return path


@pytest.fixture
def auth(jwks_file: Path) -> NfAuth:
    return NfAuth(settings_for(nrf_jwks=str(jwks_file), nrf_issuer=NRF, chf_instance_id=CHF_ID))


def refused(auth: NfAuth, header: str | None) -> NfUnauthorized:
    with pytest.raises(NfUnauthorized) as e:
        auth.verify(header)
    return e.value


# The verifier.


def test_a_valid_token_is_accepted_with_its_claims(auth: NfAuth, es: Key, rs: Key) -> None:
    for key in (es, rs):
        claims = auth.verify(f"Bearer {key.token(nfType='SMF', scope=f'other {SCOPE}')}")
        assert claims.nf_instance_id == SMF and claims.nf_type == "SMF"
        assert claims.scopes == {"other", SCOPE} and claims.expires > time.time()


@pytest.mark.parametrize(
    "aud", [CHF, [CHF_ID], ["7d5c0a8e-0000-4000-8000-000000000001", CHF_ID], [CHF]]
)
def test_the_audience_is_this_chf_or_its_nf_type(auth: NfAuth, es: Key, aud: Any) -> None:
    assert auth.verify(f"Bearer {es.token(aud=aud)}").nf_instance_id == SMF


@pytest.mark.parametrize("aud", ["SMF", [str(uuid.uuid4())], "chf", [], None])
def test_a_token_for_another_audience_is_refused(auth: NfAuth, es: Key, aud: Any) -> None:
    assert refused(auth, f"Bearer {es.token(aud=aud)}").reason in ("audience", "claims")


def test_without_a_bearer_token(auth: NfAuth, es: Key) -> None:
    none = refused(auth, None)
    assert (none.error, none.reason) == ("", "missing")
    assert refused(auth, "").reason == "missing"
    for header in (
        f"Basic {es.token()}",
        f"Token {es.token()}",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        f"Bearer {es.token()} extra",
        f"{es.token()}",
    ):
        e = refused(auth, header)
        assert (e.error, e.reason) == ("invalid_token", "malformed"), header
    assert auth.verify(f"bearer  {es.token()}").nf_instance_id == SMF  # the scheme has no case


def test_a_signature_by_another_key_is_refused(auth: NfAuth, es: Key) -> None:
    impostor = Key(
        ec.generate_private_key(ec.SECP256R1()), es.kid, "ES256"
    )  # claims to be the NRF's key
    assert refused(auth, f"Bearer {impostor.token()}").reason == "signature"
    stranger = Key(ec.generate_private_key(ec.SECP256R1()), "unknown", "ES256")
    assert refused(auth, f"Bearer {stranger.token()}").reason == "unknown_key"
    # A token whose payload was changed after signing.
    head, _body, sig = es.token().split(".")
    other = es.token(sub=str(uuid.uuid4())).split(".")[1]
    assert refused(auth, f"Bearer {head}.{other}.{sig}").reason == "signature"


def test_only_asymmetric_algorithms(auth: NfAuth, es: Key, rs: Key) -> None:
    now = int(time.time())
    claims = {"iss": NRF, "sub": SMF, "aud": CHF, "scope": SCOPE, "exp": now + 600}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": es.kid})
    assert refused(auth, f"Bearer {unsigned}").reason == "algorithm"
    # HS256 "signed" with the NRF's public key as the secret: the old confusion attack.
    public_pem = rs.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": rs.kid}).encode()
    )
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
    mac = jwt.utils.base64url_encode(
        hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    )
    assert (
        refused(auth, f"Bearer {(header + b'.' + payload + b'.' + mac).decode()}").reason
        == "algorithm"
    )
    # An EC key's kid with an RSA signature: the key decides the algorithm, not the token.
    crossed = jwt.encode(claims, rs.private, "RS256", headers={"kid": es.kid})
    assert refused(auth, f"Bearer {crossed}").reason == "unknown_key"


def test_lifetime(auth: NfAuth, es: Key) -> None:
    now = int(time.time())
    assert refused(auth, f"Bearer {es.token(exp=now - 60)}").reason == "expired"
    assert auth.verify(f"Bearer {es.token(exp=now - 3)}")  # within the leeway for clocks
    assert refused(auth, f"Bearer {es.token(nbf=now + 120)}").reason == "not_yet_valid"
    assert auth.verify(f"Bearer {es.token(nbf=now + 3)}")
    assert refused(auth, f"Bearer {es.token(exp=None)}").reason == "claims"


def test_issuer_subject_and_scope(auth: NfAuth, es: Key) -> None:
    assert refused(auth, f"Bearer {es.token(iss=str(uuid.uuid4()))}").reason == "issuer"
    assert refused(auth, f"Bearer {es.token(iss=None)}").reason == "claims"
    assert refused(auth, f"Bearer {es.token(sub=None)}").reason == "claims"
    for scope in ("nnrf-disc", "nchf-convergedcharging-x", "", None, ["nchf-convergedcharging"]):
        e = refused(auth, f"Bearer {es.token(scope=scope)}")
        assert e.reason in ("scope", "claims"), scope


def test_a_verified_token_is_kept_until_it_expires(
    auth: NfAuth, es: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = f"Bearer {es.token(exp=int(time.time()) + 100)}"
    assert auth.cached(header) is None
    claims = auth.verify(header)
    assert auth.cached(header) is claims and auth.verify(header) is claims
    later = time.time() + 100 + nf_auth.LEEWAY_SECONDS + 1
    monkeypatch.setattr(nf_auth.time, "time", lambda: later)
    assert auth.cached(header) is None  # then verify() checks it again, and PyJWT finds it expired


def test_the_cache_is_bounded(auth: NfAuth, es: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nf_auth, "CACHE_SIZE", 3)
    headers = [f"Bearer {es.token(sub=str(uuid.uuid4()))}" for _ in range(5)]
    for h in headers:
        auth.verify(h)
    assert sum(auth.cached(h) is not None for h in headers) <= 3 and auth.cached(headers[-1])
    other = f"Bearer {es.token(scope='other')}"
    assert refused(auth, other).reason == "scope"
    assert auth.cached(other) is None  # refusals are not kept
    assert sum(auth.cached(h) is not None for h in headers) <= 3


# The answer and the middleware.


def tiny_app(auth: NfAuth) -> tuple[Starlette, list[str]]:
    reached: list[str] = []

    async def charge(request: Request) -> JSONResponse:
        reached.append(request.state.nf.nf_instance_id)
        return JSONResponse({"caller": request.state.nf.nf_instance_id})

    app = Starlette(
        routes=[
            Route("/nchf-convergedcharging/v3/chargingdata", charge, methods=["POST"]),
            Route(nf_auth.TOKEN_PATH, token_endpoint, methods=["POST"]),
        ]
    )
    app.state.nf_auth = auth
    app.add_middleware(NfAuthMiddleware, auth=auth)
    return app, reached


CHARGING = "/nchf-convergedcharging/v3/chargingdata"


def test_the_middleware_refuses_before_the_app(auth: NfAuth, es: Key) -> None:
    app, reached = tiny_app(auth)
    client = TestClient(app)
    for headers in (
        {},
        {"Authorization": "Bearer x.y.z"},
        {"Authorization": f"Bearer {es.token(aud='SMF')}"},
        {"Authorization": f"Bearer {es.token(scope='nnrf-disc')}"},
    ):
        r = client.post(
            CHARGING, json={"subscriberIdentifier": "imsi-454000000000001"}, headers=headers
        )
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == 401 and body["title"] == "Unauthorized" and body["detail"]
        assert set(body) <= {"title", "status", "detail", "cause"}
        challenge = r.headers["www-authenticate"]
        assert (
            challenge == "Bearer"
            if not headers
            else challenge.startswith('Bearer error="invalid_token", error_description="')
        )
        assert "imsi" not in r.text
    assert reached == []
    ok = client.post(CHARGING, json={}, headers={"Authorization": f"Bearer {es.token()}"})
    assert (ok.status_code, ok.json()) == (200, {"caller": SMF}) and reached == [SMF]
    # No dev NRF in production: its path needs a token like any other.
    assert (
        client.post(nf_auth.TOKEN_PATH, data={"grant_type": "client_credentials"}).status_code
        == 401
    )
    assert (
        client.post(
            nf_auth.TOKEN_PATH, headers={"Authorization": f"Bearer {es.token()}"}
        ).status_code
        == 404
    )


# The dev NRF.


@pytest.fixture
def dev_settings(tmp_path: Path) -> Settings:
    key = tmp_path / "var" / "nrf-dev-key.pem"
    nf_auth.write_dev_key(key)
    return settings_for(
        "dev",
        nrf_dev_key_file=str(key),
        chf_instance_id=CHF_ID,
        public_base_url="http://127.0.0.1:8000",
    )


def ask(client: TestClient, **fields: str) -> Any:
    form = {
        "grant_type": "client_credentials",
        "nfInstanceId": SMF,
        "nfType": "SMF",
        "targetNfType": "CHF",
        "scope": SCOPE,
        **fields,
    }
    return client.post(nf_auth.TOKEN_PATH, data={k: v for k, v in form.items() if v != "-"})


def test_the_dev_nrf_issues_a_token_that_verifies(dev_settings: Settings) -> None:
    auth = NfAuth(dev_settings)
    app, reached = tiny_app(auth)
    client = TestClient(app)
    r = ask(client)
    assert r.status_code == 200
    assert (r.headers["cache-control"], r.headers["pragma"]) == ("no-store", "no-cache")
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["scope"], body["expires_in"]) == ("Bearer", SCOPE, 3600)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["aud"], claims["scope"]) == (
        nf_auth.DEV_NRF_INSTANCE_ID,
        SMF,
        CHF,
        SCOPE,
    )
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "ES256"
    ok = client.post(CHARGING, json={}, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200 and reached == [SMF]
    # For this CHF instance by its id: aud is then a list of instance ids (TS 29.510).
    by_id = ask(client, targetNfInstanceId=CHF_ID).json()["access_token"]
    assert jwt.decode(by_id, options={"verify_signature": False})["aud"] == [CHF_ID]
    assert (
        NfAuth(dev_settings).verify(f"Bearer {by_id}").nf_instance_id == SMF
    )  # another process, same key
    # issue_dev_token makes the same kind of token.
    assert (
        auth.verify(f"Bearer {issue_dev_token(dev_settings, SMF, nf_type='AMF')}").nf_type == "AMF"
    )
    refusal = refused(auth, f"Bearer {issue_dev_token(dev_settings, SMF, audience='SMF')}")
    assert refusal.reason == "audience"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"grant_type": "-"}, "invalid_request"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"nfInstanceId": "-"}, "invalid_request"),
        ({"nfInstanceId": "smf-1"}, "invalid_request"),
        ({"nfType": "-"}, "invalid_request"),
        ({"nfType": "smf"}, "invalid_request"),
        ({"nfType": "UDM"}, "unauthorized_client"),
        ({"targetNfType": "-"}, "invalid_request"),
        ({"targetNfType": "PCF"}, "invalid_request"),
        ({"scope": "-"}, "invalid_request"),
        ({"scope": "nnrf-disc"}, "invalid_scope"),
        ({"scope": f"{SCOPE} nnrf-disc"}, "invalid_scope"),
        ({"targetNfInstanceId": str(uuid.uuid4())}, "invalid_request"),
        ({"targetNfInstanceId": "chf"}, "invalid_request"),
    ],
)
def test_the_dev_nrf_refuses(dev_settings: Settings, fields: dict[str, str], error: str) -> None:
    client = TestClient(tiny_app(NfAuth(dev_settings))[0])
    r = ask(client, **fields)
    assert r.status_code == 400 and r.headers["cache-control"] == "no-store"
    assert r.json()["error"] == error and r.json()["error_description"]
    assert "access_token" not in r.text


def test_the_dev_nrf_takes_only_a_form(dev_settings: Settings) -> None:
    client = TestClient(tiny_app(NfAuth(dev_settings))[0])
    r = client.post(
        nf_auth.TOKEN_PATH, json={"grant_type": "client_credentials", "nfInstanceId": SMF}
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    twice = client.post(
        nf_auth.TOKEN_PATH,
        content=f"grant_type=client_credentials&nfInstanceId={SMF}&nfInstanceId={SMF}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")


def test_with_an_nrf_configured_tongka_does_not_play_it_even_in_dev(
    dev_settings: Settings, jwks_file: Path, es: Key
) -> None:
    auth = NfAuth(dev_settings.model_copy(update={"nrf_jwks": str(jwks_file), "nrf_issuer": NRF}))
    assert not auth.plays_nrf
    client = TestClient(tiny_app(auth)[0])
    assert ask(client).status_code == 401
    dev_token = issue_dev_token(dev_settings, SMF)
    assert refused(auth, f"Bearer {dev_token}").reason in ("unknown_key", "issuer")


# JWKS over https, from a real server with a CA made here.


def _cert_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test NRF CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class NrfServer:
    """A real https server answering the NRF's JWKS, counting fetches."""

    def __init__(self, tmp_path: Path, body: str) -> None:
        self.body, self.fetches = body, 0
        self.ca, cert, key = _cert_pair(tmp_path)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                data = outer.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/oauth2/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nrf_server(tmp_path: Path, es: Key) -> Iterator[NrfServer]:
    server = NrfServer(tmp_path, jwks(es))
    yield server
    server.close()


def test_jwks_from_https_refetched_on_an_unknown_kid(
    nrf_server: NrfServer, es: Key, rs: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = NfAuth(
        settings_for(nrf_jwks=nrf_server.url, nrf_issuer=NRF, nrf_ca_file=str(nrf_server.ca))
    )
    assert nrf_server.fetches == 1
    assert auth.verify(f"Bearer {es.token()}").nf_instance_id == SMF
    # The NRF adds a key: a token with its kid fetches the keys again, at most once in JWKS_REFRESH_SECONDS.
    nrf_server.body = jwks(es, rs)
    assert refused(auth, f"Bearer {rs.token()}").reason == "unknown_key"
    assert nrf_server.fetches == 1  # just fetched at start: no storm of fetches for unknown kids
    monkeypatch.setattr(nf_auth, "JWKS_REFRESH_SECONDS", 0)
    assert auth.needs_fetch(f"Bearer {rs.token()}")
    assert auth.verify(f"Bearer {rs.token()}").nf_instance_id == SMF
    assert nrf_server.fetches == 2
    assert (
        auth.verify(f"Bearer {es.token(sub=str(uuid.uuid4()))}") and nrf_server.fetches == 2
    )  # known kid: no fetch


def test_the_middleware_fetches_the_nrfs_keys_off_the_event_loop(
    nrf_server: NrfServer, es: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nf_auth, "JWKS_REFRESH_SECONDS", 0)
    auth = NfAuth(
        settings_for(nrf_jwks=nrf_server.url, nrf_issuer=NRF, nrf_ca_file=str(nrf_server.ca))
    )
    auth.keys.keys = {}  # as if the NRF was down at start
    app, reached = tiny_app(auth)
    r = TestClient(app).post(CHARGING, json={}, headers={"Authorization": f"Bearer {es.token()}"})
    assert r.status_code == 200 and reached == [SMF] and nrf_server.fetches == 2


def test_an_nrf_with_a_certificate_from_another_ca_is_not_trusted(
    nrf_server: NrfServer, es: Key
) -> None:
    auth = NfAuth(settings_for(nrf_jwks=nrf_server.url, nrf_issuer=NRF))  # the system's CAs only
    assert nrf_server.fetches == 0 or auth.keys.keys == {}
    assert refused(auth, f"Bearer {es.token()}").reason == "unknown_key"


def test_jwks_keeps_only_asymmetric_signing_keys(es: Key) -> None:
    oct_key = {"kty": "oct", "kid": "hs", "k": jwt.utils.base64url_encode(b"0" * 32).decode()}
    enc = {**es.jwk, "kid": "enc", "use": "enc"}
    keys = nf_auth.parse_jwks(json.dumps({"keys": [oct_key, enc, es.jwk]}))
    assert list(keys) == [es.kid]
    with pytest.raises(ValueError, match="no usable signing key"):
        nf_auth.parse_jwks(json.dumps({"keys": [oct_key]}))


# Settings.


def test_production_needs_the_nrfs_keys_and_issuer() -> None:
    found = config.problems(settings_for())
    assert any(p.startswith("TONGKA_NRF_JWKS is not set") for p in found)
    assert any(p.startswith("TONGKA_NRF_ISSUER is not set") for p in found)
    assert config.problems(settings_for(nrf_jwks="https://nrf.example/jwks", nrf_issuer=NRF)) == []
    plain = config.problems(settings_for(nrf_jwks="http://nrf.example/jwks", nrf_issuer=NRF))
    assert plain and "never plain http" in plain[0]
    with pytest.raises(config.UnsafeSettings, match="TONGKA_NRF_JWKS is required"):
        NfAuth(settings_for())


def test_a_wrong_jwks_file_stops_the_start(tmp_path: Path) -> None:
    for content in (None, "not json", '{"keys": []}'):
        path = tmp_path / "jwks.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        with pytest.raises(
            config.UnsafeSettings, match=r"TONGKA_NRF_JWKS .* cannot be read as a JWKS"
        ):
            NfAuth(settings_for(nrf_jwks=str(path), nrf_issuer=NRF))


def test_a_missing_dev_key_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(config.UnsafeSettings) as e:
        NfAuth(settings_for("dev", nrf_dev_key_file=str(tmp_path / "nope.pem")))
    assert "tongka keys nrf-dev --out" in str(e.value) and "does not exist" in str(e.value)
    (tmp_path / "rsa.pem").write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(config.UnsafeSettings, match="not a P-256"):
        NfAuth(settings_for("dev", nrf_dev_key_file=str(tmp_path / "rsa.pem")))


def test_the_dev_key_command_writes_a_private_file_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    out = tmp_path / "var" / "nrf-dev-key.pem"
    made = subprocess.run(
        [str(TONGKA), "keys", "nrf-dev", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "PRIVATE" not in made.stdout + made.stderr and "kid" in made.stdout
    before = out.read_bytes()
    again = subprocess.run(
        [str(TONGKA), "keys", "nrf-dev", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert out.read_bytes() == before


# Logs.


def test_tokens_and_keys_never_reach_the_logs(dev_settings: Settings, es: Key) -> None:
    written = io.StringIO()
    logs.configure(json=True, file=written)
    try:
        auth = NfAuth(dev_settings)
        app, _ = tiny_app(auth)
        client = TestClient(app)
        token = ask(client).json()["access_token"]
        forged = es.token()
        client.post(CHARGING, json={}, headers={"Authorization": f"Bearer {forged}"})
        client.post(CHARGING, json={}, headers={"Authorization": f"Bearer {token}"})
        structlog_logger = nf_auth.log
        structlog_logger.info(
            "nf_debug", access_token=token, header=f"Authorization: Bearer {token}"
        )
    finally:
        logs.configure(json=False)
    text = written.getvalue()
    assert (
        '"nf_refused"' in text and '"unknown_key"' in text
    )  # the refusal is logged, by its reason only
    key_pem = Path(dev_settings.nrf_dev_key_file).read_text()
    for secret in (
        token,
        forged,
        token.split(".")[2],
        forged.split(".")[2],
        key_pem.splitlines()[1],
    ):
        assert secret not in text
