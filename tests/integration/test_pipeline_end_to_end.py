"""The three workers as real subprocesses on Kafka, Redis and PostgreSQL: the marts
equal the independent oracle under duplicates, status changes, stale versions, bad
messages, SIGKILL crashes, replays and two replicas per layer."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from functools import partial

import pytest
from confluent_kafka.admin import AdminClient

from dwh_adapters.kafka import (
    StoredDeadLetter,
    consumer_group_lag,
    group_members,
    read_dead_letters,
)
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.recompute import mart_differences
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tag_store import tag_differences
from dwh_workers.oracle import expected_marts
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology
from tests.support.databases import fresh_database
from tests.support.processes import KAFKA, produce, provisioned, running, start_worker, wait_for

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=11, users=120, restaurants=12)
UNKNOWN_USER = "ffffffffffffffffffffffff"


@pytest.fixture
def warehouse() -> Iterator[PgSettings]:
    """A fresh, migrated database of this test's own, so nothing else writing the
    warehouse tables at the same time can disturb it."""
    with fresh_database(BASE) as settings:
        yield settings


@pytest.fixture
def topology(warehouse: PgSettings) -> Iterator[Topology]:
    with provisioned(Topology(dbname=warehouse.dbname), dictionary_entries(DICTIONARIES)) as t:
        yield t


def feed(orders: int, seed: int) -> list[bytes]:
    return list(OrderGenerator(DICTIONARIES, seed=seed, update_share=0.3).messages(orders))


def bad_messages(good: list[bytes]) -> dict[bytes, str]:
    """Malformed messages and orders the dictionaries cannot enrich, with the reason each
    must be dead-lettered for."""
    order = json.loads(good[0])
    wrong_type = json.loads(good[1])
    wrong_type["payload"]["cost"] = str(wrong_type["payload"]["cost"])
    unknown_user = json.loads(good[2])
    unknown_user["object_id"] = 1
    unknown_user["payload"]["user"]["id"] = UNKNOWN_USER
    too_big = json.loads(good[3])
    too_big["object_id"] = 3_000_000_000  # valid JSON, but past the int column's range
    return {
        json.dumps(too_big).encode(): "$.object_id: order id 3000000000 is out of range",
        b"{not json": "not JSON",
        b"[]": "$: expected object, got array",
        json.dumps({**order, "object_type": "payment"}).encode(): "$.object_type: expected 'order'",
        json.dumps(wrong_type).encode(): "$.payload.cost: expected int, got string",
        json.dumps(unknown_user).encode(): f"unknown user {UNKNOWN_USER}",
    }


def marts_match(postgres: PgSettings, messages: list[bytes]) -> bool:
    products, categories = expected_marts(messages, DICTIONARIES.restaurants)
    with PostgresMarts(postgres) as marts:
        return marts.product_counts() == products and marts.category_counts() == categories


def assert_verified(postgres: PgSettings) -> None:
    """``dwh marts verify`` and ``dwh tags verify``: nothing differs from a recount from
    scratch (the marts from the vault, the tags from the ledger and the marts)."""
    with connect(postgres, autocommit=True) as conn:
        assert mart_differences(conn).empty
        compared, differences = tag_differences(conn)
        assert differences == [] and compared > 0


def tag_events(postgres: PgSettings) -> list[tuple[object, ...]]:
    with connect(postgres, autocommit=True) as conn:
        return conn.execute(
            "SELECT user_id, tag_id, sequence, event, at, order_cnt FROM cdm.user_tag_events"
            " ORDER BY user_id, tag_id, sequence"
        ).fetchall()


def wait_for_marts(postgres: PgSettings, messages: list[bytes], timeout: float = 240) -> None:
    wait_for(lambda: marts_match(postgres, messages), timeout, "the marts to equal the oracle", 0.5)


def wait_for_dead_letters(topic: str, count: int) -> dict[bytes | None, StoredDeadLetter]:
    letters: dict[bytes | None, StoredDeadLetter] = {}

    def arrived() -> bool:
        letters.update((letter.value, letter) for letter in read_dead_letters(KAFKA, topic))
        return len(letters) >= count

    wait_for(arrived, 60, f"{count} letters in {topic}")
    return letters


def test_the_marts_equal_the_oracle_and_every_bad_message_is_dead_lettered(
    warehouse: PgSettings,
    topology: Topology,
) -> None:
    good = feed(3000, seed=21)
    bad = bad_messages(good)
    produce(topology.source, good[:1500] + list(bad) + good[1500:])

    with running(topology):
        wait_for_marts(warehouse, good)
        letters = wait_for_dead_letters(f"{topology.source}-dlq", len(bad))

    assert set(letters) == set(bad)
    for value, reason in bad.items():
        letter = letters[value]
        assert reason in letter.reason
        assert letter.headers["dwh.stage"] == "stg"
        assert letter.key is None
        assert letter.headers["dwh.source.topic"] == topology.source
        assert int(letter.headers["dwh.source.offset"]) >= 0
    with PostgresMarts(warehouse) as marts:
        orders = {json.loads(message)["object_id"] for message in good}
        assert marts.row_counts()["stg.order_events"] == len(orders)
        assert marts.row_counts()["dds.h_order"] == len(orders)


def test_sigkill_at_every_layer_in_the_middle_of_a_backlog_leaves_exact_marts(
    warehouse: PgSettings,
    topology: Topology,
) -> None:
    good = feed(20_000, seed=22)
    produce(topology.source, good)
    small_batches = {"DWH_BATCH_SIZE": "250"}

    def rows(table: str) -> int:
        with PostgresMarts(warehouse) as marts:
            return marts.row_counts()[table]

    def reached(table: str, at: int) -> bool:
        return rows(table) >= at

    with running(topology, extra_env=small_batches) as workers:
        for layer, table, at in (
            ("stg", "stg.order_events", 3000),
            ("dds", "dds.h_order", 6000),
            ("cdm", "cdm.order_contributions", 9000),
            ("dds", "dds.h_order", 12_000),
            ("stg", "stg.order_events", 15_000),
        ):
            wait_for(partial(reached, table, at), 120, f"{table} >= {at}")
            killed = workers[layer][0]
            killed.kill()
            assert killed.process.returncode == -signal.SIGKILL, f"{layer} was not killed"
            workers[layer][0] = start_worker(topology, layer, small_batches)
        wait_for_marts(warehouse, good)

    assert rows("cdm.order_contributions") == len({json.loads(m)["object_id"] for m in good})
    assert_verified(warehouse)


def reset_consumer_groups(topology: Topology) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA.bootstrap_servers})
    futures = admin.delete_consumer_groups([topology.group(layer) for layer in LAYER_NAMES])
    for future in futures.values():
        future.result(timeout=30)


def test_a_replay_from_the_beginning_changes_no_mart_and_grows_no_satellite(
    warehouse: PgSettings,
    topology: Topology,
) -> None:
    good = feed(2000, seed=23)
    produce(topology.source, good)
    with running(topology):
        wait_for_marts(warehouse, good)
    with PostgresMarts(warehouse) as marts:
        before = (marts.product_counts(), marts.category_counts(), marts.row_counts())
    events_before = tag_events(warehouse)

    reset_consumer_groups(topology)
    with running(topology) as workers:
        # Replayed to the end: every layer's group has committed everything again.
        def replayed() -> bool:
            return all(
                (lag := consumer_group_lag(KAFKA, topology.group(layer), topology.topic(layer)))
                and not any(lag.values())
                for layer in LAYER_NAMES
            )

        wait_for(replayed, 120, "the replay to reach the end of every topic")
        assert all(w.process.poll() is None for ws in workers.values() for w in ws)

    with PostgresMarts(warehouse) as marts:
        after = (marts.product_counts(), marts.category_counts(), marts.row_counts())
    assert after == before
    assert marts_match(warehouse, good)
    assert tag_events(warehouse) == events_before, "a replay made a tag transition"
    assert_verified(warehouse)


def test_two_replicas_of_each_worker_give_the_same_marts_as_one(
    warehouse: PgSettings,
    topology: Topology,
) -> None:
    good = feed(8000, seed=24)
    produce(topology.source, good[:4000])
    with running(topology, replicas=2):
        produce(topology.source, good[4000:])
        wait_for_marts(warehouse, good)
        members = {layer: group_members(KAFKA, topology.group(layer)) for layer in LAYER_NAMES}
    assert members == dict.fromkeys(LAYER_NAMES, 2), "a replica did not join its layer's group"
    with PostgresMarts(warehouse) as marts:
        names = marts.row_counts()
    assert names["dds.s_product_names"] == names["dds.h_product"]
    assert_verified(warehouse)
