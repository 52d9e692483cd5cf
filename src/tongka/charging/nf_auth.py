"""Only authenticated network functions call Nchf: OAuth2 access tokens as the NRF issues them.

TS 33.501 §13.4.1 and TS 29.510 (Nnrf_AccessToken): a network function (an SMF) asks its NRF
for a token (`POST /oauth2/token`, client credentials), then calls the CHF with
`Authorization: Bearer <JWT>`. The CHF checks the token's signature against the NRF's public
keys (`TONGKA_NRF_JWKS`, chosen by `kid`; asymmetric algorithms only), its issuer (the NRF's
instance id, `TONGKA_NRF_ISSUER`), its audience (this CHF's instance id, or the NF type `CHF`
as TS 29.510 allows), its scope (`nchf-convergedcharging`), and its lifetime (`exp`, `nbf`).

A verified token is kept, by its exact text, until it expires: an SMF uses one token for
thousands of requests, and a signature check (tens of microseconds) would be most of a
request's cost. A key the NRF later withdraws therefore still admits the tokens it signed
until they expire (the NRF's short lifetimes bound this).

In dev, with no NRF configured, tongka also plays the NRF's token endpoint, signing with a key
made at install (`tongka keys nrf-dev`), so the simulator, the tests and an SMF under test can
get a token. In production that endpoint does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tongka.config import Settings, UnsafeSettings

log = structlog.get_logger("tongka.nf_auth")

SCOPE = "nchf-convergedcharging"
TOKEN_PATH = "/oauth2/token"
HEALTH_PATH = "/healthz"
CHF = "CHF"  # the NF type: an audience TS 29.510 allows beside the instance id
# Only signatures made with a private key: HS* would let anyone holding the verification key
# sign, and "none" is no signature.
ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
LEEWAY_SECONDS = 10  # clocks of the NRF, the SMF and the CHF differ a little (NTP keeps them close)
CACHE_SIZE = 10_000  # verified tokens kept: a core has some hundreds of NF instances, each one token at a time
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_REFRESH_SECONDS = (
    30.0  # an unknown kid fetches the keys again at most this often (no fetch storm)
)
JWKS_MAX_BYTES = 256 * 1024
# The dev NRF's instance id: the issuer of the tokens it makes, and what the verifier expects in dev.
DEV_NRF_INSTANCE_ID = "6b7e0c1a-2d4f-4e8a-9c3b-7f1d5a2e4b60"
DEV_TOKEN_LIFETIME_SECONDS = 3600
# NF types that consume Nchf_ConvergedCharging (TS 32.290: SMF for data, AMF, SMSF, NEF, the IMS AS, ...).
CHARGING_CONSUMERS = frozenset(
    {"SMF", "AMF", "SMSF", "NEF", "PCF", "AF", "MB_SMF", "SMF_PGW_C", "TSCTSF", "MNPF"}
)
_NF_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_BEARER = re.compile(
    r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*) *$"
)  # an empty signature: alg none, refused below


class NfUnauthorized(Exception):
    """A request without a valid access token. `error` is RFC 6750's code (empty: no token at all),
    `description` safe text for the caller, `reason` a short word for logs and tests."""

    def __init__(self, error: str, description: str, reason: str = "") -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.reason = reason or error


@dataclass(frozen=True, slots=True)
class NfClaims:
    nf_instance_id: str  # sub: the calling NF's instance id
    nf_type: str | None
    scopes: frozenset[str]
    expires: int  # exp, seconds since the epoch


def _refuse(reason: str, description: str) -> NfUnauthorized:
    return NfUnauthorized("invalid_token", description, reason)


class _Keys:
    """The NRF's public keys by kid, from a JWKS file or an https URL, fetched again on an unknown
    kid (at most every JWKS_REFRESH_SECONDS)."""

    def __init__(self, source: str, ca_file: str | None = None) -> None:
        self.source = source
        self.ca_file = ca_file
        self.keys: dict[str | None, jwt.PyJWK] = {}
        self.fetched_at = 0.0
        self.lock = threading.Lock()
        self.remote = source.startswith("https://")

    @classmethod
    def of(cls, keys: dict[str | None, jwt.PyJWK]) -> _Keys:
        fixed = cls("")
        fixed.keys = keys
        fixed.fetched_at = float("inf")  # never fetched again
        return fixed

    def load(self) -> None:
        self.fetched_at = time.monotonic()
        self.keys = parse_jwks(self._read())

    def _read(self) -> bytes:
        if not self.remote:
            return Path(self.source).read_bytes()
        verify: Any = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
        with httpx.Client(
            timeout=JWKS_TIMEOUT_SECONDS, verify=verify, follow_redirects=False
        ) as client:
            with client.stream("GET", self.source, headers={"Accept": "application/json"}) as r:
                if r.status_code != 200:
                    raise ValueError(f"the NRF's JWKS answered {r.status_code}")
                body = b""
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise ValueError("the NRF's JWKS is too large")
                return body

    def may_fetch(self, kid: str | None) -> bool:
        return kid not in self.keys and time.monotonic() - self.fetched_at >= JWKS_REFRESH_SECONDS

    def get(self, kid: str | None) -> jwt.PyJWK | None:
        if kid not in self.keys and self.may_fetch(kid):
            with self.lock:  # one fetch at a time; the others find its keys
                if self.may_fetch(kid):
                    try:
                        self.load()
                    except (OSError, ValueError, httpx.HTTPError) as e:
                        log.warning(
                            "nrf_jwks_unavailable", source=self.source, error=type(e).__name__
                        )
        key = self.keys.get(kid)
        if key is None and kid is None and len(self.keys) == 1:
            key = next(iter(self.keys.values()))  # no kid, one key: that key
        return key


def parse_jwks(body: bytes | str) -> dict[str | None, jwt.PyJWK]:
    """The signing keys of a JWKS by kid: asymmetric only (a symmetric "oct" key is skipped)."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS: no list of keys")
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in data["keys"]:
        if (
            not isinstance(entry, dict)
            or entry.get("kty") not in ("EC", "RSA", "OKP")
            or entry.get("use", "sig") != "sig"
        ):
            continue
        try:
            key = jwt.PyJWK(entry)
        except (
            jwt.PyJWTError,
            KeyError,
            ValueError,
            TypeError,
        ):  # a key this library cannot use: skipped
            continue
        if key.algorithm_name in ALGORITHMS:
            keys[entry.get("kid")] = key
    if not keys:
        raise ValueError("the JWKS has no usable signing key")
    return keys


