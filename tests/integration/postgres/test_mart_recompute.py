"""The marts recomputed from the vault in SQL (:mod:`dwh_adapters.postgres.recompute`):
after the real pipeline on PostgreSQL they equal the stored marts and the oracle; a
tampered counter, a deleted row and a changed ledger row are listed exactly; a rebuild
repairs them, changes nothing when there is nothing to repair, and waits for a CDM
transaction in flight."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from typing import Any

import pytest

from dwh_adapters.memory import FixedClock
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.recompute import (
    CounterDifference,
    RebuildResult,
    TableWrites,
    mart_differences,
    rebuild_marts,
    recomputed_marts,
    vault_ambiguities,
)
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tables import truncate_all
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_core.hashing import hash_key
from dwh_workers import warehouse_queries
from dwh_workers.errors import OperatorError
from dwh_workers.in_process import Pipeline
from dwh_workers.oracle import expected_marts
from tests.support.builders import BASE_TIME, order, to_bytes
from tests.support.pipeline import dictionaries_of
from tests.support.stores import RESTAURANTS, USERS, Connection, Row, select

pytestmark = pytest.mark.integration

CDM_TABLES = {
    "cdm.user_product_counters": "user_id, product_id",
    "cdm.user_category_counters": "user_id, category_id",
    "cdm.order_contributions": "order_key",
}

# Per order, its versions as (final status, seconds after BASE_TIME, cost added): in
# order, a refund, ties decided by the status's rank (CANCELLED over CLOSED, CLOSED over
# a status outside the lifecycle) and by the digest (same status, other content), and
# an older CLOSED version that the shuffle may deliver after a newer CANCELLED one.
HISTORIES: list[list[tuple[str, int, int]]] = [
    [("CLOSED", 100, 0)],
    [("COOKING", 100, 0), ("CLOSED", 160, 0)],
    [("CLOSED", 100, 0), ("CANCELLED", 160, 0)],
    [("CLOSED", 100, 0), ("CANCELLED", 100, 0)],
    [("CLOSED", 100, 0), ("REFUNDED", 100, 0)],
    [("CLOSED", 100, 0), ("CLOSED", 100, 1)],
    [("CLOSED", 40, 0), ("CANCELLED", 100, 0)],
    [("OPEN", 100, 0)],
]


def feed(rng: random.Random, orders: int) -> list[bytes]:
    """Orders of several versions (an order's items and user never change, as in the
    feed), some with ties, shuffled, with duplicates."""
    messages = []
    for object_id in range(5000, 5000 + orders):
        customer = rng.choice(USERS)
        place = rng.choice(RESTAURANTS)
        items = [rng.randrange(len(place["menu"])) for _ in range(rng.randint(1, 4))]
        for status, second, extra_cost in rng.choice(HISTORIES):
            document = order(object_id, customer["_id"], place, items, status, second)
            document["payload"]["cost"] += extra_cost
            messages.append(to_bytes(document, ensure_ascii=rng.random() < 0.5))
    messages += rng.sample(messages, len(messages) // 5)
    rng.shuffle(messages)
    return messages


def run_pipeline(settings: PgSettings, messages: list[bytes], seed: int = 0) -> None:
    """STG, DDS and CDM over the messages, on the PostgreSQL stores, in batches of
    random sizes."""
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        pipeline = Pipeline(
            dictionaries_of(USERS, RESTAURANTS),
            stack.enter_context(PostgresRawEventStore(settings)),
            stack.enter_context(PostgresVaultStore(settings)),
            stack.enter_context(PostgresCounterStore(settings)),
            FixedClock(BASE_TIME),
        )
        pipeline.feed(messages)
        pipeline.run(iter([rng.randint(1, 60) for _ in range(len(messages) * 3)]))
        assert not pipeline.dead_letters.letters


def cdm_contents(db: Connection) -> dict[str, list[Row]]:
    return {
        table: select(db, f"SELECT * FROM {table} ORDER BY {key}")
        for table, key in CDM_TABLES.items()
    }


@pytest.fixture
def warehouse(settings: PgSettings, db: Connection) -> list[bytes]:
    """The warehouse after 200 orders through the pipeline; the messages."""
    messages = feed(random.Random(2024), orders=200)
    run_pipeline(settings, messages, seed=1)
    return messages


def test_after_refunds_out_of_order_versions_and_ties_the_recomputation_equals_the_marts_and_the_oracle(
    settings: PgSettings, db: Connection, warehouse: list[bytes]
) -> None:
    differences = mart_differences(db)

    assert differences.empty
    assert differences.products.rows == differences.categories.rows == ()
    assert differences.ledger.rows == ()
    assert not differences.ambiguities
    assert differences.products.names_differing == differences.categories.names_differing == 0
    # Every stored row was compared: the rows of 0 (refunds) count as no row.
    assert (
        differences.products.compared
        == select(db, "SELECT count(*) FROM cdm.user_product_counters")[0][0]
    )
    assert (
        differences.categories.compared
        == select(db, "SELECT count(*) FROM cdm.user_category_counters")[0][0]
    )
    assert differences.ledger.compared == 200
    assert select(db, "SELECT count(*) > 0 FROM cdm.user_product_counters WHERE order_cnt = 0") == [
        (True,)
    ]

    products, categories = expected_marts(warehouse, RESTAURANTS)
    assert recomputed_marts(db) == (dict(products), dict(categories))
    with PostgresMarts(settings) as marts:
        assert marts.product_counts() == dict(products)
        assert marts.category_counts() == dict(categories)


def test_the_ties_are_decided_as_everywhere_else(settings: PgSettings, db: Connection) -> None:
    user = USERS[0]["_id"]
    versions = {  # object id: versions at one update_ts, and whether the order counts
        71: (["CLOSED", "CANCELLED"], False),
        72: (["REFUNDED", "CLOSED"], True),
        73: (["CLOSED", "CLOSED"], True),
        74: (["CANCELLED", "CLOSED", "COOKING"], False),
    }
    messages = []
    for object_id, (statuses, _) in versions.items():
        for n, status in enumerate(statuses):
            document = order(object_id, user, RESTAURANTS[0], [0, 2], status, 60)
            document["payload"]["cost"] += n
            messages.append(to_bytes(document))
    for permutation in (messages, messages[::-1]):
        truncate_all(db)
        run_pipeline(settings, permutation)

        assert mart_differences(db).empty
        counted = {
            order_id: counts
            for order_id, counts in select(
                db,
                "SELECT h.order_id, cardinality(c.products) > 0 FROM cdm.order_contributions c"
                " JOIN dds.h_order h ON h.h_order_pk = c.order_key",
            )
        }
        assert counted == {object_id: counts for object_id, (_, counts) in versions.items()}
        products, _ = expected_marts(permutation, RESTAURANTS)
        assert recomputed_marts(db)[0] == dict(products)
        assert set(products.values()) == {2}


def one(db: Connection, query: str, *params: object) -> Row:
    [row] = select(db, query, *params)
    return row


def test_verify_lists_exactly_the_tampered_rows_and_a_rebuild_repairs_them(
    settings: PgSettings, db: Connection, warehouse: list[bytes]
) -> None:
    # A counter moved, a category row deleted, a row the vault knows nothing of.
    counter_id, user_key, product_key, count = one(
        db,
        "SELECT id, user_id, product_id, order_cnt FROM cdm.user_product_counters"
        " WHERE order_cnt > 0 ORDER BY id LIMIT 1",
    )
    db.execute(
        "UPDATE cdm.user_product_counters SET order_cnt = order_cnt + 2 WHERE id = %s", [counter_id]
    )
    deleted_user, category_key, category_count = one(
        db,
        "DELETE FROM cdm.user_category_counters WHERE id = (SELECT min(id)"
        " FROM cdm.user_category_counters WHERE order_cnt > 0)"
        " RETURNING user_id, category_id, order_cnt",
    )
    stranger, unknown_product = uuid.uuid4(), uuid.uuid4()
    db.execute(
        "INSERT INTO cdm.user_product_counters (user_id, product_id, product_name, order_cnt)"
        " VALUES (%s, %s, 'Несуществующее', 4)",
        [stranger, unknown_product],
    )
    # The ledger: a product dropped, another user, a counted order made uncounted, a row
    # deleted.
    counted = [
        key
        for (key,) in select(
            db,
            "SELECT order_key FROM cdm.order_contributions WHERE cardinality(products) > 1"
            " ORDER BY order_key LIMIT 4",
        )
    ]
    fewer, other_user, uncounted, gone = counted
    db.execute(
        "UPDATE cdm.order_contributions SET products = products[1:1] WHERE order_key = %s",
        [fewer],
    )
    db.execute(
        "UPDATE cdm.order_contributions SET user_key = %s WHERE order_key = %s",
        [hash_key("someone else"), other_user],
    )
    db.execute(
        "UPDATE cdm.order_contributions SET products = '{}', categories = '{}',"
        " product_names = '{}' WHERE order_key = %s",
        [uncounted],
    )
    db.execute("DELETE FROM cdm.order_contributions WHERE order_key = %s", [gone])

    differences = mart_differences(db)

    assert not differences.empty
    assert {
        (row.user_key, row.key): (row.kind, row.stored, row.expected)
        for row in differences.products.rows
    } == {
        (user_key, product_key): ("count", count + 2, count),
        (stranger, unknown_product): ("extra", 4, 0),
    }
    assert differences.products.differing == 2
    [missing] = differences.categories.rows
    assert missing == CounterDifference(
        deleted_user,
        next(u["_id"] for u in USERS if hash_key(u["_id"]) == deleted_user),
        category_key,
        missing.name,
        missing.name,
        None,
        category_count,
    )
    assert missing.kind == "missing"
    assert {row.order_key: row.aspects for row in differences.ledger.rows} == {
        fewer: ("products",),
        other_user: ("user",),
        uncounted: ("counted",),
        gone: ("missing",),
    }
    assert differences.ledger.differing == 4
    assert differences.ledger.compared == 200
    assert all(row.order_id is not None for row in differences.ledger.rows)

    first = mart_differences(db, limit=1)
    assert len(first.products.rows) == len(first.ledger.rows) == 1
    assert (first.products.differing, first.ledger.differing) == (2, 4)

    result = rebuild_marts(db)

    assert result == RebuildResult(
        products=TableWrites("cdm.user_product_counters", inserted=0, updated=1, removed=1),
        categories=TableWrites("cdm.user_category_counters", inserted=1, updated=0, removed=0),
        ledger=TableWrites("cdm.order_contributions", inserted=1, updated=3, removed=0),
    )
    assert mart_differences(db).empty
    products, categories = expected_marts(warehouse, RESTAURANTS)
    with PostgresMarts(settings) as marts:
        assert marts.product_counts() == dict(products)
        assert marts.category_counts() == dict(categories)
    # The row the vault knows nothing of stays, at 0, as a counter that fell to 0 would.
    assert select(
        db,
        "SELECT product_name, order_cnt FROM cdm.user_product_counters WHERE user_id = %s",
        stranger,
    ) == [("Несуществующее", 0)]


def test_a_rebuild_of_a_consistent_warehouse_changes_nothing(
    db: Connection, warehouse: list[bytes]
) -> None:
    before = cdm_contents(db)

    result = rebuild_marts(db)

    assert result.rows_written == 0
    assert cdm_contents(db) == before


def test_a_rebuild_from_an_empty_cdm_writes_the_ledger_the_worker_wrote(
    db: Connection, warehouse: list[bytes]
) -> None:
    before = cdm_contents(db)
    db.execute(
        "TRUNCATE cdm.user_product_counters, cdm.user_category_counters, cdm.order_contributions"
    )

    result = rebuild_marts(db)

    after = cdm_contents(db)
    assert after["cdm.order_contributions"] == before["cdm.order_contributions"]
    assert result.ledger == TableWrites("cdm.order_contributions", 200, 0, 0)
    for table in ("cdm.user_product_counters", "cdm.user_category_counters"):
        # Without the ids, and the rows of 0 (refunds after the sale), which only the
        # worker's history makes.
        assert [row[1:] for row in after[table]] == [row[1:] for row in before[table] if row[4] > 0]
    assert result.rows_written == sum(len(rows) for rows in after.values())
    assert mart_differences(db).empty


def test_a_product_in_two_categories_is_an_ambiguity_and_a_rebuild_refuses_it_without_force(
    settings: PgSettings, db: Connection, warehouse: list[bytes]
) -> None:
    product, category = one(
        db,
        "SELECT h_product_pk, (SELECT h_category_pk FROM dds.h_category c"
        "  WHERE c.h_category_pk <> l.h_category_pk ORDER BY 1 LIMIT 1)"
        " FROM dds.l_product_category l ORDER BY 1 LIMIT 1",
    )
    db.execute(
        "INSERT INTO dds.l_product_category VALUES (%s, %s, %s, now(), 'test')",
        [uuid.uuid4(), product, category],
    )
    before = cdm_contents(db)

    assert vault_ambiguities(db).products_with_several_categories == 1
    assert mart_differences(db).ambiguities == vault_ambiguities(db)
    with pytest.raises(OperatorError, match="1 product\\(s\\) linked to several categories"):
        warehouse_queries.rebuild_marts(settings, force=False)
    assert cdm_contents(db) == before

    assert warehouse_queries.rebuild_marts(settings, force=True).rows_written > 0
    assert mart_differences(db).empty


def test_a_rebuild_needs_a_connection_with_no_transaction_open(db: Connection) -> None:
    with db.transaction(), pytest.raises(ValueError, match="no transaction open"):
        rebuild_marts(db)


def lock_waits(db: Connection, table: str) -> int:
    return int(
        one(
            db,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            table,
        )[0]
    )


def test_a_rebuild_waits_for_a_cdm_transaction_in_flight_and_then_sees_what_it_committed(
    settings: PgSettings, db: Connection, warehouse: list[bytes]
) -> None:
    results: list[Any] = []
    with connect(settings) as worker:
        # What a CDM batch holds until its commit: rows of the counters it moved.
        worker.execute(
            "UPDATE cdm.user_product_counters SET order_cnt = order_cnt + 5"
            " WHERE id = (SELECT min(id) FROM cdm.user_product_counters)"
        )

        def rebuild() -> None:
            with connect(settings, autocommit=True) as conn:
                results.append(rebuild_marts(conn))

        thread = threading.Thread(target=rebuild)
        thread.start()
        deadline = time.monotonic() + 30
        while not lock_waits(db, "cdm.user_product_counters"):
            assert time.monotonic() < deadline, "the rebuild did not wait for the lock"
            time.sleep(0.05)
        assert not results
        worker.commit()
    thread.join(timeout=30)

    [result] = results
    assert result.products == TableWrites("cdm.user_product_counters", 0, 1, 0)
    assert mart_differences(db).empty
