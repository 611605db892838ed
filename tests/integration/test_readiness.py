"""Readiness tells the truth: with Kafka, PostgreSQL or Redis unreachable, an idle STG
worker (it uses all three) answers ``/readyz`` with 503 within seconds and counts the
outage in ``dwh_dependency_errors_total{dependency=...}``; once the service is back it is
ready again by itself, and an order sent during the outage is stored exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dwh_adapters.kafka import KafkaSettings, consumer_group_lag
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import Topology
from tests.support.broker import PrivateBroker, private_broker
from tests.support.databases import fresh_database
from tests.support.processes import (
    KAFKA,
    free_port,
    http_get,
    metric_total,
    produce,
    provisioned,
    start_worker,
    wait_for,
)
from tests.support.proxy import CuttableProxy

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=15, users=40, restaurants=6)
NOT_READY_WITHIN_S = 15.0  # a probe every 3 s, each given at most 5 s
READY_AGAIN_WITHIN_S = 60.0  # the batch in flight may be waiting out its back-off


@pytest.fixture
def warehouse() -> Iterator[PgSettings]:
    with fresh_database(BASE) as settings:
        yield settings


def orders(seed: int) -> list[bytes]:
    return list(OrderGenerator(DICTIONARIES, seed=seed, update_share=0).messages(5))


def order_ids(messages: list[bytes]) -> set[int]:
    return {json.loads(message)["object_id"] for message in messages}


def stored_ids(warehouse: PgSettings) -> list[int]:
    """The order ids in STG, each as often as it is stored."""
    with connect(warehouse) as connection:
        rows = connection.execute("SELECT object_id FROM stg.order_events").fetchall()
    return sorted(row[0] for row in rows)


def idle(topology: Topology, kafka: KafkaSettings = KAFKA) -> bool:
    """Everything in the source topic committed: no batch in flight, the worker idles."""
    lag = consumer_group_lag(kafka, topology.group("stg"), topology.source)
    return bool(lag) and not any(lag.values())


def readyz(port: int) -> int:
    return http_get(port, "/readyz")[0]


class Outage:
    """A running STG worker on ``port`` and how to take one dependency away."""

    def __init__(self, port: int, dependency: str) -> None:
        self.port, self.dependency = port, dependency

    def errors(self) -> float:
        return metric_total(self.port, "dwh_dependency_errors_total", dependency=self.dependency)

    def cut_and_see_not_ready(self, cut: Callable[[], None]) -> None:
        wait_for(lambda: readyz(self.port) == 200, 60, "the worker to be ready")
        before = self.errors()
        cut()
        started = time.monotonic()
        wait_for(
            lambda: readyz(self.port) == 503 and self.errors() > before,
            NOT_READY_WITHIN_S,
            f"503 and a {self.dependency} error counted while {self.dependency} is down",
            interval=0.1,
        )
        print(f"\n{self.dependency} down -> /readyz 503: {time.monotonic() - started:.2f}s")
        assert http_get(self.port, "/healthz")[0] == 200, "not ready, but alive"

    def restore_and_see_ready(self, restore: Callable[[], None]) -> None:
        restore()
        started = time.monotonic()
        wait_for(lambda: readyz(self.port) == 200, READY_AGAIN_WITHIN_S, "ready again")
        print(f"{self.dependency} back -> /readyz 200: {time.monotonic() - started:.2f}s")


def check_an_outage(
    warehouse: PgSettings, topology: Topology, dependency: str, proxy: CuttableProxy, env: str
) -> None:
    """Cut ``proxy`` (in front of ``dependency``), send orders, restore, check."""
    port = free_port()
    first, during = orders(seed=61), orders(seed=62)
    produce(topology.source, first)
    worker = start_worker(topology, "stg", {env: str(proxy.port), "DWH_HTTP_PORT": str(port)})
    try:
        wait_for(lambda: len(stored_ids(warehouse)) == len(first), 60, "the first orders")
        wait_for(lambda: idle(topology), 60, "the first orders to be committed")
        outage = Outage(port, dependency)
        outage.cut_and_see_not_ready(proxy.cut)
        produce(topology.source, during)
        outage.restore_and_see_ready(proxy.restore)
        expected = sorted(order_ids(first) | order_ids(during))
        wait_for(lambda: stored_ids(warehouse) == expected, 60, "the orders sent meanwhile")
    finally:
        assert worker.terminate() == 0


@pytest.fixture
def topology(warehouse: PgSettings) -> Iterator[Topology]:
    with provisioned(Topology(dbname=warehouse.dbname), dictionary_entries(DICTIONARIES)) as t:
        yield t


def test_postgresql_down_makes_an_idle_worker_not_ready_until_it_is_back(
    warehouse: PgSettings, topology: Topology
) -> None:
    with CuttableProxy(("127.0.0.1", BASE.port)) as proxy:
        check_an_outage(warehouse, topology, "postgres", proxy, "PG_WAREHOUSE_PORT")


def test_redis_down_makes_an_idle_worker_not_ready_until_it_is_back(
    warehouse: PgSettings, topology: Topology
) -> None:
    with CuttableProxy(("127.0.0.1", 6379)) as proxy:
        check_an_outage(warehouse, topology, "redis", proxy, "REDIS_PORT")


def test_the_kafka_broker_down_makes_an_idle_worker_not_ready_until_it_is_back(
    warehouse: PgSettings, tmp_path: Path
) -> None:
    with private_broker(tmp_path) as broker:
        kafka = KafkaSettings(broker.bootstrap)
        entries = dictionary_entries(DICTIONARIES)
        with provisioned(Topology(dbname=warehouse.dbname), entries, kafka) as topology:
            try:
                check_a_broker_outage(warehouse, topology, broker, kafka)
            finally:
                if not broker.answers():  # the topics are deleted on the way out
                    broker.start()


def check_a_broker_outage(
    warehouse: PgSettings, topology: Topology, broker: PrivateBroker, kafka: KafkaSettings
) -> None:
    port = free_port()
    first, during = orders(seed=63), orders(seed=64)
    produce(topology.source, first, kafka=kafka)
    env = {"KAFKA_HOST": broker.bootstrap, "DWH_HTTP_PORT": str(port)}
    worker = start_worker(topology, "stg", env)
    try:
        wait_for(lambda: len(stored_ids(warehouse)) == len(first), 60, "the first orders")
        wait_for(lambda: idle(topology, kafka), 60, "the first orders to be committed")
        outage = Outage(port, "kafka")
        outage.cut_and_see_not_ready(broker.stop)
        # Sent while the broker is down: the producer holds it until the broker is back.
        sender = threading.Thread(
            target=produce, args=(topology.source, during), kwargs={"kafka": kafka}
        )
        sender.start()
        outage.restore_and_see_ready(broker.start)
        sender.join(timeout=60)
        assert not sender.is_alive(), "the orders sent during the outage were never acknowledged"
        expected = sorted(order_ids(first) | order_ids(during))
        wait_for(lambda: stored_ids(warehouse) == expected, 60, "the orders sent meanwhile")
    finally:
        assert worker.terminate() == 0
