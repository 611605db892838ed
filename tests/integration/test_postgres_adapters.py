"""The PostgreSQL adapters: migrations, one contract suite per port (run against the
in-memory adapter and the real one, so the fake cannot drift), the pipeline end to end
on PostgreSQL, and concurrent writers of shared hubs.

The table names are fixed, so the schema is migrated once per session and every test
that uses PostgreSQL starts from empty tables; tests run serially in one process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs
import psycopg
import pytest
from attrs import frozen
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.memory import (
    DDS_TOPIC,
    FixedClock,
    InMemoryCounterStore,
    InMemoryDeadLetters,
    InMemoryPipeline,
    InMemoryRawEventStore,
    InMemoryTopics,
    InMemoryVaultStore,
    Pipeline,
)
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.migrations import (
    LATEST_VERSION,
    SchemaOutdated,
    check_schema,
    migrate,
    schema_version,
)
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.stores import (
    PostgresCounterStore,
    PostgresRawEventStore,
    PostgresVaultStore,
)
from dwh_adapters.postgres.tables import SATELLITE_TABLES, WAREHOUSE_TABLES, truncate_all
from dwh_core.counters import Contribution, CounterDelta, CounterUpdate
from dwh_core.enrichment import Catalog, enrich
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.layers import CdmService
from dwh_core.messages import InMessage
from dwh_core.orders import EnrichedOrder
from dwh_core.parsing import encode, parse_order
from dwh_core.ports import CounterStore, RawEvent, RawEventStore, VaultStore
from dwh_core.vault import (
    HUBS,
    LINKS,
    SATELLITES,
    Hub,
    Link,
    Satellite,
    SatelliteState,
    VaultRows,
    order_facts,
    satellite_changes,
    vault_rows,
)
from dwh_core.versions import Version, content_hash
from tests.support.builders import BASE_TIME, MENU_A, MENU_B, order, restaurant, to_bytes, user
from tests.support.databases import fresh_database as throwaway_database
from tests.support.oracle import expected_marts
from tests.support.pipeline import dictionaries_of

pytestmark = pytest.mark.integration

Connection = psycopg.Connection[TupleRow]
Row = tuple[Any, ...]
T0 = datetime(2023, 4, 1, 12, 0, 0)
T1 = T0 + timedelta(hours=1)
SOURCE = "stg-service-orders"


# --- the database -----------------------------------------------------------------


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


def select(conn: Connection, query: str, *params: object) -> list[Row]:
    return conn.execute(sql.SQL(query), params).fetchall()


# --- migrations -----------------------------------------------------------------------


def test_migrating_again_applies_nothing_and_the_versions_are_recorded(db: Connection) -> None:
    assert migrate(db) == []
    assert select(db, "SELECT version, name FROM public.dwh_schema_migrations ORDER BY 1") == [
        (1, "initial"),
        (2, "exact_values_and_ties"),
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

    assert sorted(applied) == [[], ["0001_initial", "0002_exact_values_and_ties"]]
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
    """Every DDS table and column the dwh_core.vault specs name, with its type."""
    load = {"load_dt": "timestamp", "load_src": "varchar"}
    tables: dict[str, dict[str, str]] = {}
    for hub in HUBS.values():
        tables[hub.table] = {
            hub.pk: "uuid",
            **dict(zip(hub.key_columns, hub.key_types, strict=True)),
            **load,
        }
    for link in LINKS.values():
        tables[link.table] = {link.pk: "uuid", **{HUBS[h].pk: "uuid" for h in link.hubs}, **load}
    for sat in SATELLITES.values():
        tables[sat.table] = {
            HUBS[sat.hub].pk: "uuid",
            **dict(zip(sat.columns, sat.column_types, strict=True)),
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


# --- RawEventStore contract -----------------------------------------------------------


@frozen
class RawHarness:
    store: RawEventStore
    stored: Callable[[], dict[int, tuple[datetime, Any]]]
    """object_id -> (update_ts, payload as parsed JSON)"""


@pytest.fixture(params=["memory", "postgres"])
def raw(request: pytest.FixtureRequest) -> Iterator[RawHarness]:
    if request.param == "memory":
        memory = InMemoryRawEventStore()
        yield RawHarness(
            memory,
            lambda: {
                k: (e.version.update_ts, json.loads(e.message)["payload"])
                for k, e in memory.events.items()
            },
        )
        return
    db: Connection = request.getfixturevalue("db")
    with PostgresRawEventStore(request.getfixturevalue("settings")) as store:
        yield RawHarness(
            store,
            lambda: {
                object_id: (update_ts, payload)
                for object_id, update_ts, payload in select(
                    db, "SELECT object_id, update_ts, payload FROM stg.order_events"
                )
            },
        )


def event(object_id: int, minute: int, note: str = "") -> RawEvent:
    """A version whose tie-break is its note (any bytes order the same way)."""
    payload = {"minute": minute, "note": note, "name": 'Салат «Цезарь»; с "курицей"'}
    return RawEvent(
        object_id=object_id,
        object_type="order",
        sent_dttm=T0 + timedelta(minutes=minute, seconds=5),
        version=Version(T0 + timedelta(minutes=minute), note.encode()),
        message=json.dumps({"object_id": object_id, "payload": payload}, ensure_ascii=False),
    )


def test_raw_events_keep_the_newest_version_whatever_the_arrival_order(raw: RawHarness) -> None:
    raw.store.save([event(1, 10), event(1, 30), event(1, 20), event(2, 5)])
    raw.store.save([event(1, 25), event(2, 1)])
    raw.store.save([event(2, 7)])

    stored = raw.stored()
    assert {key: value[0] for key, value in stored.items()} == {
        1: T0 + timedelta(minutes=30),
        2: T0 + timedelta(minutes=7),
    }
    assert stored[1][1]["name"] == 'Салат «Цезарь»; с "курицей"'


def test_raw_events_keep_the_winner_of_the_tie_break_at_equal_update_ts(raw: RawHarness) -> None:
    raw.store.save([event(1, 10, "b"), event(1, 10, "c"), event(1, 10, "a")])
    raw.store.save([event(1, 10, "b")])
    assert raw.stored()[1][1]["note"] == "c"
    raw.store.save([event(1, 10, "d")])
    assert raw.stored()[1][1]["note"] == "d"


def test_stored_payloads_keep_numbers_no_python_float_holds_exactly(
    settings: PgSettings, db: Connection
) -> None:
    huge = "123456789012345678901234567890.000000000000000000001"
    message = '{"object_id": 1, "payload": {"tip": ' + huge + ', "big": 18446744073709551616}}'
    with PostgresRawEventStore(settings) as store:
        store.save([RawEvent(1, "order", T0, Version(T0, b""), message)])
    [(tip, big)] = select(
        db, "SELECT payload->>'tip', payload->>'big' FROM stg.order_events WHERE object_id = 1"
    )
    assert (tip, big) == (huge, "18446744073709551616")


def test_raw_events_of_many_orders_in_one_batch_are_each_kept_once(raw: RawHarness) -> None:
    rng = random.Random(7)
    events = [event(rng.randrange(50), rng.randrange(100), str(n)) for n in range(500)]
    raw.store.save(events)
    raw.store.save(events[::-1])

    newest = {
        e.object_id: max(x.version for x in events if x.object_id == e.object_id).update_ts
        for e in events
    }
    assert {key: value[0] for key, value in raw.stored().items()} == newest


# --- VaultStore contract --------------------------------------------------------------


@frozen
class VaultHarness:
    store: VaultStore
    tables: Callable[[], dict[str, list[Row]]]
    """Every DDS table (states included) as sorted rows in the statement's columns:
    hubs (pk, *values, load_dt, load_src), links (pk, *hub pks, load_dt, load_src),
    satellites (hub pk, *values, hashdiff, source_ts, load_dt, load_src), and
    ``satellite_state`` (name, hub pk, hashdiff, source_ts)."""


def memory_tables(store: InMemoryVaultStore) -> dict[str, list[Row]]:
    tables: dict[str, list[Row]] = {}
    for name, hubs in store.hubs.items():
        tables[HUBS[name].table] = [(h.pk, *h.values, h.load_dt, h.load_src) for h in hubs.values()]
    for name, links in store.links.items():
        tables[LINKS[name].table] = [
            (k.pk, *k.hub_pks, k.load_dt, k.load_src) for k in links.values()
        ]
    for name, by_key in store.satellites.items():
        tables[SATELLITES[name].table] = [
            (s.hub_pk, *s.values, s.hashdiff, s.source_ts, s.load_dt, s.load_src)
            for history in by_key.values()
            for s in history
        ]
    tables["satellite_state"] = [
        (s.name, s.hub_pk, s.hashdiff, s.source_ts) for s in store.states.values()
    ]
    return {table: sorted(rows) for table, rows in tables.items() if rows}


def postgres_tables(conn: Connection) -> dict[str, list[Row]]:
    columns = {
        **{h.table: [h.pk, *h.key_columns, "load_dt", "load_src"] for h in HUBS.values()},
        **{
            k.table: [k.pk, *(HUBS[h].pk for h in k.hubs), "load_dt", "load_src"]
            for k in LINKS.values()
        },
        **{
            s.table: [
                HUBS[s.hub].pk,
                *s.columns,
                s.hashdiff_column,
                "source_ts",
                "load_dt",
                "load_src",
            ]
            for s in SATELLITES.values()
        },
        "satellite_state": ["satellite", "hub_pk", "hashdiff", "source_ts"],
    }
    tables = {}
    for table, names in columns.items():
        query = sql.SQL("SELECT {} FROM dds.{}").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(table)
        )
        rows = sorted(conn.execute(query).fetchall())
        if rows:
            tables[table] = rows
    return tables


@pytest.fixture(params=["memory", "postgres"])
def vault(request: pytest.FixtureRequest) -> Iterator[VaultHarness]:
    if request.param == "memory":
        memory = InMemoryVaultStore()
        yield VaultHarness(memory, lambda: memory_tables(memory))
        return
    db: Connection = request.getfixturevalue("db")
    with PostgresVaultStore(request.getfixturevalue("settings")) as store:
        yield VaultHarness(store, lambda: postgres_tables(db))


USERS = [user(n) for n in range(1, 8)]
RESTAURANTS = [restaurant(1, MENU_A), restaurant(2, MENU_B)]
CATALOG = Catalog({doc["_id"]: to_bytes(doc) for doc in [*USERS, *RESTAURANTS]})


def enriched(
    object_id: int, items: list[int], status: str = "CLOSED", second: int = 60, user_number: int = 0
) -> EnrichedOrder:
    document = order(object_id, USERS[user_number]["_id"], RESTAURANTS[0], items, status, second)
    raw = to_bytes(document)
    return enrich(parse_order(raw), CATALOG, content_hash(raw))


def save_orders(
    store: VaultStore, orders: list[EnrichedOrder], load_dt: datetime = T0
) -> list[SatelliteState]:
    """What DdsService does with a batch; the states it stored."""
    rows = vault_rows(orders, load_dt, SOURCE)
    with store.transaction() as transaction:
        states = transaction.satellite_states({(s.name, s.hub_pk) for s in rows.satellites})
        changes = satellite_changes(rows.satellites, states)
        transaction.save(VaultRows(rows.hubs, rows.links, changes.rows), changes.states)
    return changes.states


def test_hubs_and_links_are_stored_once_and_the_first_load_wins(vault: VaultHarness) -> None:
    save_orders(vault.store, [enriched(1, [0, 1]), enriched(2, [1, 3])], load_dt=T0)
    first = vault.tables()
    save_orders(vault.store, [enriched(2, [1, 3]), enriched(1, [0, 1])], load_dt=T1)

    after = vault.tables()
    tables = [spec.table for spec in HUBS.values()] + [spec.table for spec in LINKS.values()]
    for table in tables:
        assert after[table] == first[table], table
    assert {row[-2] for table in tables for row in after[table]} == {T0}
    assert len(after["h_product"]) == 3
    assert len(after["l_order_product"]) == 4


def test_satellite_states_returns_what_save_stored(vault: VaultHarness) -> None:
    stored = save_orders(vault.store, [enriched(1, [0, 2]), enriched(2, [2], "CANCELLED")])
    unknown = ("order_status", hash_key(999))

    with vault.store.transaction() as transaction:
        states = transaction.satellite_states({*((s.name, s.hub_pk) for s in stored), unknown})

    assert states == {(s.name, s.hub_pk): s for s in stored}
    assert (
        len(stored) == 2 + 2 + 1 + 1 + 2
    )  # two orders' cost and status, user, restaurant, products
    assert sorted(vault.tables()["satellite_state"]) == sorted(
        (s.name, s.hub_pk, s.hashdiff, s.source_ts) for s in stored
    )


def test_a_newer_version_adds_a_satellite_row_and_moves_the_state(vault: VaultHarness) -> None:
    save_orders(vault.store, [enriched(1, [0], "CLOSED", second=60)])
    save_orders(vault.store, [enriched(1, [0], "CANCELLED", second=120)])
    save_orders(vault.store, [enriched(1, [0], "CLOSED", second=60)])  # stale, adds nothing

    statuses = sorted((row[3], row[1]) for row in vault.tables()["s_order_status"])
    assert statuses == [
        (BASE_TIME + timedelta(seconds=60), "CLOSED"),
        (BASE_TIME + timedelta(seconds=120), "CANCELLED"),
    ]
    with vault.store.transaction() as transaction:
        state = transaction.satellite_states({("order_status", hash_key(1))})
    assert state[("order_status", hash_key(1))].hashdiff == hashdiff("CANCELLED")
    assert len(vault.tables()["s_order_cost"]) == 1


def test_a_vault_transaction_that_raises_leaves_nothing(vault: VaultHarness) -> None:
    rows = vault_rows([enriched(1, [0, 1])], T0, SOURCE)
    states = satellite_changes(rows.satellites, {}).states
    with pytest.raises(RuntimeError, match="boom"), vault.store.transaction() as transaction:
        transaction.save(rows, states)
        raise RuntimeError("boom")

    assert vault.tables() == {}
    with vault.store.transaction() as transaction:
        assert transaction.satellite_states({(s.name, s.hub_pk) for s in states}) == {}


def test_the_vault_store_stages_its_batches_again_after_a_rollback_or_a_reconnect(
    settings: PgSettings, db: Connection
) -> None:
    """The staging tables are temporary: made when the store connects, gone with the
    connection, left empty by a commit and by a rollback alike."""
    with PostgresVaultStore(settings) as store:
        rows = vault_rows([enriched(1, [0, 1])], T0, SOURCE)
        states = satellite_changes(rows.satellites, {}).states
        with pytest.raises(RuntimeError, match="boom"), store.transaction() as transaction:
            transaction.save(rows, states)
            raise RuntimeError("boom")

        save_orders(store, [enriched(1, [0, 1])])
        store.close()  # as after a lost connection: the next transaction opens a new one
        save_orders(store, [enriched(2, [1, 3])])

        with store.transaction() as transaction:
            # the store's own session: temporary tables are visible to it alone
            staged = transaction._conn.execute(
                "SELECT count(*) FROM pg_temp.staging_dds_l_order_product"
            ).fetchone()
    assert staged == (0,)
    orders = select(db, "SELECT order_id FROM dds.h_order ORDER BY order_id")
    assert orders == [(1,), (2,)]
    assert select(db, "SELECT count(*) FROM dds.l_order_product") == [(4,)]


def test_a_vault_transaction_on_postgres_saves_once(settings: PgSettings, db: Connection) -> None:
    rows = vault_rows([enriched(1, [0])], T0, SOURCE)
    states = satellite_changes(rows.satellites, {}).states
    with (
        PostgresVaultStore(settings) as store,
        pytest.raises(RuntimeError, match="saves once"),
        store.transaction() as transaction,
    ):
        transaction.save(rows, states)
        transaction.save(rows, states)
    assert select(db, "SELECT count(*) FROM dds.h_order") == [(0,)]


def test_keys_claimed_but_not_saved_leave_no_placeholder_rows(
    settings: PgSettings, db: Connection
) -> None:
    """Shared satellite keys and order keys are claimed with placeholder rows so that
    two replicas cannot both take them for new; what a transaction claimed and did not
    save is released before it commits."""
    product = ("product_names", hash_key("a product no order has"))
    with PostgresVaultStore(settings) as vault, vault.transaction() as transaction:
        assert transaction.satellite_states({product}) == {}
    with PostgresCounterStore(settings) as store, store.transaction() as counters:
        assert counters.ledger({hash_key(424242)}) == {}
    assert select(db, "SELECT count(*) FROM dds.satellite_state") == [(0,)]
    assert select(db, "SELECT count(*) FROM cdm.order_contributions") == [(0,)]


# --- CounterStore contract ------------------------------------------------------------


@frozen
class CounterHarness:
    store: CounterStore
    counts: Callable[[], tuple[dict[tuple[uuid.UUID, uuid.UUID], int], ...]]
    """(product counts, category counts), rows with 0 left out"""
    names: Callable[[], dict[uuid.UUID, str]]
    """product or category key -> the name stored with its counters"""


@pytest.fixture(params=["memory", "postgres"])
def counters(request: pytest.FixtureRequest) -> Iterator[CounterHarness]:
    if request.param == "memory":
        memory = InMemoryCounterStore()
        yield CounterHarness(
            memory, lambda: (memory.product_counts(), memory.category_counts()), memory.names
        )
        return
    db: Connection = request.getfixturevalue("db")
    settings = request.getfixturevalue("settings")
    with PostgresCounterStore(settings) as store, PostgresMarts(settings) as marts:
        yield CounterHarness(
            store,
            lambda: (marts.product_counts(), marts.category_counts()),
            lambda: dict(
                select(
                    db,
                    "SELECT product_id, product_name FROM cdm.user_product_counters UNION"
                    " SELECT category_id, category_name FROM cdm.user_category_counters",
                )
            ),
        )


ALICE, BOB = hash_key("alice"), hash_key("bob")
SOUP, PIZZA = hash_key("soup"), hash_key("pizza")
DISHES = hash_key("Dishes")


def contribution(
    order_id: int, user_key: uuid.UUID, minute: int, *products: uuid.UUID
) -> Contribution:
    return Contribution(
        hash_key(order_id),
        user_key,
        Version(T0 + timedelta(minutes=minute), b""),
        frozenset(products),
        frozenset({DISHES}) if products else frozenset(),
    )


def apply(store: CounterStore, update: CounterUpdate) -> None:
    with store.transaction() as transaction:
        transaction.apply(update)


def test_the_ledger_returns_the_contributions_applied(counters: CounterHarness) -> None:
    rows = [
        contribution(1, ALICE, 1, SOUP, PIZZA),
        contribution(2, BOB, 2),
        contribution(3, BOB, 3, SOUP),
    ]
    apply(counters.store, CounterUpdate([], [], sorted(rows, key=lambda c: c.order_key)))

    with counters.store.transaction() as transaction:
        ledger = transaction.ledger({hash_key(1), hash_key(2), hash_key(3), hash_key(4)})
    assert ledger == {row.order_key: row for row in rows}

    replaced = contribution(1, ALICE, 9)
    apply(counters.store, CounterUpdate([], [], [replaced]))
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {hash_key(1): replaced}


def test_counter_deltas_add_up_and_the_newest_name_is_kept(counters: CounterHarness) -> None:
    def update(delta: int, name: str | None) -> CounterUpdate:
        return CounterUpdate(
            sorted(
                [CounterDelta(ALICE, SOUP, name, delta), CounterDelta(BOB, SOUP, name, 1)],
                key=lambda d: (d.user_key, d.key),
            ),
            [CounterDelta(ALICE, DISHES, "Dishes", delta)],
            [],
        )

    apply(counters.store, update(2, "Soup"))
    apply(counters.store, update(1, None))
    apply(counters.store, update(-1, "Borscht"))

    products, categories = counters.counts()
    assert products == {(ALICE, SOUP): 2, (BOB, SOUP): 3}
    assert categories == {(ALICE, DISHES): 2}
    assert counters.names() == {SOUP: "Borscht", DISHES: "Dishes"}


def test_a_counter_that_falls_to_zero_is_left_out_of_the_counts(counters: CounterHarness) -> None:
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, "Soup", 1)], [], []))
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, None, -1)], [], []))

    assert counters.counts() == ({}, {})


def test_a_counter_never_falls_below_zero(counters: CounterHarness) -> None:
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, "Soup", 1)], [], []))
    with pytest.raises((ValueError, psycopg.errors.CheckViolation)):
        apply(
            counters.store,
            CounterUpdate(
                [CounterDelta(ALICE, PIZZA, "Pizza", 1), CounterDelta(ALICE, SOUP, None, -2)],
                [],
                [contribution(1, ALICE, 1)],
            ),
        )

    assert counters.counts() == ({(ALICE, SOUP): 1}, {})
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {}


def test_a_decrement_of_a_counter_that_does_not_exist_is_refused(
    counters: CounterHarness,
) -> None:
    with pytest.raises(ValueError, match="counter below zero"):
        apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, None, -1)], [], []))

    assert counters.counts() == ({}, {})


def test_a_counter_transaction_that_raises_changes_nothing(counters: CounterHarness) -> None:
    with pytest.raises(RuntimeError, match="boom"), counters.store.transaction() as transaction:
        transaction.apply(
            CounterUpdate(
                [CounterDelta(ALICE, SOUP, "Soup", 1)],
                [CounterDelta(ALICE, DISHES, "Dishes", 1)],
                [contribution(1, ALICE, 1, SOUP)],
            )
        )
        raise RuntimeError("boom")

    assert counters.counts() == ({}, {})
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {}


# --- connection lifecycle -------------------------------------------------------------


def test_a_store_reconnects_on_the_next_call_after_its_connection_is_lost(
    settings: PgSettings, db: Connection
) -> None:
    name = f"dwh-test-{uuid.uuid4().hex[:12]}"
    with PostgresRawEventStore(attrs.evolve(settings, application_name=name)) as store:
        store.save([event(1, 1)])
        select(
            db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            name,
        )

        with pytest.raises(psycopg.OperationalError):
            store.save([event(1, 2)])
        store.save([event(1, 3)])

    assert select(db, "SELECT update_ts FROM stg.order_events") == [(T0 + timedelta(minutes=3),)]


def test_a_store_opens_no_connection_until_it_is_used() -> None:
    unreachable = PgSettings("127.0.0.1", 1, "nowhere", "nobody", "secret")
    with PostgresVaultStore(unreachable), PostgresCounterStore(unreachable):
        pass
    assert "secret" not in repr(unreachable) and "secret" not in unreachable.describe()


# --- the pipeline on PostgreSQL -------------------------------------------------------


def order_history(rng: random.Random, orders: int) -> list[bytes]:
    """Orders with several versions (closed, cancelled after closing, in progress),
    shuffled, with duplicates."""
    histories = [
        ["CLOSED"],
        ["COOKING", "CLOSED"],
        ["CLOSED", "CANCELLED"],
        ["CANCELLED"],
        ["OPEN"],
    ]
    messages = []
    for object_id in range(1000, 1000 + orders):
        customer = rng.choice(USERS)
        place = rng.choice(RESTAURANTS)
        items = [rng.randrange(len(place["menu"])) for _ in range(rng.randint(1, 4))]
        for n, status in enumerate(rng.choice(histories)):
            document = order(object_id, customer["_id"], place, items, status, 100 + 60 * n)
            messages.append(to_bytes(document, ensure_ascii=rng.random() < 0.5))
    messages += rng.sample(messages, len(messages) // 5)
    rng.shuffle(messages)
    return messages


def test_the_pipeline_on_postgres_matches_the_oracle_and_a_replay_changes_nothing(
    settings: PgSettings, db: Connection
) -> None:
    messages = order_history(random.Random(2023), orders=300)
    with (
        PostgresRawEventStore(settings) as events,
        PostgresVaultStore(settings) as vault,
        PostgresCounterStore(settings) as counters,
        PostgresMarts(settings) as marts,
    ):
        dictionaries = dictionaries_of(USERS, RESTAURANTS)
        pipeline = Pipeline(dictionaries, events, vault, counters, FixedClock(BASE_TIME))
        pipeline.feed(messages)
        pipeline.run(iter([37] * len(messages)))

        products, categories = expected_marts(messages, RESTAURANTS)
        assert marts.product_counts() == dict(products)
        assert marts.category_counts() == dict(categories)
        assert not pipeline.dead_letters.letters

        memory = InMemoryPipeline(dictionaries_of(USERS, RESTAURANTS), FixedClock(BASE_TIME))
        memory.feed(messages)
        memory.run(iter([37] * len(messages)))
        counts = marts.row_counts()
        for sat in SATELLITES.values():
            assert counts[f"dds.{sat.table}"] == sum(
                len(history) for history in memory.vault.satellites[sat.name].values()
            ), sat.table
        for hub in HUBS.values():
            assert counts[f"dds.{hub.table}"] == len(memory.vault.hubs[hub.name]), hub.table
        assert counts["stg.order_events"] == len(memory.events.events) == 300

        pipeline.replay()
        pipeline.run(iter([53] * len(messages)))

        assert marts.row_counts() == counts
        assert marts.product_counts() == dict(products)
        assert marts.category_counts() == dict(categories)


# --- edge values, markers and ties on PostgreSQL (CONTRACT.md §7) ------------------------


def postgres_pipeline(stack: Any, settings: PgSettings) -> Pipeline:
    events = stack.enter_context(PostgresRawEventStore(settings))
    vault = stack.enter_context(PostgresVaultStore(settings))
    counters = stack.enter_context(PostgresCounterStore(settings))
    return Pipeline(
        dictionaries_of(USERS, RESTAURANTS), events, vault, counters, FixedClock(BASE_TIME)
    )


@pytest.mark.parametrize("stamp", ["0001-01-01 00:00:00", "9999-12-31 23:59:59"])
def test_orders_at_the_first_and_last_timestamps_count_once_under_replays(
    settings: PgSettings, db: Connection, stamp: str
) -> None:
    document = order(11, USERS[0]["_id"], RESTAURANTS[0], [0, 1], "CLOSED", 60)
    document["payload"]["update_ts"] = stamp
    with contextlib.ExitStack() as stack:
        pipeline = postgres_pipeline(stack, settings)
        marts = stack.enter_context(PostgresMarts(settings))
        pipeline.feed([to_bytes(document)] * 3)
        for _ in range(3):
            pipeline.run(iter([1] * 10))
            pipeline.replay()
        products, categories = expected_marts([to_bytes(document)], RESTAURANTS)
        assert marts.product_counts() == dict(products)
        assert marts.category_counts() == dict(categories)
    assert select(db, "SELECT count(*) FROM cdm.order_contributions WHERE update_ts IS NULL") == [
        (0,)
    ]


def test_money_past_32_bits_is_stored_exactly(settings: PgSettings, db: Connection) -> None:
    documents = []
    for object_id, money in ((21, 2**31), (22, 2**40), (23, 10**14 - 1)):
        document = order(object_id, USERS[0]["_id"], RESTAURANTS[0], [0], "CLOSED", 60)
        document["payload"]["cost"] = document["payload"]["payment"] = money
        documents.append(to_bytes(document))
    with contextlib.ExitStack() as stack:
        pipeline = postgres_pipeline(stack, settings)
        pipeline.feed(documents)
        pipeline.run()
        assert not pipeline.dead_letters.letters
    stored = select(
        db,
        "SELECT h.order_id, s.cost, s.payment, s.hk_order_cost_hashdiff"
        " FROM dds.s_order_cost s JOIN dds.h_order h USING (h_order_pk) ORDER BY 1",
    )
    assert [(oid, int(cost), int(payment), digest) for oid, cost, payment, digest in stored] == [
        (oid, money, money, hashdiff(money, money))
        for oid, money in ((21, 2**31), (22, 2**40), (23, 10**14 - 1))
    ]


def current_satellites(conn: Connection) -> dict[str, list[Row]]:
    """Each satellite key's current row (greatest source_ts), without load columns."""
    current = {}
    for spec in SATELLITES.values():
        pk = HUBS[spec.hub].pk
        query = sql.SQL(
            "SELECT DISTINCT ON ({pk}) {pk}, {columns}, {hashdiff} FROM dds.{table}"
            " ORDER BY {pk}, source_ts DESC"
        ).format(
            pk=sql.Identifier(pk),
            columns=sql.SQL(", ").join(sql.Identifier(column) for column in spec.columns),
            hashdiff=sql.Identifier(spec.hashdiff_column),
            table=sql.Identifier(spec.table),
        )
        current[spec.table] = conn.execute(query).fetchall()
    return current


