"""The counter's tests: the demo (packs, spare lines), a customer's line, an agent signed in, and
for the till a cast of staff at two stores (lo-wu and harbour-city) plus an admin."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from tests import factories as f


@pytest.fixture
def agent(client, sessions, settings, demo):  # type: ignore[no-untyped-def]
    """An agent at Lo Wu, signed in on `client`, with the demo loaded."""
    return f.staff(client, sessions, settings, role="agent", store="lo-wu")


class Cast(NamedTuple):
    agent: f.StaffLogin  # lo-wu
    agent2: f.StaffLogin  # lo-wu
    manager: f.StaffLogin  # lo-wu
    other_agent: f.StaffLogin  # harbour-city
    other_manager: f.StaffLogin  # harbour-city
    admin: f.StaffLogin


@pytest.fixture
def cast(client, sessions, settings) -> Cast:  # type: ignore[no-untyped-def]
    return Cast(
        agent=f.staff(client, sessions, settings, role="agent", store="lo-wu"),
        agent2=f.staff(client, sessions, settings, role="agent", store="lo-wu"),
        manager=f.staff(client, sessions, settings, role="manager", store="lo-wu"),
        other_agent=f.staff(client, sessions, settings, role="agent", store="harbour-city"),
        other_manager=f.staff(client, sessions, settings, role="manager", store="harbour-city"),
        admin=f.staff(client, sessions, settings, role="admin"),
    )


@pytest.fixture
def line_id(client, sessions, demo) -> str:  # type: ignore[no-untyped-def]
    _headers, line, _ = f.new_subscriber(client, sessions)
    return str(line["id"])
