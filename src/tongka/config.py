"""Settings, read from `TONGKA_*` environment variables and the file `var/tongka.env`.

Secrets have no defaults: `make run` writes random ones to `var/tongka.env` on first
start, tests make their own, production sets them in the environment.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TONGKA_",
        env_file="var/tongka.env",
        extra="ignore",
        # A refused value is not repeated in the error: it may be a secret (a password in TONGKA_SMTP_URL).
        hide_input_in_errors=True,
    )

    # dev: demo conveniences (the /dev outbox, the payment sandbox, the API docs); production: none of
    # them. Production is the default, so a deployment that forgets TONGKA_ENV fails closed; `make run`
    # writes TONGKA_ENV=dev to var/tongka.env.
    env: Literal["dev", "production"] = "production"
    database_url: str = "sqlite:///var/tongka.db"
    public_base_url: str = "http://127.0.0.1:8000"

    # Keys the service signs and hashes with (one-time codes, identity numbers).
    secret_key: SecretStr
    # The shared secret of the sandbox payment provider's callbacks: required only while the sandbox is on.
    sandbox_payment_secret: SecretStr | None = None

    # Ed25519 private key (32 raw bytes, base64) that signs receipts; its public half is published.
    receipt_signing_key: SecretStr | None = None

    # How often the background runner (`background.py`) sends queued charging notifications
    # (REAUTHORIZATION) to the network; 0: never (then `tongka charging notify` does it).
    charging_notify_every_seconds: float = 1.0
    # Where the network's charging requests are decided, in batches (`charging.worker`): a process of
    # its own beside each server process, or a thread of the server's (the tests' many short-lived apps).
    charging_worker: Literal["process", "thread"] = "process"
    # The background work (`background.py`: the scheduled jobs, the charging notifications): `embedded`
    # runs it in a thread of `tongka serve` (one per serve command, whatever --workers says); `off`
    # leaves it to `tongka worker` processes. None: embedded on SQLite (`make run` needs nothing
    # more), off on PostgreSQL (production runs workers).
    background: Literal["embedded", "off"] | None = None
    # A charging session whose network element has sent nothing for its validity time and this long
    # after is closed by the `charging-silent` job, its reservations released (`charging/stale.py`).
    charging_silence_grace_seconds: int = Field(default=300, ge=0)

    # The network's listener (`charging/nchf_app.py`, `tongka serve`, `tongka nchf serve`): HTTP/2, apart
    # from the public app. host:port ([v6]:port); plaintext serves h2c (prior knowledge) and HTTP/1.1.
    # A certificate and key (PEM; the key PKCS#8) make it TLS with ALPN h2; a client CA (PEM) then
    # requires every client to present a certificate it issued (mutual TLS, TS 33.501).
    nchf_bind: str = "127.0.0.1:8001"
    nchf_tls_cert: Path | None = None
    nchf_tls_key: Path | None = None
    nchf_client_ca: Path | None = None

    @field_validator("nchf_bind")
    @classmethod
    def _nchf_bind(cls, value: str) -> str:
        split_bind(value)  # a wrong address stops the start, not the listener's
        return value

    payment_sandbox: bool | None = None  # None: on in dev, off in production
    api_docs: bool | None = None  # /docs and /openapi.json; None: on in dev, off in production
    # The providers' own side in sandbox mode (their API, pages and callbacks) keeps its
    # state in a database of its own, as a real provider would: never tongka's tables.
    sandbox_store_url: str = "sqlite:///var/sandbox-providers.db"
    # Where provider API calls go; in sandbox mode, the simulators under /sandbox/<provider>.
    wechat_api_base: str | None = None  # live: https://api.mch.weixin.qq.com
    alipay_gateway: str | None = None  # live: https://openapi.alipay.com/gateway.do
    stripe_api_base: str | None = None  # live: https://api.stripe.com
    paypal_api_base: str | None = None  # live: https://api-m.paypal.com

    # WeChat Pay API v3: merchant id and app id, the APIv3 key (32 bytes) that encrypts
    # callback resources, the merchant's RSA key and certificate serial (signs requests),
    # and the platform's public key and serial (verifies WeChat's callbacks and answers).
    wechat_mch_id: str | None = None
    wechat_appid: str | None = None
    wechat_apiv3_key: SecretStr | None = None
    wechat_merchant_private_key: SecretStr | None = None
    wechat_merchant_serial: str | None = None
    wechat_platform_public_key: str | None = None
    wechat_platform_serial: str | None = None
    # The 委托代扣 (papay) template WeChat approved for auto-renew's password-free contracts;
    # without it no contract can be signed (the sandbox accepts any, and uses 1 if unset).
    wechat_papay_plan_id: int | None = None
    # Alipay open platform: app id, the app's RSA private key (RSA2 signs requests) and
    # Alipay's public key (verifies notifications and answers).
    alipay_app_id: str | None = None
    alipay_app_private_key: SecretStr | None = None
    alipay_public_key: str | None = None
    # Stripe: secret key and webhook endpoint secret (whsec_...).
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # PayPal REST: client credentials and the webhook id (used to verify webhooks).
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_webhook_id: str | None = None

    # The simulators' own keys (sandbox only): what the provider holds on its side.
    sandbox_wechat_platform_private_key: SecretStr | None = None
    sandbox_wechat_merchant_public_key: str | None = None
    sandbox_alipay_private_key: SecretStr | None = None
    sandbox_alipay_app_public_key: str | None = None
    access_token_ttl_seconds: int = 86_400
    # Staff tokens open more than a subscriber's do: they last a working day.
    # Staff sessions (web and API): end after this long, or sooner after `idle` seconds unused.
    staff_session_ttl_seconds: int = Field(default=12 * 3600, gt=0)
    staff_session_idle_seconds: int = Field(default=15 * 60, gt=0)
    # Password hashes (Argon2id, 64 MiB and ~0.25 s each) at once per server process, and how long
    # a log-in or registration waits for one before a 503 with Retry-After.
    password_hashing_slots: int = Field(default=2, ge=1)
    password_hashing_wait_seconds: float = Field(default=1.0, ge=0)
    order_payment_ttl_seconds: int = 30 * 60
    # A password reset link sent by email works once, for this long.
    password_reset_ttl_seconds: int = Field(default=30 * 60, gt=0)
    # How long the signed renewal link the network sends a phone to (data run out) stays valid.
    renew_link_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # What one wallet top-up may be, in minor units of the wallet's currency (HK$ / ¥ 10 to 5,000).
    wallet_topup_min: int = Field(default=10_00, ge=1)
    wallet_topup_max: int = Field(default=5_000_00, ge=1)
    bind_code_ttl_seconds: int = 10 * 60
    bind_code_max_attempts: int = 5
    bind_code_resend_seconds: int = 60
    # SMS bind codes a Hong Kong day per number, per account and per client address (SMS pumping: a
    # script asking for codes to premium numbers costs the operator money); beyond, a 429 with Retry-After.
    bind_codes_per_number_per_day: int = Field(default=5, ge=1)
    bind_codes_per_account_per_day: int = Field(default=10, ge=1)
    bind_codes_per_address_per_day: int = Field(default=20, ge=1)

    # Delivering the outbox (notify/worker.py). Email over SMTP: smtp://user:pass@host:port (STARTTLS when
    # the server offers it; required before a password is sent to another machine), smtps:// for implicit
    # TLS; the URL holds a password, so it is a secret. Without it, email stays pending in the outbox.
    smtp_url: SecretStr | None = None
    mail_from: str | None = (
        None  # "tongka <no-reply@mail.example.com>"; Message-IDs take its domain
    )
    smtp_ca_file: Path | None = None  # the CA of the SMTP server's certificate, if not a public one
    smtp_timeout_seconds: float = Field(default=20.0, gt=0)
    # DKIM: the private key (PEM, RSA), its selector and domain (default: MAIL_FROM's).
    dkim_key_file: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    # The worker: how often it looks for due messages when nothing woke it, how many it claims at once
    # and for how long (a worker that dies gives them back then), and its retries (exponential backoff
    # with jitter from `message_retry_base_seconds`, at most `message_retry_cap_seconds`, `failed`
    # after `message_max_attempts` tries).
    message_poll_seconds: float = Field(default=1.0, gt=0)
    message_batch_size: int = Field(default=10, ge=1)
    message_lease_seconds: float = Field(default=120.0, gt=0)
    message_max_attempts: int = Field(default=8, ge=1)
    message_retry_base_seconds: float = Field(default=30.0, gt=0)
    message_retry_cap_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("smtp_url", "dkim_key_file", "smtp_ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # `TONGKA_SMTP_URL=` in an env file: email off

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from urllib.parse import urlsplit

            url = urlsplit(value.get_secret_value())
            # The message names no part of the URL: it may hold the password.
            if url.scheme not in ("smtp", "smtps") or not url.hostname:
                raise ValueError(
                    "TONGKA_SMTP_URL is smtp://[user:password@]host[:port] or smtps://…"
                )
        return value

    # Where the network's notifyUri may lead (`outbound.py`): network function host names
    # (`.nf.example.net` for all under it) and networks (10.20.0.0/16), comma-separated. dev adds loopback.
    nf_notify_allow: str = ""
    # Network functions calling Nchf show the NRF's OAuth2 access tokens (charging/nf_auth.py): the NRF's
    # public keys (a JWKS file, or an https:// URL fetched with `nrf_ca_file` as its CA if set), its NF
    # instance id (the tokens' iss), and this CHF's (an accepted aud beside the NF type CHF). In dev with
    # no JWKS, tongka plays the NRF, signing with `nrf_dev_key_file` (`tongka keys nrf-dev` makes it).
    nrf_jwks: str | None = None
    nrf_issuer: str | None = None
    nrf_ca_file: str | None = None
    chf_instance_id: str | None = None
    nrf_dev_key_file: str = "var/nrf-dev-key.pem"

    @field_validator("nf_notify_allow")
    @classmethod
    def _nf_notify_allow(cls, value: str) -> str:
        from tongka.outbound import Allowed

        Allowed.parse(value)  # a wrong entry stops the start, not the first notification
        return value

    # Request bodies (`http_limits.py`): larger ones are refused with 413 before they are read whole.
    max_body_bytes: int = Field(
        default=64 * 1024, gt=0
    )  # the app's API, pages and payment callbacks
    max_nchf_body_bytes: int = Field(
        default=256 * 1024, gt=0
    )  # the network's Nchf_ConvergedCharging requests
    sql_echo: bool = False
    # SMS over SMPP 3.4 (notify/sms.py): the operator's SMSC as smpp://system_id:password@host:port (the
    # whole URL is a secret: it carries the password), and the source address the subscriber sees
    # (an E.164 number, digits with or without +, or up to 11 letters and digits). No URL: SMS stay
    # in the outbox. The link is kept alive by an enquire_link after this many idle seconds, and an
    # answer (submit_sm_resp, enquire_link_resp) not come within the timeout counts the link dead.
    smpp_url: SecretStr | None = None
    sms_sender: str = "tongka"
    smpp_enquire_link_seconds: float = Field(default=30.0, gt=0)
    smpp_response_timeout_seconds: float = Field(default=10.0, gt=0)
    # (The URL is checked by `problems`, not by a validator: pydantic's error would quote the password.)

    @field_validator("smpp_url", mode="before")
    @classmethod
    def _smpp_url_empty(cls, value: object) -> object:
        return value or None  # TONGKA_SMPP_URL= (empty): not set

    @field_validator("sms_sender")
    @classmethod
    def _sms_sender(cls, value: str) -> str:
        if not re.fullmatch(r"\+?[0-9]{3,15}|[A-Za-z0-9 ]{1,11}", value):
            raise ValueError(
                f"TONGKA_SMS_SENDER {value!r} is neither a number (3 to 15 digits, + allowed) nor an "
                "alphanumeric sender id (1 to 11 letters, digits or spaces)"
            )
        return value

    # The server and its database under load (tongka.gate, docs/SECURITY.md): a request waits at most
    # `db_busy_timeout_seconds` for a session, for its turn to write, or for SQLite's lock, then is a 503.
    # At most `db_pool_size` requests hold a session at once, each a pooled connection; the pool
    # has `db_pool_overflow` more for work outside requests (the notification sender, pages);
    # `threads` run sync routes, more than both together, so a request holding a connection
    # always finds a thread. On PostgreSQL the balance read has a pool of its own, up to
    # `db_pool_size` more connections per server process (db.AsyncReads).
    db_busy_timeout_seconds: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1)
    db_pool_overflow: int = Field(default=10, ge=0)
    threads: int = Field(default=40, ge=2)
    log_json: bool = Field(default=False, description="JSON log lines instead of console output")

    @property
    def dev(self) -> bool:
        return self.env == "dev"

    @property
    def nchf_host(self) -> str:
        return split_bind(self.nchf_bind)[0]

    @property
    def nchf_port(self) -> int:
        return split_bind(self.nchf_bind)[1]

    @property
    def nchf_tls(self) -> bool:
        return self.nchf_tls_cert is not None and self.nchf_tls_key is not None

    @property
    def receipt_key(self) -> str | None:
        """The receipt signing key, or None when receipts are not signed (no key set)."""
        return self.receipt_signing_key.get_secret_value() if self.receipt_signing_key else None

    @property
    def sandbox_enabled(self) -> bool:
        return self.dev if self.payment_sandbox is None else self.payment_sandbox

    @property
    def background_embedded(self) -> bool:
        """Whether `tongka serve` runs the background work itself (see `background`)."""
        if self.background is not None:
            return self.background == "embedded"
        return self.database_url.startswith("sqlite")

    @property
    def docs_enabled(self) -> bool:
        return self.dev if self.api_docs is None else self.api_docs

    @property
    def sandbox_secret(self) -> str:
        """The sandbox provider's signing secret; `check` makes sure it is set whenever the sandbox is on."""
        if self.sandbox_payment_secret is None:
            raise UnsafeSettings(
                ["TONGKA_SANDBOX_PAYMENT_SECRET is not set, and the payment sandbox is on."]
            )
        return self.sandbox_payment_secret.get_secret_value()


