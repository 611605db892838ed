"""The composition roots, tested the way dependency-injector's examples test theirs: build
the same container a worker builds, ``override()`` its providers with the in-memory
adapters, and check what comes out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from dependency_injector import providers

from dwh_adapters.kafka import KafkaBatchConsumer, KafkaDeadLetterSink, KafkaPublisher
from dwh_adapters.memory import (
    FixedClock,
    InMemoryCounterStore,
    InMemoryDeadLetters,
    InMemoryPublisher,
    InMemoryRawEventStore,
    InMemoryTopics,
    InMemoryVaultStore,
)
from dwh_adapters.redis import RedisDictionaryReader
from dwh_core.messages import InMessage
from dwh_workers import config
from dwh_workers.containers import CONTAINERS, StgContainer
from dwh_workers.in_process import Pipeline
from dwh_workers.topology import LAYERS
from tests.support.builders import BASE_TIME, order, sample_dictionaries, to_bytes
from tests.support.pipeline import dictionaries_of

ENV = {"KAFKA_HOST": "kafka.example", "PG_WAREHOUSE_HOST": "pg.example", "HOSTNAME": "pod-1"}


class OneBatchConsumer:
    """Hands out one batch, then asks the worker to stop; remembers what was committed."""

    def __init__(self, batch: list[InMessage]) -> None:
        self.batch = batch
        self.committed: list[InMessage] = []
        self.stop: Any = None
        self.checked = 0

    def consume(self) -> list[InMessage]:
        if not self.batch:
            self.stop()
            return []
        batch, self.batch = self.batch, []
        return batch

    def commit(self, messages: Sequence[InMessage]) -> None:
        self.committed.extend(messages)

    def lag(self) -> dict[int, int]:
        return {}

    def check(self) -> None:
        self.checked += 1

    def close(self) -> None:
        pass


class Healthy:
    """A dependency that answers its probe, and counts the probes."""

    def __init__(self) -> None:
        self.checked = 0

    def check(self) -> None:
        self.checked += 1


def order_messages(topic: str) -> list[InMessage]:
    users, restaurants = sample_dictionaries()
    documents = [
        order(1, users[0]["_id"], restaurants[0], [0, 3], "CLOSED", 100),
        order(2, users[1]["_id"], restaurants[1], [2], "CLOSED", 200),
    ]
    return [InMessage(to_bytes(doc), topic, 0, n) for n, doc in enumerate(documents)]


@pytest.mark.parametrize("layer", sorted(CONTAINERS))
def test_without_overrides_a_container_builds_the_kafka_adapters_from_its_settings(
    layer: str,
) -> None:
    container = CONTAINERS[layer](settings=config.load(layer, environ=ENV))
    infrastructure = container.infrastructure
    consumer = infrastructure.consumer()
    assert isinstance(consumer, KafkaBatchConsumer)
    assert isinstance(infrastructure.dead_letters(), KafkaDeadLetterSink)
    assert isinstance(infrastructure.publisher(), KafkaPublisher)
    assert infrastructure.metrics().layer == layer
    container.shutdown_resources()  # nothing connected: building is lazy


def test_without_overrides_stg_reads_the_dictionaries_from_redis() -> None:
    container = StgContainer(settings=config.load("stg", environ=ENV))
    assert isinstance(container.dictionaries(), RedisDictionaryReader)
    container.shutdown_resources()


def test_stg_service_built_on_in_memory_ports_stores_and_publishes() -> None:
    users, restaurants = sample_dictionaries()
    topics = InMemoryTopics()
    events = InMemoryRawEventStore()
    container = StgContainer(settings=config.load("stg", environ=ENV))
    container.dictionaries.override(providers.Object(dictionaries_of(users, restaurants)))
    container.events.override(providers.Object(events))
    container.infrastructure.publisher.override(providers.Object(InMemoryPublisher(topics, "next")))
    container.infrastructure.dead_letters.override(providers.Object(InMemoryDeadLetters(topics)))

    result = container.service().handle(order_messages(LAYERS["stg"].source_topic))

    assert (result.processed, result.dead_lettered) == (2, 0)
    assert sorted(events.events) == [1, 2]
    assert len(topics.messages["next"]) == 2


def test_the_worker_of_a_container_runs_its_service_and_probes_its_dependencies() -> None:
    users, restaurants = sample_dictionaries()
    events = InMemoryRawEventStore()
    batch = order_messages(LAYERS["stg"].source_topic)
    consumer = OneBatchConsumer(batch)
    container = StgContainer(settings=config.load("stg", environ=ENV))
    container.dictionaries.override(providers.Object(dictionaries_of(users, restaurants)))
    container.events.override(providers.Object(events))
    redis, postgres = Healthy(), Healthy()
    container.redis_probe.override(providers.Object(redis))
    infrastructure = container.infrastructure
    infrastructure.consumer.override(providers.Object(consumer))
    infrastructure.postgres_probe.override(providers.Object(postgres))
    infrastructure.publisher.override(providers.Object(InMemoryPublisher(InMemoryTopics(), "x")))
    infrastructure.dead_letters.override(providers.Object(InMemoryDeadLetters(InMemoryTopics())))

    worker = container.worker()
    consumer.stop = worker.stop
    worker.run()

    assert consumer.committed == batch
    assert sorted(events.events) == [1, 2]
    # the idle round after the batch probed each dependency of STG once
    assert (consumer.checked, postgres.checked, redis.checked) == (1, 1, 1)


def test_the_in_process_pipeline_is_built_by_the_workers_containers() -> None:
    users, restaurants = sample_dictionaries()
    events, vault, counters = InMemoryRawEventStore(), InMemoryVaultStore(), InMemoryCounterStore()
    pipeline = Pipeline(
        dictionaries_of(users, restaurants), events, vault, counters, FixedClock(BASE_TIME)
    )
    pipeline.feed(message.value for message in order_messages("orders"))
    pipeline.run()

    assert [topic for topic, _ in pipeline.layers] == [
        layer.source_topic for layer in LAYERS.values()
    ]
    assert sorted(events.events) == [1, 2]
    satellites = [row for rows in vault.satellites["order_status"].values() for row in rows]
    assert len(satellites) == 2
    assert {row.load_dt for row in satellites} == {BASE_TIME}  # the clock given, not the system's
    assert sum(counters.product_counts().values()) == 3  # two items, then one
