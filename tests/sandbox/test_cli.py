"""The sandbox as the CLI and the app factory use it: `keys generate`, `sandbox statement`, `mount`."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from fastapi import FastAPI

from tests import factories as f
from tongka import sandbox
from tongka.config import Settings
from tongka.payment.providers.keys import pem

# Each pair: the key one side holds, and the public half the other side checks it with.
PAIRS = [
    ("TONGKA_WECHAT_MERCHANT_PRIVATE_KEY", "TONGKA_SANDBOX_WECHAT_MERCHANT_PUBLIC_KEY"),
    ("TONGKA_SANDBOX_WECHAT_PLATFORM_PRIVATE_KEY", "TONGKA_WECHAT_PLATFORM_PUBLIC_KEY"),
    ("TONGKA_ALIPAY_APP_PRIVATE_KEY", "TONGKA_SANDBOX_ALIPAY_APP_PUBLIC_KEY"),
    ("TONGKA_SANDBOX_ALIPAY_PRIVATE_KEY", "TONGKA_ALIPAY_PUBLIC_KEY"),
]


def test_keys_generate_prints_one_line_per_setting_that_the_providers_read_back(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("keys", "generate")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    values = dict(line.split("=", 1) for line in lines)
    assert len(values) == len(lines) and all(k.startswith("TONGKA_") for k in values)
    for private_name, public_name in PAIRS:
        private = load_pem_private_key(pem(values[private_name]), password=None)
        public = load_pem_public_key(pem(values[public_name]))
        assert isinstance(private, RSAPrivateKey) and isinstance(public, RSAPublicKey)
        assert private.public_key().public_numbers() == public.public_numbers(), private_name


def test_the_statement_command_prints_what_the_simulated_provider_settled(  # type: ignore[no-untyped-def]
    client, sessions, settings, demo, cli, monkeypatch
) -> None:
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], method="alipay")
    assert order["payment"]["provider"] == "alipay"
    f.pay(client, order["payment"]["id"])
    monkeypatch.setenv("TONGKA_SANDBOX_STORE_URL", settings.sandbox_store_url)
    result = cli("sandbox", "statement", "--provider", "alipay")
    assert result.exit_code == 0, result.output
    rows = [r for r in result.output.splitlines()[1:] if order["payment"]["id"] in r]
    assert len(rows) == 1 and f",{order['amount']},HKD," in rows[0], result.output


def test_mount_refuses_an_app_whose_sandbox_is_off(settings: Settings) -> None:
    production = settings.model_copy(update={"payment_sandbox": False})
    with pytest.raises(RuntimeError):
        sandbox.mount(FastAPI(), production)
