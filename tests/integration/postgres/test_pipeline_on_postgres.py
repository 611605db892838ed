"""The layer services on the PostgreSQL stores: the pipeline end to end against the
oracle and under replays, edge values, markers and ties (docs/CONTRACT.md §7), and the read
side of the marts."""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any

import pytest
from psycopg import sql

from dwh_adapters.memory import (
    FixedClock,
    InMemoryDeadLetters,
    InMemoryPublisher,
    InMemoryTopics,
)
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.postgres.tables import SATELLITE_TABLES, truncate_all
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_core.hashing import hashdiff
from dwh_core.layers import CdmService
from dwh_core.messages import InMessage
from dwh_core.parsing import encode
from dwh_core.vault import HUBS, SATELLITES, order_facts
from dwh_workers.in_process import InMemoryPipeline, Pipeline
from dwh_workers.oracle import expected_marts
from dwh_workers.topology import DDS_TOPIC
from tests.support.builders import BASE_TIME, order, to_bytes
from tests.support.pipeline import dictionaries_of
from tests.support.stores import (
    RESTAURANTS,
    USERS,
    Connection,
    Row,
    enriched,
    save_orders,
    select,
)

pytestmark = pytest.mark.integration


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
        topics = InMemoryTopics()
        layer = CdmService(counters, InMemoryDeadLetters(topics), InMemoryPublisher(topics, "tags"))
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
