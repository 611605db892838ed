"""The warehouse database of the integration tests of the PostgreSQL adapters (this
folder: one contract suite per store, the schema, the pipeline on PostgreSQL).

The table names are fixed, so the schema is migrated once per session and every test
that uses PostgreSQL starts from empty tables; tests run serially in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from dwh_adapters.postgres.migrations import migrate
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tables import truncate_all
from tests.support.stores import Connection


def warehouse_settings() -> PgSettings:
    env = os.environ.get
    return PgSettings(
        host=env("PG_WAREHOUSE_HOST", "127.0.0.1"),
        port=int(env("PG_WAREHOUSE_PORT", "5432")),
        dbname=env("PG_WAREHOUSE_DBNAME", "de"),
        user=env("PG_WAREHOUSE_USER", "dwh"),
        password=env("PG_WAREHOUSE_PASSWORD", "dwh"),
        application_name="dwh-tests",
    )


@pytest.fixture(scope="session")
def settings() -> PgSettings:
    settings = warehouse_settings()
    try:
        with connect(settings, autocommit=True) as conn:
            migrate(conn)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {settings.describe()} is not reachable ({exc}): run 'scripts/stack up'"
        )
    return settings


@pytest.fixture
def db(settings: PgSettings) -> Iterator[Connection]:
    """An autocommit connection to the warehouse, every table emptied first."""
    with connect(settings, autocommit=True) as conn:
        truncate_all(conn)
        yield conn
