"""Fixtures of the promotion tests: the demo catalog (without its offers) and a subscriber with a line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import update

from tests import factories as f
from tongka.db import transaction
from tongka.promotion.models import Offer


@dataclass
class Who:
    headers: dict[str, str]
    line: dict[str, Any]
    username: str


def new_subscriber(client, sessions, language: str = "en") -> Who:  # type: ignore[no-untyped-def]
    account = f.register(client, language=language)
    headers = f.login(client, account["username"])
    return Who(headers, f.bind(client, headers, f.spare_numbers(sessions)[0]), account["username"])


@pytest.fixture
def catalog(client, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    """The demo catalog and inventory; the demo's own offers are ended so each test sees only its own."""
    f.load_demo(sessions, settings)
    with transaction(sessions) as s:
        s.execute(update(Offer).values(status="ended"))


@pytest.fixture
def who(client, sessions, catalog) -> Who:  # type: ignore[no-untyped-def]
    return new_subscriber(client, sessions)
