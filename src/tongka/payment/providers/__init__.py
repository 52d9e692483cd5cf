"""Payment providers, registered in a plain dict by name."""

from __future__ import annotations

import httpx

from tongka import outbound
from tongka.config import Settings
from tongka.payment.providers import alipay, paypal, store, stripe, wallet, wechat
from tongka.payment.providers.base import Provider
from tongka.payment.providers.sandbox import SandboxProvider

__all__ = [
    "CHANNEL_METHODS",
    "METHOD_CURRENCIES",
    "METHOD_PROVIDER",
    "METHOD_REGIONS",
    "PROVIDER_MODULES",
    "SIMULATED",
    "SandboxProvider",
    "build",
    "method_offered",
]

# Each module has build(settings, http) -> Provider | None (None: not configured).
PROVIDER_MODULES = {
    "wechat": wechat,
    "alipay": alipay,
    "stripe": stripe,
    "paypal": paypal,
    "store": store,
    "wallet": wallet,
}
# The providers with a simulator of their side (sandbox/<name>.py) for the sandbox.
SIMULATED = ("wechat", "alipay", "stripe", "paypal")


def build(settings: Settings, http: httpx.Client | None = None) -> dict[str, Provider]:
    """Every configured provider. `http` carries their API calls (tests pass an in-process client)."""
    http = http or outbound.client()
    providers: dict[str, Provider] = {}
    if settings.sandbox_enabled:
        providers["sandbox"] = SandboxProvider(settings.sandbox_secret, settings.public_base_url)
    for name, module in PROVIDER_MODULES.items():
        provider = module.build(settings, http)
        if provider is not None:
            providers[name] = provider
    return providers


# Which payment methods each channel offers, in which currencies and to customers of
# which regions (None: all), and which provider carries each method. This is the one
# place to change when the operator's contracts change.
CHANNEL_METHODS: dict[str, tuple[str, ...]] = {
    "app": ("wechat_pay", "alipay"),
    # The last two pay in a phone's browser (the renewal page a phone whose data ran out is sent to).
    "web": ("card", "paypal", "alipay", "wechat_pay", "wechat_pay_h5", "alipay_wap"),
    # Recorded by staff (providers/store.py); or a QR code the counter's screen shows the customer.
    "store": ("cash", "card_terminal", "store_qr", "wechat_pay", "alipay"),
    # Auto-renew, with nobody at the screen: the wallet, or a card saved for it (charged off-session).
    # or a wallet's password-free agreement signed for it (Alipay's 商家扣款, WeChat Pay's 委托代扣).
    "auto": ("wallet", "saved_card", "alipay_agreement", "wechat_agreement"),
}
# The web's ways to pay in a phone's browser without a log-in (the network's signed renewal link);
# everything else on the web is for a signed-in customer.
PHONE_WEB_METHODS = ("wechat_pay_h5", "alipay_wap")
METHOD_CURRENCIES: dict[str, tuple[str, ...]] = {
    "wechat_pay": ("CNY",),  # WeChat Pay API v3 (domestic) settles CNY only
    "alipay": ("CNY", "HKD"),
    "wechat_pay_h5": ("CNY",),
    "alipay_wap": ("CNY", "HKD"),
    "card": ("HKD", "CNY"),
    "paypal": ("HKD",),  # PayPal does not settle CNY for a Hong Kong merchant
    "cash": ("HKD", "CNY"),
    "card_terminal": ("HKD", "CNY"),
    "store_qr": ("CNY", "HKD"),
    "wallet": ("HKD", "CNY"),
    "saved_card": ("HKD", "CNY"),
    "alipay_agreement": ("CNY", "HKD"),
    "wechat_agreement": ("CNY",),  # the domestic API's only currency
}
METHOD_REGIONS: dict[str, tuple[str, ...] | None] = {}  # e.g. {"unionpay_qr": ("mainland",)}
# In dev mode a method whose provider has no keys falls back to the generic sandbox.
METHOD_PROVIDER: dict[str, str] = {
    **{m: "sandbox" for methods in CHANNEL_METHODS.values() for m in methods},
    "wechat_pay": "wechat",
    "alipay": "alipay",
    "wechat_pay_h5": "wechat",
    "alipay_wap": "alipay",
    "card": "stripe",
    "paypal": "paypal",
    "cash": "store",
    "card_terminal": "store",
    "store_qr": "store",
    "wallet": "wallet",
    "saved_card": "stripe",
    "alipay_agreement": "alipay",
    "wechat_agreement": "wechat",
}


def method_offered(method: str, channel: str, currency: str, region: str) -> bool:
    regions = METHOD_REGIONS.get(method)
    return (
        method in CHANNEL_METHODS.get(channel, ())
        and currency in METHOD_CURRENCIES.get(method, ())
        and (regions is None or region in regions)
    )
