"""STG -> DDS -> CDM in one process, with no Kafka: each layer reads its in-memory topic
in batches. The layer services are built by the workers' own containers
(:mod:`dwh_workers.containers`) with their ports overridden: the stores given (the
in-memory ones of :class:`InMemoryPipeline`, or real ones) and the in-memory topics in
place of Kafka. ``dwh demo --in-memory`` runs it, and so do the tests that drive the
layer services on any stores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from dependency_injector import providers

from dwh_adapters.memory import (
    FixedClock,
    InMemoryCounterStore,
    InMemoryDeadLetters,
    InMemoryDictionaries,
    InMemoryPublisher,
    InMemoryRawEventStore,
    InMemoryTopics,
    InMemoryVaultStore,
)
from dwh_core.layers import BatchResult, CdmService, DdsService, StgService
from dwh_core.ports import Clock, CounterStore, DictionaryReader, RawEventStore, VaultStore
from dwh_workers import config
from dwh_workers.containers import CdmContainer, DdsContainer, StgContainer
from dwh_workers.topology import LAYERS, ORDERS_TOPIC

DEFAULT_BATCH = 500


class Pipeline:
    """The three layer services on the given stores, joined by in-memory topics named as
    the real ones (:mod:`dwh_workers.topology`)."""

    def __init__(
        self,
        dictionaries: DictionaryReader,
        events: RawEventStore,
        vault: VaultStore,
        counters: CounterStore,
        clock: Clock,
    ) -> None:
        self.topics = InMemoryTopics()
        self.dead_letters = InMemoryDeadLetters(self.topics)
        stg = StgContainer(settings=config.load("stg", environ={}))
        stg.dictionaries.override(providers.Object(dictionaries))
        stg.events.override(providers.Object(events))
        dds = DdsContainer(settings=config.load("dds", environ={}))
        dds.vault.override(providers.Object(vault))
        dds.clock.override(providers.Object(clock))
        cdm = CdmContainer(settings=config.load("cdm", environ={}))
        cdm.counters.override(providers.Object(counters))
        for container in (stg, dds, cdm):
            layer = LAYERS[container.settings().worker.layer]
            container.infrastructure.dead_letters.override(providers.Object(self.dead_letters))
            if layer.destination_topic:
                container.infrastructure.publisher.override(
                    providers.Object(InMemoryPublisher(self.topics, layer.destination_topic))
                )
        self.layers: list[tuple[str, StgService | DdsService | CdmService]] = [
            (LAYERS["stg"].source_topic, stg.service()),
            (LAYERS["dds"].source_topic, dds.service()),
            (LAYERS["cdm"].source_topic, cdm.service()),
        ]
        self.positions: dict[str, int] = defaultdict(int)

    def feed(self, values: Iterable[bytes | None]) -> None:
        """Append order messages to the order topic, as the order service would."""
        for value in values:
            self.topics.append(ORDERS_TOPIC, value)

    def run(self, batch_sizes: Iterator[int] | None = None) -> list[BatchResult]:
        """Drain every layer's topic, in batches of the given sizes (default 500)."""
        results: list[BatchResult] = []
        for topic, service in self.layers:
            log = self.topics.messages[topic]
            while self.positions[topic] < len(log):
                size = DEFAULT_BATCH if batch_sizes is None else next(batch_sizes, DEFAULT_BATCH)
                batch = log[self.positions[topic] : self.positions[topic] + size]
                results.append(service.handle(batch))
                if isinstance(service, CdmService):
                    service.deliver_tag_events()
                self.positions[topic] += len(batch)
        return results

    def replay(self) -> None:
        """Every layer reads its topic again from the beginning."""
        self.positions.clear()


class InMemoryPipeline(Pipeline):
    """The pipeline on the in-memory stores, with no services at all."""

    def __init__(self, dictionaries: InMemoryDictionaries, clock: FixedClock) -> None:
        self.dictionaries = dictionaries
        self.events = InMemoryRawEventStore()
        self.vault = InMemoryVaultStore()
        self.counters = InMemoryCounterStore()
        super().__init__(dictionaries, self.events, self.vault, self.counters, clock)
