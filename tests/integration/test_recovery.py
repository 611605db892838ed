"""Back in seconds after a crash: a worker killed with SIGKILL and started again with the
same ``DWH_INSTANCE_ID`` gets its partitions back at once (Kafka static membership)
instead of waiting for the dead member's session to expire; and two live workers given
the same id are reported, not left to fence each other in turn."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import Topology
from tests.support.databases import fresh_database
from tests.support.processes import produce, provisioned, start_worker, wait_for

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=14, users=40, restaurants=6)
RESUME_WITHIN_S = 10.0
SESSION_TIMEOUT_MS = "30000"  # what a restart must beat by far


@pytest.fixture
def warehouse() -> Iterator[PgSettings]:
    with fresh_database(BASE) as settings:
        yield settings


@pytest.fixture
def topology(warehouse: PgSettings) -> Iterator[Topology]:
    with provisioned(Topology(dbname=warehouse.dbname), dictionary_entries(DICTIONARIES)) as t:
        yield t


def orders(n: int, seed: int) -> list[bytes]:
    return list(OrderGenerator(DICTIONARIES, seed=seed, update_share=0).messages(n))


def order_ids(messages: list[bytes]) -> set[int]:
    return {json.loads(message)["object_id"] for message in messages}


def stored(warehouse: PgSettings) -> int:
    with PostgresMarts(warehouse) as marts:
        return marts.row_counts()["stg.order_events"]


def test_a_worker_killed_and_started_again_with_its_instance_id_resumes_within_seconds(
    warehouse: PgSettings, topology: Topology
) -> None:
    before, after = orders(30, seed=51), orders(60, seed=52)[30:]
    env = {"DWH_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS}
    produce(topology.source, before)
    worker = start_worker(topology, "stg", env)
    try:
        wait_for(lambda: stored(warehouse) == len(order_ids(before)), 60, "the first orders")
    finally:
        worker.kill()
    assert worker.process.returncode == -signal.SIGKILL
    started = time.monotonic()
    worker = start_worker(topology, "stg", env)  # the same replica: the same instance id
    try:
        produce(topology.source, after)
        expected = len(order_ids(before) | order_ids(after))
        wait_for(
            lambda: stored(warehouse) == expected,
            RESUME_WITHIN_S,
            "the restarted worker to process an order produced after the restart",
            interval=0.05,
        )
        resumed_s = time.monotonic() - started
        print(f"\nSIGKILL -> restart with the same instance id -> processed: {resumed_s:.2f}s")
    finally:
        assert worker.terminate() == 0


def test_a_second_live_worker_with_the_same_instance_id_makes_the_first_exit_saying_why(
    warehouse: PgSettings, topology: Topology
) -> None:
    first_orders, later_orders = orders(10, seed=53), orders(20, seed=54)[10:]
    produce(topology.source, first_orders)
    first = start_worker(topology, "stg")
    wait_for(lambda: stored(warehouse) == len(order_ids(first_orders)), 60, "the first orders")

    second = start_worker(topology, "stg")  # the same replica number: the same id
    try:
        assert first.process.wait(timeout=60) == 4, "the fenced worker must exit with 4"
        log = first.log_path.read_text()
        assert "DWH_INSTANCE_ID" in log
        assert topology.instance_id("stg") in log
        produce(topology.source, later_orders)
        expected = len(order_ids(first_orders) | order_ids(later_orders))
        wait_for(lambda: stored(warehouse) == expected, 60, "the second worker to go on")
        assert second.process.poll() is None, "the worker that joined last keeps working"
    finally:
        assert second.terminate() == 0
