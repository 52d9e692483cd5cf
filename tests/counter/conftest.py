from __future__ import annotations

import pytest

from tests import factories as f


@pytest.fixture
def agent(client, sessions, settings, demo):  # type: ignore[no-untyped-def]
    """An agent at Lo Wu, signed in on `client`, with the demo loaded."""
    return f.staff(client, sessions, settings, role="agent", store="lo-wu")