def test_every_arrival_order_of_tied_versions_gives_the_same_warehouse_on_postgres(
    settings: PgSettings, db: Connection
) -> None:
    # One update_ts: two CLOSED versions with other items, a CANCELLED one, a COOKING one.
    versions = [
        to_bytes(order(31, USERS[1]["_id"], RESTAURANTS[0], items, status, 60))
        for status, items in (("CLOSED", [0, 1]), ("CLOSED", [2]), ("CANCELLED", [0]))
    ] + [to_bytes(order(32, USERS[1]["_id"], RESTAURANTS[1], [0], "COOKING", 60))]
    results = []
    for permutation in itertools.permutations(versions):
        truncate_all(db)
        with contextlib.ExitStack() as stack:
            pipeline = postgres_pipeline(stack, settings)
            marts = stack.enter_context(PostgresMarts(settings))
            pipeline.feed(permutation)
            pipeline.run(iter([1, 2, 1, 5]))
            results.append(
                (
                    select(
                        db, "SELECT object_id, payload, tiebreak FROM stg.order_events ORDER BY 1"
                    ),
                    current_satellites(db),
                    marts.product_counts(),
                    marts.category_counts(),
                )
            )
    first, *others = results
    for other in others:
        for part, (got, want) in enumerate(zip(other, first, strict=True)):
            assert got == want, part
    [cancelled] = [row for row in first[0] if row[0] == 31]
    assert cancelled[1]["final_status"] == "CANCELLED"


