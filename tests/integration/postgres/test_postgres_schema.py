"""The warehouse schema on PostgreSQL: migrations, the live catalog against the vault
specs and the contract tables, and emptying every table."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.migrations import (
    LATEST_VERSION,
    SchemaOutdated,
    check_schema,
    migrate,
    schema_version,
)
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tables import WAREHOUSE_TABLES, truncate_all
from dwh_adapters.postgres.vault_store import COLUMN_TYPES, PostgresVaultStore
from dwh_core.vault import HUBS, LINKS, SATELLITES
from tests.support.databases import fresh_database as throwaway_database
from tests.support.stores import Connection, enriched, save_orders, select

pytestmark = pytest.mark.integration


def test_migrating_again_applies_nothing_and_the_versions_are_recorded(db: Connection) -> None:
    assert migrate(db) == []
    assert select(db, "SELECT version, name FROM public.dwh_schema_migrations ORDER BY 1") == [
        (1, "initial"),
        (2, "exact_values_and_ties"),
        (3, "user_tags"),
    ]
    assert schema_version(db) == LATEST_VERSION
    check_schema(db)


def test_a_worker_refuses_a_database_that_was_never_migrated(settings: PgSettings) -> None:
    # Hide the migrations table in a transaction that is rolled back: a fresh database
    # as far as this connection can tell.
    with connect(settings) as conn:
        conn.execute("ALTER TABLE public.dwh_schema_migrations RENAME TO hidden_migrations")
        with pytest.raises(SchemaOutdated) as refused:
            check_schema(conn)
        conn.rollback()
    assert str(refused.value) == (
        f"warehouse schema is at version 0, this worker needs {LATEST_VERSION}: run 'dwh migrate'"
    )


@pytest.fixture
def fresh_database(settings: PgSettings) -> Iterator[PgSettings]:
    """A throwaway database with no schema yet, dropped afterwards."""
    with throwaway_database(settings, migrated=False) as fresh:
        yield fresh


def test_a_fresh_database_is_refused_then_migrated_once_by_two_concurrent_migrators(
    fresh_database: PgSettings,
) -> None:
    with connect(fresh_database, autocommit=True) as conn:
        assert schema_version(conn) == 0
        with pytest.raises(SchemaOutdated, match="is at version 0"):
            check_schema(conn)

    applied: list[list[str]] = []

    def run_migrate() -> None:
        with connect(fresh_database, autocommit=True) as conn:
            applied.append(migrate(conn))

    threads = [threading.Thread(target=run_migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Each version once, by one migrator or the other (each takes the lock per version).
    assert sorted(label for labels in applied for label in labels) == [
        "0001_initial",
        "0002_exact_values_and_ties",
        "0003_user_tags",
    ]
    with connect(fresh_database) as conn:
        check_schema(conn)


def live_columns(conn: Connection) -> dict[str, dict[str, str]]:
    columns: dict[str, dict[str, str]] = {}
    for table, column, data_type in select(
        conn,
        "SELECT table_schema || '.' || table_name, column_name, data_type"
        " FROM information_schema.columns WHERE table_schema IN ('stg', 'dds', 'cdm')",
    ):
        columns.setdefault(table, {})[column] = data_type
    return columns


SQL_TYPES = {
    "uuid": "uuid",
    "varchar": "character varying",
    "integer": "integer",
    "numeric": "numeric",
    "timestamp": "timestamp without time zone",
}


def spec_columns() -> dict[str, dict[str, str]]:
    """Every DDS table and column the dwh_core.vault specs name, with its type (for the
    values, the type the vault store sends them as)."""
    load = {"load_dt": "timestamp", "load_src": "varchar"}
    tables: dict[str, dict[str, str]] = {}
    for hub in HUBS.values():
        tables[hub.table] = {
            hub.pk: "uuid",
            **{column: COLUMN_TYPES[column] for column in hub.key_columns},
            **load,
        }
    for link in LINKS.values():
        tables[link.table] = {link.pk: "uuid", **{HUBS[h].pk: "uuid" for h in link.hubs}, **load}
    for sat in SATELLITES.values():
        tables[sat.table] = {
            HUBS[sat.hub].pk: "uuid",
            **{column: COLUMN_TYPES[column] for column in sat.columns},
            sat.hashdiff_column: "uuid",
            "source_ts": "timestamp",
            **load,
        }
    return {
        f"dds.{table}": {column: SQL_TYPES[kind] for column, kind in columns.items()}
        for table, columns in tables.items()
    }


def test_the_live_catalog_has_every_table_and_column_of_the_vault_specs(db: Connection) -> None:
    live = live_columns(db)
    for table, columns in spec_columns().items():
        assert table in live, f"{table} is missing"
        assert {column: live[table].get(column) for column in columns} == columns, table
    # and the vault store types no column the specs do not name (a stale entry)
    named = {c for hub in HUBS.values() for c in hub.key_columns}
    assert set(COLUMN_TYPES) == named | {c for sat in SATELLITES.values() for c in sat.columns}


def test_the_live_catalog_has_the_contract_tables_of_stg_and_cdm(db: Connection) -> None:
    live = live_columns(db)
    assert {"id", "object_id", "payload", "object_type", "sent_dttm"} <= live[
        "stg.order_events"
    ].keys()
    assert {"id", "user_id", "product_id", "product_name", "order_cnt"} <= live[
        "cdm.user_product_counters"
    ].keys()
    assert {"id", "user_id", "category_id", "category_name", "order_cnt"} <= live[
        "cdm.user_category_counters"
    ].keys()


def test_truncate_all_empties_every_warehouse_table(settings: PgSettings, db: Connection) -> None:
    with PostgresVaultStore(settings) as vault:
        save_orders(vault, [enriched(1, [0])])
    truncate_all(db)
    with PostgresMarts(settings) as marts:
        assert marts.row_counts() == dict.fromkeys(WAREHOUSE_TABLES, 0)
