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

    payment_sandbox: bool | None = None  # None: on in dev, off in production
    access_token_ttl_seconds: int = 86_400
    order_payment_ttl_seconds: int = 30 * 60
    bind_code_ttl_seconds: int = 10 * 60
    bind_code_max_attempts: int = 5
    bind_code_resend_seconds: int = 60
    sql_echo: bool = False
    log_json: bool = Field(default=False, description="JSON log lines instead of console output")

    @property
    def dev(self) -> bool:
        return self.env == "dev"

    @property
    def sandbox_enabled(self) -> bool:
        return self.dev if self.payment_sandbox is None else self.payment_sandbox


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