def test_the_marts_read_side_names_users_products_and_categories(
    settings: PgSettings, db: Connection
) -> None:
    orders = [
        enriched(1, [0, 3], user_number=0),
        enriched(2, [0], user_number=0),
        enriched(3, [3], user_number=1),
    ]
    with PostgresVaultStore(settings) as vault, PostgresCounterStore(settings) as counters:
        save_orders(vault, orders)
        layer = CdmService(counters, InMemoryDeadLetters(InMemoryTopics()))
        layer.handle(
            [InMessage(encode(order_facts(o)), DDS_TOPIC, 0, n) for n, o in enumerate(orders)]
        )

    with PostgresMarts(settings) as marts:
        assert marts.user_products(USERS[0]["_id"]) == [
            ("Пицца Маргарита", 2),
            ('Пицца "Четыре сыра"', 1),
        ]
        assert marts.user_categories(USERS[0]["_id"]) == [("Пицца", 2)]
        assert marts.top_users("пицца", limit=5) == [
            (USERS[0]["name"], USERS[0]["login"], 2),
            (USERS[1]["name"], USERS[1]["login"], 1),
        ]
        assert marts.top_users("Пицца", limit=1) == [(USERS[0]["name"], USERS[0]["login"], 2)]
        assert marts.top_categories(limit=2) == [
            (USERS[0]["name"], USERS[0]["login"], "Пицца", 2),
            (USERS[1]["name"], USERS[1]["login"], "Пицца", 1),
        ]
        assert set(marts.satellite_row_counts()) == set(SATELLITE_TABLES)
        assert marts.row_counts()["cdm.order_contributions"] == 3


