"""Settings, read from `TONGKA_*` environment variables and the file `var/tongka.env`.

Secrets have no defaults: `make run` writes random ones to `var/tongka.env` on first
start, tests make their own, production sets them in the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONGKA_", env_file="var/tongka.env", extra="ignore")

    # dev: demo conveniences (the /dev outbox, the payment sandbox); production: none of them.
    env: Literal["dev", "production"] = "dev"
    database_url: str = "sqlite:///var/tongka.db"
    public_base_url: str = "http://127.0.0.1:8000"

    # Keys the service signs and hashes with (one-time codes, identity numbers).
    secret_key: SecretStr
    # The shared secret of the sandbox payment provider's callbacks.
    sandbox_payment_secret: SecretStr

    # Ed25519 private key (32 raw bytes, base64) that signs receipts; its public half is published.
    receipt_signing_key: SecretStr | None = None

    # How often the server sends queued charging notifications (REAUTHORIZATION) to the network; 0: never
    # (then `tongka charging notify` does it).
    charging_notify_every_seconds: float = 1.0
    # Where the network's charging requests are decided, in batches (`charging.nchf`): a process of
    # its own beside each server process, or a thread of the server's (the tests' many short-lived apps).
    charging_worker: Literal["process", "thread"] = "process"

    payment_sandbox: bool | None = None  # None: on in dev, off in production
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
    order_payment_ttl_seconds: int = 30 * 60
    bind_code_ttl_seconds: int = 10 * 60
    bind_code_max_attempts: int = 5
    bind_code_resend_seconds: int = 60
    sql_echo: bool = False
    # The server and its database under load (tongka.gate, docs/SECURITY.md): a request waits at most
    # `db_busy_timeout_seconds` for a session, for its turn to write, or for SQLite's lock, then is a 503.
    # At most `db_pool_size` requests hold a session at once, each a pooled connection; the pool
    # has `db_pool_overflow` more for work outside requests (the notification sender, pages);
    # `threads` run sync routes, more than both together, so a request holding a connection
    # always finds a thread.
    db_busy_timeout_seconds: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1)
    db_pool_overflow: int = Field(default=10, ge=0)
    threads: int = Field(default=40, ge=2)
    log_json: bool = Field(default=False, description="JSON log lines instead of console output")

    @property
    def dev(self) -> bool:
        return self.env == "dev"

    @property
    def receipt_key(self) -> str | None:
        """The receipt signing key, or None when receipts are not signed (no key set)."""
        return self.receipt_signing_key.get_secret_value() if self.receipt_signing_key else None

    @property
    def sandbox_enabled(self) -> bool:
        return self.dev if self.payment_sandbox is None else self.payment_sandbox


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
