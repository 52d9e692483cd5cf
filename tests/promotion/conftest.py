"""Fixtures of the promotion tests: the demo catalog (without its offers) and a subscriber with a line."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tests import factories as f
from tongka.db import transaction
from tongka.promotion.models import Offer


@pytest.fixture
def catalog(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    """The demo catalog and inventory; the demo's own offers are ended so each test sees only its own."""
    with transaction(sessions) as s:
        s.execute(update(Offer).values(status="ended"))


@pytest.fixture
def who(client, sessions, catalog) -> f.Subscriber:  # type: ignore[no-untyped-def]
    return f.new_subscriber(client, sessions)
