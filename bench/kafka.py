"""The benchmark's own Kafka clients: a fast producer of the feed, and a watcher of how
far each consumer group has committed (it never joins a group, so it disturbs none)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from dwh_adapters.kafka import KafkaSettings, committed

TIMEOUT_S = 10.0


def producer(settings: KafkaSettings, **overrides: Any) -> Producer:
    return Producer({**settings.client_config(), **overrides})


def produce_backlog(settings: KafkaSettings, topic: str, messages: Iterable[bytes]) -> float:
    """Produce the messages with no key (as the feed does) as fast as the broker takes
    them; the seconds until all were acknowledged."""
    client = producer(
        settings,
        **{"linger.ms": 20, "batch.num.messages": 10_000, "queue.buffering.max.kbytes": 1 << 20},
    )
    started = time.perf_counter()
    for value in messages:
        while True:
            try:
                client.produce(topic, value)
                break
            except BufferError:
                client.poll(0.05)
        client.poll(0)
    left = client.flush(60)
    if left:
        raise RuntimeError(f"{left} messages to {topic} were not acknowledged within 60 s")
    return time.perf_counter() - started


class CommittedOffsets:
    """For each watched (topic, group): how many messages of the topic the group has
    committed, and how many the topic holds."""

    def __init__(self, settings: KafkaSettings, watched: Mapping[str, tuple[str, str]]) -> None:
        """``watched``: name -> (topic, consumer group)."""
        self._watched = dict(watched)
        self._consumers = {
            name: Consumer(
                {**settings.client_config(), "group.id": group, "enable.auto.commit": False}
            )
            for name, (_, group) in self._watched.items()
        }
        self._partitions = {
            name: sorted(
                self._consumers[name].list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions
            )
            for name, (topic, _) in self._watched.items()
        }

    def read(self) -> dict[str, tuple[int, int]]:
        """name -> (messages committed, messages in the topic)."""
        return {name: self._read(name) for name in self._watched}

    def _read(self, name: str) -> tuple[int, int]:
        topic, _ = self._watched[name]
        consumer = self._consumers[name]
        partitions = self._partitions[name]
        done_up_to = committed(consumer, topic, partitions)
        done = total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=TIMEOUT_S
            )
            done += max(done_up_to.get(partition, low), low) - low
            total += high - low
        return done, total

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