# --- concurrency ----------------------------------------------------------------------


def shared_rows(round_number: int, numbers: list[int], shift_s: int = 0) -> VaultRows:
    """Products (with categories, their links and names) that every replica writes, as
    seen in orders ``shift_s`` seconds apart."""
    source_ts = T0 + timedelta(minutes=round_number, seconds=shift_s)
    rows = VaultRows()
    for number in numbers:
        product_id = f"product-{round_number}-{number}"
        category_name = f"category-{round_number}-{number % 17}"
        product = Hub("product", hash_key(product_id), (product_id,), T0, SOURCE)
        category = Hub("category", hash_key(category_name), (category_name,), T0, SOURCE)
        rows.hubs.extend((product, category))
        rows.links.append(
            Link(
                "product_category",
                hash_key(product_id, category_name),
                (product.pk, category.pk),
                T0,
                SOURCE,
            )
        )
        rows.satellites.append(
            Satellite(
                "product_names",
                product.pk,
                (product_id,),
                hashdiff(product_id),
                source_ts,
                b"",
                T0,
                SOURCE,
            )
        )
    return rows


def test_two_replicas_writing_the_same_shared_hubs_at_once_both_commit(
    settings: PgSettings, db: Connection
) -> None:
    rounds, size = 5, 2000
    barrier = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []

    def replica(numbers: list[int], shift_s: int) -> None:
        try:
            with PostgresVaultStore(settings) as store:
                for round_number in range(rounds):
                    rows = shared_rows(round_number, numbers, shift_s)
                    barrier.wait()
                    with store.transaction() as transaction:
                        states = transaction.satellite_states(
                            {(s.name, s.hub_pk) for s in rows.satellites}
                        )
                        changes = satellite_changes(rows.satellites, states)
                        transaction.save(
                            VaultRows(rows.hubs, rows.links, changes.rows), changes.states
                        )
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    # Overlapping, and listed in opposite orders: unsorted writes would deadlock. The two
    # replicas see the same names in different orders (source_ts a second apart): the
    # claimed satellite states make the second wait and add no second row per product.
    threads = [
        threading.Thread(target=replica, args=(list(range(0, size * 3 // 4)), 0)),
        threading.Thread(target=replica, args=(list(range(size - 1, size // 4 - 1, -1)), 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == [], failures
    counts = {
        table: count
        for (table, count) in select(
            db,
            "SELECT 'h_product', count(*) FROM dds.h_product"
            " UNION ALL SELECT 's_product_names', count(*) FROM dds.s_product_names"
            " UNION ALL SELECT 'satellite_state', count(*) FROM dds.satellite_state",
        )
    }
    assert counts == {
        "h_product": rounds * size,
        "s_product_names": rounds * size,
        "satellite_state": rounds * size,
    }


def test_truncate_all_empties_every_warehouse_table(settings: PgSettings, db: Connection) -> None:
    with PostgresVaultStore(settings) as vault:
        save_orders(vault, [enriched(1, [0])])
    truncate_all(db)
    with PostgresMarts(settings) as marts:
        assert marts.row_counts() == dict.fromkeys(WAREHOUSE_TABLES, 0)
