"""Payment providers, registered in a plain dict by name."""

from __future__ import annotations

from tongka.config import Settings
from tongka.payment.providers.base import Provider
from tongka.payment.providers.sandbox import SandboxProvider

__all__ = ["SandboxProvider", "build", "CHANNEL_METHODS", "METHOD_PROVIDER"]


def build(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    if settings.sandbox_enabled:
        providers["sandbox"] = SandboxProvider(
            settings.sandbox_payment_secret.get_secret_value(), settings.public_base_url
        )
    return providers


# Which payment methods each channel offers, and which provider carries each method.
# Until the real providers arrive, the sandbox carries every method.
CHANNEL_METHODS: dict[str, tuple[str, ...]] = {
    "app": ("wechat_pay", "alipay"),
    "web": ("card", "paypal", "alipay", "wechat_pay"),
    "store": ("cash", "card", "qr"),
}
METHOD_PROVIDER: dict[str, str] = {m: "sandbox" for methods in CHANNEL_METHODS.values() for m in methods}