# Secret keys that are public: shown in this repository's docs, tests and examples, or the first
# thing anyone would type. Compared without case; any key shorter than 32 bytes is refused anyway.
DEMO_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "secret-key",
        "secret_key",
        "secretkey",
        "dev",
        "development",
        "test",
        "testing",
        "demo",
        "demo-password",
        "password",
        "tongka",
        "example",
        "s",
        "x",
        "key",
        "default",
        "insecure",
        "please-change-me",
        "replace-me",
        "your-secret-key",
    }
)
SECRET_KEY_MIN_BYTES = 32


class UnsafeSettings(ValueError):
    """Settings tongka refuses to start with; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "tongka refuses to start with these settings:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def split_bind(bind: str) -> tuple[str, int]:
    """ "127.0.0.1:8001" -> ("127.0.0.1", 8001); "[::1]:8001" -> ("::1", 8001)."""
    host, sep, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{bind!r} is not host:port (an IPv6 address in brackets: [::1]:8001)")
    return host, int(port)


@dataclass(frozen=True)
class SmppAddress:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)


def smpp_address(url: str) -> SmppAddress:
    """ "smpp://system_id:password@host:2775" -> its parts (percent-escapes undone; port 2775 if none).

    SMPP 3.4 caps system_id at 15 characters and the password at 8 (C-strings of 16 and 9 octets);
    longer ones would be cut short on the wire and the bind refused, so they are refused here.
    Errors never repeat the password.
    """
    parts = urlsplit(url)
    if parts.scheme != "smpp" or not parts.hostname or not parts.username:
        raise ValueError(
            "TONGKA_SMPP_URL must look like smpp://system_id:password@host:port "
            "(scheme smpp, a host and a system_id)"
        )
    try:
        port = parts.port or 2775
    except ValueError:
        raise ValueError(
            "TONGKA_SMPP_URL has a port that is not a number from 1 to 65535"
        ) from None
    system_id, password = unquote(parts.username), unquote(parts.password or "")
    if len(system_id) > 15 or len(password) > 8:
        raise ValueError(
            "TONGKA_SMPP_URL: SMPP 3.4 allows a system_id of at most 15 characters and a password of at most 8"
        )
    if ":" in parts.hostname:  # smpplib opens IPv4 sockets only
        raise ValueError(
            "TONGKA_SMPP_URL: an IPv6 address is not supported; use a host name or IPv4"
        )
    if not (system_id + password).isascii():
        raise ValueError("TONGKA_SMPP_URL: the system_id and password must be ASCII")
    return SmppAddress(parts.hostname, port, system_id, password)


def loopback(host: str) -> bool:
    """Whether only this machine can reach an address bound to `host` (0.0.0.0 and :: are every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def _nchf_problems(settings: Settings) -> list[str]:
    """The network's listener: TLS half set, a client CA without TLS, files that are not there, and, in
    production, plaintext or no client certificates on an address other machines reach."""
    found = []
    if (settings.nchf_tls_cert is None) != (settings.nchf_tls_key is None):
        found.append(
            "TONGKA_NCHF_TLS_CERT and TONGKA_NCHF_TLS_KEY go together: set both (TLS) or neither (h2c)."
        )
    if settings.nchf_client_ca is not None and not settings.nchf_tls:
        found.append(
            "TONGKA_NCHF_CLIENT_CA is set but the Nchf listener has no TLS (TONGKA_NCHF_TLS_CERT and _KEY): "
            "client certificates can only be checked over TLS."
        )
    for name, path in (("CERT", settings.nchf_tls_cert), ("KEY", settings.nchf_tls_key)):
        if path is not None and not path.is_file():
            found.append(f"TONGKA_NCHF_TLS_{name} is {path}, which is not a file.")
    if settings.nchf_client_ca is not None and not settings.nchf_client_ca.is_file():
        found.append(f"TONGKA_NCHF_CLIENT_CA is {settings.nchf_client_ca}, which is not a file.")
    if (
        not settings.dev
        and not loopback(settings.nchf_host)
        and not (settings.nchf_tls and settings.nchf_client_ca)
    ):
        # Anyone who reaches the listener could spend subscribers' data and money.
        found.append(
            f"TONGKA_NCHF_BIND is {settings.nchf_bind}, which other machines reach, without mutual TLS: production "
            "needs TONGKA_NCHF_TLS_CERT, TONGKA_NCHF_TLS_KEY and TONGKA_NCHF_CLIENT_CA there (plaintext h2c "
            "only on loopback, e.g. behind a service mesh's sidecar)."
        )
    return found


def _nf_auth_problems(settings: Settings) -> list[str]:
    """What authenticating network functions (charging/nf_auth.py) needs from the settings."""
    found: list[str] = []
    jwks = settings.nrf_jwks
    if jwks and "://" in jwks and not jwks.startswith("https://"):
        found.append(
            f"TONGKA_NRF_JWKS {jwks}: the NRF's keys come from a file or an https:// URL, never plain http."
        )
    if settings.dev:
        return found
    if not jwks:
        found.append(
            "TONGKA_NRF_JWKS is not set: production verifies network functions' access tokens against the NRF's "
            "public keys (a JWKS file or https:// URL)."
        )
    if not settings.nrf_issuer:
        found.append(
            "TONGKA_NRF_ISSUER is not set: production needs the NRF's NF instance id (the tokens' iss)."
        )
    return found


def _mail_problems(settings: Settings) -> list[str]:
    """Email delivery: a sender address to send from, and a DKIM key that is there with its selector."""
    found = []
    if settings.smtp_url is not None and not settings.mail_from:
        found.append("TONGKA_SMTP_URL is set without TONGKA_MAIL_FROM: email needs a From address.")
    if (settings.dkim_key_file is None) != (settings.dkim_selector is None):
        found.append(
            "TONGKA_DKIM_KEY_FILE and TONGKA_DKIM_SELECTOR go together: set both (DKIM) or neither."
        )
    if settings.dkim_key_file is not None and not settings.dkim_key_file.is_file():
        found.append(f"TONGKA_DKIM_KEY_FILE is {settings.dkim_key_file}, which is not a file.")
    if settings.smtp_ca_file is not None and not settings.smtp_ca_file.is_file():
        found.append(f"TONGKA_SMTP_CA_FILE is {settings.smtp_ca_file}, which is not a file.")
    if settings.message_lease_seconds <= settings.smtp_timeout_seconds * 2:
        # A send outlasting its lease could be claimed and sent again by another worker meanwhile.
        found.append(
            f"TONGKA_MESSAGE_LEASE_SECONDS ({settings.message_lease_seconds}) must be more than twice "
            f"TONGKA_SMTP_TIMEOUT_SECONDS ({settings.smtp_timeout_seconds})."
        )
    return found


def problems(settings: Settings) -> list[str]:
    """Everything unsafe in these settings (empty: safe to start)."""
    found = _nchf_problems(settings) + _mail_problems(settings)
    if settings.threads <= settings.db_pool_size + settings.db_pool_overflow:
        # A request holding a pooled connection must always find a thread to go on (tongka.gate).
        found.append(
            f"TONGKA_THREADS ({settings.threads}) must be more than TONGKA_DB_POOL_SIZE + TONGKA_DB_POOL_OVERFLOW "
            f"({settings.db_pool_size} + {settings.db_pool_overflow})."
        )
    if settings.sandbox_enabled and settings.sandbox_payment_secret is None:
        found.append("TONGKA_SANDBOX_PAYMENT_SECRET is required while the payment sandbox is on.")
    found += _nf_auth_problems(settings)
    if settings.smpp_url is not None:
        try:
            smpp_address(settings.smpp_url.get_secret_value())
        except ValueError as wrong:
            found.append(str(wrong))
    if settings.dev:
        return found
    if settings.sandbox_enabled:
        found.append(
            "TONGKA_PAYMENT_SANDBOX=true in production: anyone could mark any payment paid. "
            "Remove it (the sandbox is for TONGKA_ENV=dev)."
        )
    if not settings.public_base_url.startswith("https://"):
        found.append(
            f"TONGKA_PUBLIC_BASE_URL is {settings.public_base_url}: production needs the https:// address customers "
            "and payment providers reach (payment return and callback links, receipts, HSTS)."
        )
    key = settings.secret_key.get_secret_value()
    if key.strip().lower() in DEMO_SECRETS or _placeholder(key):
        found.append(
            "TONGKA_SECRET_KEY is a demo or placeholder value. Make a new one (tongka keys generate prints one)."
        )
    elif len(key.encode()) < SECRET_KEY_MIN_BYTES:
        found.append(
            f"TONGKA_SECRET_KEY is {len(key.encode())} bytes; production needs at least {SECRET_KEY_MIN_BYTES} "
            "random bytes (tongka keys generate prints one)."
        )
    return found


def _placeholder(key: str) -> bool:
    """One or two characters repeated ("xxxx...", "0000...", "abab..."): a placeholder whatever its length."""
    return len(set(key)) <= 2


def check(settings: Settings) -> None:
    """Refuse unsafe settings (raises UnsafeSettings listing every problem): create_app and `tongka serve`."""
    if found := problems(settings):
        raise UnsafeSettings(found)


@lru_cache
def get_settings() -> Settings:
    return Settings()  # values come from the environment


class _Site(BaseSettings):
    """Only the public address, read as `Settings` reads it: for what has no settings in hand (the
    link to /official in every email's frame) and must not need a secret key to be rendered."""

    model_config = Settings.model_config
    public_base_url: str = Settings.model_fields["public_base_url"].default


@lru_cache
def public_base_url() -> str:
    return _Site().public_base_url.rstrip("/")
