from __future__ import annotations

import pytest

from tests import factories as f


@pytest.fixture
def admin(client, sessions, settings):  # type: ignore[no-untyped-def]
    """An operator admin, signed in to the staff pages on `client`."""
    return f.staff(client, sessions, settings, role="admin")
