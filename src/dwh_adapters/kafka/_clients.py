"""Building confluent-kafka clients and asking the cluster about a topic's partitions;
shared by the batch consumer, the producers, the admin functions and the dead-letter
tools, so that every client is configured and logs the same way."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from dwh_adapters.kafka import trouble
from dwh_adapters.kafka.settings import KafkaSettings

log = logging.getLogger("dwh_adapters.kafka")
_librdkafka_log = logging.getLogger("dwh_adapters.kafka.librdkafka")

REQUEST_TIMEOUT_S = 10.0
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: nothing committed, no position yet
COORDINATOR_WAIT_S = 30.0

# A group's coordinator can be moving or still loading ``__consumer_offsets``: on a
# broker that has just started, or after a restart. librdkafka does not retry these in
# an offsets request, and calls them not retriable; they pass in a few seconds.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)

T = TypeVar("T")


class _ClientEvents:
    """The error callback and logger of the clients with one set of settings.

    Client-wide errors (all brokers down, authentication failed): librdkafka keeps
    retrying on its own, and the calls that need the broker fail or time out. Each error
    is recorded for :func:`trouble.cause`; it is logged, explained, once a minute at most,
    not at every retry. librdkafka's own lines of failed connections (``FAIL``), which the
    error events explain, are logged at DEBUG."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._logged: dict[str, float] = {}  # explained text -> when last logged

    def error(self, error: KafkaError) -> None:
        trouble.record_error(self._settings, error)
        text = trouble.explain(self._settings, str(error.str()))
        now = time.monotonic()
        if now - self._logged.get(text, float("-inf")) > trouble.RECENT_S:
            self._logged[text] = now
            log.warning(
                "kafka client error: %s",
                text,
                extra={"code": error.name(), "fatal": error.fatal()},
            )

    def log(self, level: int, message: str, *args: object) -> None:
        """confluent-kafka's logger interface: ``(level, "%s [%s] %s", facility,
        client, text)``."""
        if len(args) == 3 and args[0] == "FAIL":  # why a connection was lost
            trouble.record(self._settings, str(args[2]))
            level = logging.DEBUG
        _librdkafka_log.log(level, message, *args)


def _config(settings: KafkaSettings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    events = _ClientEvents(settings)
    return {
        **settings.client_config(),
        "error_cb": events.error,
        "logger": events,
        **overrides,
    }


def new_consumer(
    settings: KafkaSettings, group_id: str, overrides: Mapping[str, Any] | None = None
) -> Consumer:
    """A consumer that never commits on its own and starts new groups at the beginning."""
    defaults = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # librdkafka prefetches up to 64 MiB per consumer by default; a few batches
        # ahead (4 MiB: two or three of DDS's) is plenty, and keeps a worker under
        # 128 MiB through a 200,000-order backlog (8 MiB took DDS to 130).
        "queued.max.messages.kbytes": 4096,
    }
    return Consumer(_config(settings, {**defaults, **(overrides or {})}))


def new_producer(settings: KafkaSettings, overrides: Mapping[str, Any]) -> Producer:
    return Producer(_config(settings, overrides))


def new_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(_config(settings, {}))


def next_offsets(positions: Iterable[tuple[str, int, int]]) -> list[TopicPartition]:
    """The offsets to commit after these (topic, partition, offset) messages: the
    greatest offset + 1 of each partition."""
    ends: dict[tuple[str, int], int] = {}
    for topic, partition, offset in positions:
        ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
    return [
        TopicPartition(topic, partition, end) for (topic, partition), end in sorted(ends.items())
    ]


def partitions_of(client: Consumer, topic: str) -> list[int]:
    """The topic's partition numbers; none if the topic does not exist."""
    metadata = client.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
    found = metadata.topics.get(topic)
    if found is None or _is_unknown_topic(found.error):
        return []
    if found.error is not None:
        raise KafkaException(found.error)
    return sorted(found.partitions)


def _is_unknown_topic(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def watermarks(
    client: Consumer, topic: str, partitions: Iterable[int]
) -> dict[int, tuple[int, int]]:
    """(low, high) of each partition, asked of the broker."""
    return {
        partition: client.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=REQUEST_TIMEOUT_S
        )
        for partition in partitions
    }


def until_coordinator_ready(
    request: Callable[[], T], what: str, wait_s: float = COORDINATOR_WAIT_S
) -> T:
    """The request's answer, asked again while the group's coordinator is not ready
    and ``wait_s`` has not passed since the first attempt; then its last error is
    raised. ``wait_s=0`` asks once."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            return request()
        except KafkaException as exc:
            error = exc.args[0]
            if not isinstance(error, KafkaError) or error.code() not in _COORDINATOR_NOT_READY:
                raise
            if time.monotonic() + pause > deadline:
                raise
            log.info("%s: the group coordinator is not ready (%s); asking again", what, error)
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def committed(
    client: Consumer,
    topic: str,
    partitions: Iterable[int],
    wait_s: float = COORDINATOR_WAIT_S,
) -> dict[int, int]:
    """The client's group's committed offset of each partition; ``NO_OFFSET`` if none.
    A coordinator that is not ready is asked again for up to ``wait_s``
    (:func:`until_coordinator_ready`)."""
    asked = [TopicPartition(topic, partition) for partition in partitions]
    if not asked:
        return {}

    def ask() -> dict[int, int]:
        offsets: dict[int, int] = {}
        for tp in client.committed(asked, timeout=REQUEST_TIMEOUT_S):
            if tp.error is not None:
                raise KafkaException(tp.error)
            offsets[tp.partition] = tp.offset
        return offsets

    return until_coordinator_ready(ask, f"committed offsets of {topic}", wait_s)


def is_fatal(error: KafkaError) -> bool:
    """Whether the client that reported ``error`` is dead. A fatal error can reach the
    application as an event with the code _FATAL whose fatal() is False (seen with
    librdkafka 2.16): either says so."""
    return error.fatal() or error.code() == KafkaError._FATAL
