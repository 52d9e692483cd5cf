from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests import factories as f
from tongka.staff import audit
from tongka.trust import service


@pytest.fixture
def admin(client, sessions, settings):  # type: ignore[no-untyped-def]
    """An operator admin, signed in to the staff pages on `client`."""
    return f.staff(client, sessions, settings, role="admin")


@pytest.fixture
def official(sessions) -> None:  # type: ignore[no-untyped-def]
    """tongka's channels: a hotline, the site, a sender domain, an Instagram account."""
    from tongka.db import transaction

    labels = {
        "phone": ("tongka's customer service number", "通卡客服热线", "通卡客戶服務熱線"),
        "web": ("tongka's web site", "通卡官网", "通卡官方網站"),
        "email": ("tongka's email sender", "通卡邮件发件人", "通卡電郵寄件人"),
        "social": ("tongka's Instagram account", "通卡 Instagram 账号", "通卡 Instagram 帳戶"),
    }
    with transaction(sessions) as s:
        for kind, value, platform in (
            ("phone", "+852 3000 1234", ""),
            ("web", "tongka.hk", ""),
            ("email", "@tongka.hk", ""),
            ("social", "@tongkahk", "instagram"),
        ):
            en, hans, hant = labels[kind]
            service.add_channel(
                s,
                audit.CLI,
                kind=kind,
                value=value,
                platform=platform,
                labels={"en": en, "zh-Hans": hans, "zh-Hant": hant},
            )


@pytest.fixture
def other_client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A second browser on the same app."""
    with TestClient(app) as c:
        yield c
