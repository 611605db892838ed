"""The VaultStore contract, run against the in-memory store and the PostgreSQL one (so
the fake cannot drift), what only PostgreSQL has to show (its staging tables, one save
per transaction), and two replicas writing the same shared hubs at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from attrs import frozen
from psycopg import sql

from dwh_adapters.memory import InMemoryVaultStore
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.ports import VaultStore
from dwh_core.vault import (
    HUBS,
    LINKS,
    SATELLITES,
    Hub,
    Link,
    Satellite,
    VaultRows,
    satellite_changes,
    vault_rows,
)
from tests.support.builders import BASE_TIME
from tests.support.stores import SOURCE, T0, Connection, Row, enriched, save_orders, select

pytestmark = pytest.mark.integration

T1 = T0 + timedelta(hours=1)


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