class NfAuth:
    """Verifies network functions' access tokens; in dev without an NRF, also holds the dev NRF's key."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.nrf_issuer or (DEV_NRF_INSTANCE_ID if settings.dev else "")
        self.audiences = [a for a in (settings.chf_instance_id, CHF) if a]
        self.dev_key: ec.EllipticCurvePrivateKey | None = None
        self.dev_kid = ""
        if settings.nrf_jwks:
            self.keys = _Keys(settings.nrf_jwks, settings.nrf_ca_file)
            try:
                self.keys.load()
            except (OSError, ValueError, httpx.HTTPError) as e:
                if not self.keys.remote:  # a wrong file is a setting to fix now
                    raise UnsafeSettings(
                        [f"TONGKA_NRF_JWKS {settings.nrf_jwks} cannot be read as a JWKS: {e}"]
                    ) from None
                # The NRF may be down for a moment at start: its keys are fetched at the first token.
                log.warning(
                    "nrf_jwks_unavailable", source=settings.nrf_jwks, error=type(e).__name__
                )
                self.keys.fetched_at = 0.0
        elif settings.dev:
            self.dev_key, self.dev_kid = load_dev_key(settings.nrf_dev_key_file)
            self.keys = _Keys.of({self.dev_kid: jwt.PyJWK(_public_jwk(self.dev_key, self.dev_kid))})
        else:
            raise UnsafeSettings(
                ["TONGKA_NRF_JWKS is required in production (the NRF's public keys)."]
            )
        self.settings = settings
        self._cache: dict[str, NfClaims] = {}
        self._cache_lock = threading.Lock()

    @property
    def plays_nrf(self) -> bool:
        """Whether tongka answers the token endpoint: in dev, and only while no NRF is configured."""
        return self.dev_key is not None

    def cached(self, authorization: str | None) -> NfClaims | None:
        """The claims of a token verified before and not yet expired (the hot path: a dict look-up)."""
        if not authorization:
            return None
        claims = self._cache.get(authorization)
        if claims is not None and time.time() < claims.expires + LEEWAY_SECONDS:
            return claims
        return None

    def needs_fetch(self, authorization: str | None) -> bool:
        """Whether verifying this header may fetch the NRF's keys (then do it off the event loop)."""
        if not self.keys.remote or not authorization:
            return False
        match = _BEARER.match(authorization)
        if not match:
            return False
        try:
            kid = jwt.get_unverified_header(match.group(1)).get("kid")
        except jwt.PyJWTError:
            return False
        return self.keys.may_fetch(kid)

    def verify(self, authorization: str | None) -> NfClaims:
        """The claims of a valid access token in an `Authorization` header; NfUnauthorized otherwise."""
        if claims := self.cached(authorization):
            return claims
        if not authorization:
            raise NfUnauthorized("", "An access token is required.", "missing")
        match = _BEARER.match(authorization)
        if not match:
            raise _refuse("malformed", "The Authorization header is not a Bearer access token.")
        token = match.group(1)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("malformed", "The access token is not a JWT.") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refuse("algorithm", "The access token's signing algorithm is not accepted.")
        kid = header.get("kid")
        key = self.keys.get(kid if isinstance(kid, str) else None)
        if key is None or key.algorithm_name != alg:
            raise _refuse(
                "unknown_key", "The access token is signed with a key this CHF does not know."
            )
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "scope", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise _refuse("expired", "The access token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise _refuse("not_yet_valid", "The access token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise _refuse("audience", "The access token is not for this CHF.") from None
        except jwt.InvalidIssuerError:
            raise _refuse(
                "issuer", "The access token is not from the NRF this CHF trusts."
            ) from None
        except jwt.InvalidSignatureError:
            raise _refuse("signature", "The access token's signature is not valid.") from None
        except jwt.MissingRequiredClaimError as e:
            raise _refuse("claims", f"The access token has no {e.claim} claim.") from None
        except jwt.PyJWTError:
            raise _refuse("malformed", "The access token is not valid.") from None
        scope = payload["scope"]
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        if SCOPE not in scopes:
            raise _refuse("scope", f"The access token's scope does not include {SCOPE}.")
        sub, exp, nf_type = payload["sub"], payload["exp"], payload.get("nfType")
        if not isinstance(sub, str) or not sub or not isinstance(exp, int):
            raise _refuse("claims", "The access token's claims are malformed.")
        claims = NfClaims(sub, nf_type if isinstance(nf_type, str) else None, scopes, exp)
        self._remember(authorization, claims)
        return claims

    def _remember(self, authorization: str, claims: NfClaims) -> None:
        with self._cache_lock:
            if len(self._cache) >= CACHE_SIZE:
                now = time.time()
                self._cache = {
                    t: c for t, c in self._cache.items() if now < c.expires + LEEWAY_SECONDS
                }
                while len(self._cache) >= CACHE_SIZE:  # full of live tokens: drop the oldest kept
                    del self._cache[next(iter(self._cache))]
            self._cache[authorization] = claims


PROBLEM = "application/problem+json"


def unauthorized(exc: NfUnauthorized) -> Response:
    """401 with a TS 29.571 ProblemDetails and RFC 6750's challenge; it says what is wrong with the
    token and nothing else (no line, no session, no key)."""
    challenge = "Bearer"
    if exc.error:
        description = exc.description.replace("\\", "").replace('"', "'")
        challenge = f'Bearer error="{exc.error}", error_description="{description}"'
    body = {"title": "Unauthorized", "status": 401, "detail": exc.description}
    return JSONResponse(body, 401, headers={"WWW-Authenticate": challenge}, media_type=PROBLEM)


class NfAuthMiddleware:
    """Every HTTP request needs a valid access token, except the dev NRF's token endpoint and `/healthz`. Pure ASGI:
    a token seen before costs a dict look-up. The caller's claims go to `request.state.nf`."""

    def __init__(self, app: ASGIApp, *, auth: NfAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == HEALTH_PATH or (self.auth.plays_nrf and scope["path"] == TOKEN_PATH):
            await self.app(
                scope, receive, send
            )  # a liveness probe reveals nothing; the dev NRF is open
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        claims = self.auth.cached(authorization)
        if claims is None:
            try:
                if self.auth.needs_fetch(
                    authorization
                ):  # the NRF's keys over the network: off the loop
                    claims = await anyio.to_thread.run_sync(self.auth.verify, authorization)
                else:
                    claims = self.auth.verify(authorization)
            except NfUnauthorized as e:
                log.info("nf_refused", reason=e.reason, method=scope["method"])
                await unauthorized(e)(scope, receive, send)
                return
        scope.setdefault("state", {})["nf"] = claims
        await self.app(scope, receive, send)


# The dev NRF.


def _kid(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of the public key: the same key always has the same kid."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )


def _public_jwk(private: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


def write_dev_key(path: Path) -> str:
    """Make the dev NRF's ES256 key at `path` (mode 0600, never over an existing file); returns its kid."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )  # created 0600, never readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return _kid(key.public_key())


def load_dev_key(path: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The dev NRF's key and kid; a missing or wrong file is a setting to fix, said plainly."""
    make = f"make it with `tongka keys nrf-dev --out {path}` (`make run` does)"
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise UnsafeSettings(
            [
                f"TONGKA_NRF_DEV_KEY_FILE {path} does not exist: in dev without TONGKA_NRF_JWKS tongka plays the NRF "
                f"and signs network functions' access tokens with it; {make}."
            ]
        ) from None
    except (OSError, ValueError) as e:
        raise UnsafeSettings(
            [
                f"TONGKA_NRF_DEV_KEY_FILE {path} is not a PEM private key ({type(e).__name__}); {make}."
            ]
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UnsafeSettings(
            [f"TONGKA_NRF_DEV_KEY_FILE {path} is not a P-256 (ES256) key; {make}."]
        )
    return key, _kid(key.public_key())


def issue_dev_token(
    settings: Settings,
    nf_instance_id: str,
    *,
    nf_type: str = "SMF",
    scope: str = SCOPE,
    audience: str | list[str] = CHF,
    lifetime: int = DEV_TOKEN_LIFETIME_SECONDS,
    key: tuple[ec.EllipticCurvePrivateKey, str] | None = None,
) -> str:
    """An access token as the dev NRF makes it (AccessTokenClaims, TS 29.510), for tests and the simulator."""
    private, kid = key or load_dev_key(settings.nrf_dev_key_file)
    now = int(time.time())
    claims = {
        "iss": settings.nrf_issuer or DEV_NRF_INSTANCE_ID,
        "sub": nf_instance_id,
        "aud": audience,
        "scope": scope,
        "iat": now,
        "exp": now + lifetime,
        "nfType": nf_type,  # nfType: tongka's dev NRF adds it, for logs
    }
    return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid})


def _token_error(error: str, description: str) -> JSONResponse:
    """AccessTokenErr (TS 29.510), 400."""
    return JSONResponse(
        {"error": error, "error_description": description},
        400,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


async def token_endpoint(request: Request) -> Response:
    """`POST /oauth2/token`, the dev NRF's Nnrf_AccessToken: client credentials in, an AccessTokenRsp
    out. Served only in dev without an NRF configured (`request.app.state.nf_auth`); 404 otherwise.
    It authenticates no one (a real NRF checks the NF's TLS certificate or its registration)."""
    auth: NfAuth | None = getattr(request.app.state, "nf_auth", None)
    if auth is None or not auth.plays_nrf or not auth.settings.dev:
        return JSONResponse({"title": "Not Found", "status": 404}, 404, media_type=PROBLEM)
    if (
        request.headers.get("content-type", "").split(";")[0].strip()
        != "application/x-www-form-urlencoded"
    ):
        return _token_error(
            "invalid_request", "The request must be application/x-www-form-urlencoded."
        )
    try:
        form = await request.form(max_files=0, max_fields=32)
    except Exception:
        return _token_error("invalid_request", "The request body is not a valid form.")
    value: dict[str, str] = {}
    for k in form.keys():
        given = form.getlist(k)
        if len(given) != 1 or not isinstance(given[0], str):
            return _token_error("invalid_request", "A parameter is repeated or not text.")
        value[k] = given[0]
    grant = value.get("grant_type")
    if grant is None:
        return _token_error("invalid_request", "grant_type is required.")
    if grant != "client_credentials":
        return _token_error(
            "unsupported_grant_type", "Only grant_type=client_credentials is supported."
        )
    nf_id = value.get("nfInstanceId", "")
    if not _uuid(nf_id):
        return _token_error(
            "invalid_request", "nfInstanceId must be the NF's instance id (a UUID)."
        )
    nf_type = value.get("nfType")
    if nf_type is None or not _NF_TYPE.match(nf_type):
        return _token_error("invalid_request", "nfType is required (an NF type such as SMF).")
    if nf_type not in CHARGING_CONSUMERS:
        return _token_error(
            "unauthorized_client",
            f"An NF of type {nf_type} does not consume Nchf_ConvergedCharging.",
        )
    target = value.get("targetNfType")
    if target != CHF:
        return _token_error(
            "invalid_request", "targetNfType must be CHF: this NRF issues tokens for the CHF only."
        )
    scope = value.get("scope")
    if scope is None:
        return _token_error("invalid_request", "scope is required.")
    if scope != SCOPE:
        return _token_error("invalid_scope", f"The scope must be {SCOPE}.")
    audience: str | list[str] = CHF
    if (target_id := value.get("targetNfInstanceId")) is not None:
        if not _uuid(target_id):
            return _token_error(
                "invalid_request", "targetNfInstanceId must be an NF instance id (a UUID)."
            )
        if target_id != auth.settings.chf_instance_id:
            return _token_error("invalid_request", "targetNfInstanceId is not this CHF.")
        audience = [target_id]
    assert auth.dev_key is not None
    lifetime = DEV_TOKEN_LIFETIME_SECONDS
    token = issue_dev_token(
        auth.settings,
        nf_id,
        nf_type=nf_type,
        scope=SCOPE,
        audience=audience,
        lifetime=lifetime,
        key=(auth.dev_key, auth.dev_kid),
    )
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": SCOPE},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
