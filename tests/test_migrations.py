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
