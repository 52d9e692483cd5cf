"""The migrations build exactly the schema the models describe, on each backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import tongka.models  # noqa: F401 (every table on the metadata)
from tongka.db import Base, normalise_url


def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    engine = create_engine(normalise_url(db_url))
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert differences == []


def test_operator_accounts_become_admins_who_set_up_totp(tmp_path) -> None:
    """0017: an operator was a subscriber account with a role; it becomes an admin staff member of
    the same username and password, not yet enrolled, and accounts lose the role."""
    import uuid
    from datetime import UTC, datetime

    from sqlalchemy import inspect, text

    from tongka import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0016")
    engine = create_engine(url)
    with engine.begin() as c:
        for name, role in (("ops", "operator"), ("ada", "subscriber")):
            c.execute(
                text(
                    "INSERT INTO accounts (id, created_at, username, email, password_hash,"
                    " language, role, region) VALUES (:id, :at, :name, 'x@example.com', :hash,"
                    " 'en', :role, 'hk')"
                ),
                {
                    "id": uuid.uuid4().hex,
                    "at": datetime.now(UTC),
                    "name": name,
                    "hash": f"hash-{name}",
                    "role": role,
                },
            )
    migrate.upgrade(url, "0017")
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT username, password_hash, role, store_id, totp_sealed FROM staff_members")
        ).all()
        columns = {col["name"] for col in inspect(c).get_columns("accounts")}
    engine.dispose()
    assert [tuple(r) for r in rows] == [("ops", "hash-ops", "admin", None, None)]
    assert "role" not in columns
