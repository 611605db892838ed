"""The composition roots: one dependency-injector container per layer, each composed of
the shared infrastructure container. Connections are ``Resource`` providers, closed by
``shutdown_resources()``.

Every port a layer service uses is a named provider (``dictionaries``, ``events``,
``vault``, ``counters``, ``clock``, and the infrastructure's ``publisher``,
``dead_letters`` and ``consumer``), so the same containers also build the pipeline on
other adapters: :mod:`dwh_workers.in_process` (``dwh demo --in-memory`` and the tests)
``override()``s them with the in-memory ones, and ``tests/unit/test_containers.py``
checks both wirings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, TypeVar

from dependency_injector import containers, providers

from dwh_adapters.clock import SystemClock
from dwh_adapters.kafka import KafkaBatchConsumer, KafkaDeadLetterSink, KafkaPublisher
from dwh_adapters.kafka.settings import GroupMembership
from dwh_adapters.lifecycle import Closeable
from dwh_adapters.postgres.connection import PostgresProbe
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.tag_store import PostgresTagAdmin
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_adapters.redis import RedisDictionaryReader, RedisProbe
from dwh_core.layers import CdmService, DdsService, StgService
from dwh_workers.config import Settings
from dwh_workers.errors import is_transient
from dwh_workers.observability import Metrics
from dwh_workers.runner import Worker
from dwh_workers.tags import TagUpkeep, count_transitions

C = TypeVar("C", bound=Closeable)


def closing(adapter: C) -> Iterator[C]:
    """A resource that is closed when the container shuts down."""
    yield adapter
    adapter.close()


class Infrastructure(containers.DeclarativeContainer):
    """What every layer shares: the consumer of its source topic, dead letters, metrics."""

    settings = providers.Dependency(instance_of=Settings)

    metrics = providers.Singleton(Metrics, layer=settings.provided.worker.layer)
    postgres_probe = providers.Resource(
        closing, providers.Factory(PostgresProbe, settings=settings.provided.postgres)
    )
    consumer = providers.Resource(
        closing,
        providers.Factory(
            KafkaBatchConsumer,
            settings=settings.provided.kafka,
            group_id=settings.provided.worker.consumer_group,
            topic=settings.provided.worker.source_topic,
            batch_size=settings.provided.worker.batch_size,
            batch_wait_s=settings.provided.worker.batch_wait_s,
            membership=providers.Factory(
                GroupMembership,
                instance_id=settings.provided.worker.instance_id,
                session_timeout_ms=settings.provided.worker.session_timeout_ms,
            ),
        ),
    )
    dead_letters = providers.Resource(
        closing, providers.Factory(KafkaDeadLetterSink, settings=settings.provided.kafka)
    )
    publisher = providers.Resource(
        closing,
        providers.Factory(
            KafkaPublisher,
            settings=settings.provided.kafka,
            topic=settings.provided.worker.destination_topic,
        ),
    )


def _worker(
    infrastructure: providers.Container[Infrastructure],
    service: providers.Provider[Any],
    upkeep: providers.Provider[Any] | None = None,
    **extra_probes: providers.Provider[Any],
) -> providers.Factory[Worker]:
    """The layer's worker; every layer probes Kafka and PostgreSQL, plus ``extra_probes``."""
    return providers.Factory(
        Worker,
        upkeep=upkeep if upkeep is not None else providers.Object(None),
        consumer=infrastructure.consumer,
        service=service,
        dead_letters=infrastructure.dead_letters,
        metrics=infrastructure.metrics,
        is_transient=providers.Object(is_transient),
        probes=providers.Dict(
            {
                "kafka": infrastructure.consumer.provided.check,
                "postgres": infrastructure.postgres_probe.provided.check,
                **extra_probes,
            }
        ),
    )


class StgContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    infrastructure = providers.Container(Infrastructure, settings=settings)

    dictionaries = providers.Resource(
        closing, providers.Factory(RedisDictionaryReader, settings=settings.provided.redis)
    )
    redis_probe = providers.Resource(
        closing, providers.Factory(RedisProbe, settings=settings.provided.redis)
    )
    events = providers.Resource(
        closing, providers.Factory(PostgresRawEventStore, settings=settings.provided.postgres)
    )
    service = providers.Factory(
        StgService,
        dictionaries=dictionaries,
        events=events,
        publisher=infrastructure.publisher,
        dead_letters=infrastructure.dead_letters,
    )
    worker = _worker(infrastructure, service, redis=redis_probe.provided.check)


class DdsContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    infrastructure = providers.Container(Infrastructure, settings=settings)

    vault = providers.Resource(
        closing, providers.Factory(PostgresVaultStore, settings=settings.provided.postgres)
    )
    clock = providers.Singleton(SystemClock)
    service = providers.Factory(
        DdsService,
        vault=vault,
        publisher=infrastructure.publisher,
        dead_letters=infrastructure.dead_letters,
        clock=clock,
        record_source=settings.provided.worker.source_topic,
    )
    worker = _worker(infrastructure, service)


class CdmContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    infrastructure = providers.Container(Infrastructure, settings=settings)

    counters = providers.Resource(
        closing, providers.Factory(PostgresCounterStore, settings=settings.provided.postgres)
    )
    tag_admin = providers.Resource(
        closing, providers.Factory(PostgresTagAdmin, settings=settings.provided.postgres)
    )
    clock = providers.Singleton(SystemClock)
    service = providers.Singleton(
        CdmService,
        counters=counters,
        dead_letters=infrastructure.dead_letters,
        tag_events=infrastructure.publisher,
        published=providers.Callable(functools.partial, count_transitions, infrastructure.metrics),
    )
    tag_upkeep = providers.Factory(
        TagUpkeep,
        admin=tag_admin,
        service=service,
        clock=clock,
        rules_path=settings.provided.worker.tag_rules,
        sweep_interval_s=settings.provided.worker.tag_sweep_interval_s,
        metrics=infrastructure.metrics,
    )
    worker = _worker(infrastructure, service, tag_upkeep)


LayerContainer = StgContainer | DdsContainer | CdmContainer
CONTAINERS: dict[str, type[LayerContainer]] = {
    "stg": StgContainer,
    "dds": DdsContainer,
    "cdm": CdmContainer,
}
