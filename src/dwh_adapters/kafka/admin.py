"""Topics and consumer groups, for the ``dwh`` tool, health reports and tests."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not re-exported in the stubs
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from dwh_adapters.kafka import trouble
from dwh_adapters.kafka._clients import (
    REQUEST_TIMEOUT_S,
    committed,
    new_admin,
    new_consumer,
    partitions_of,
    until_coordinator_ready,
    watermarks,
)
from dwh_adapters.kafka.settings import KafkaSettings
from dwh_adapters.kafka.trouble import KafkaUnreachable
from dwh_core.messages import source_of_dead_letters

_LOOKUP_GROUP = "dwh-admin"  # asked nothing but metadata and watermarks; never joins
MAX_MESSAGE_BYTES = "max.message.bytes"
# What a dead letter adds to its original: headers of at most a few kilobytes (the
# reason is bounded to 500 characters), and what another compression of the same bytes
# may cost (lz4 on incompressible data: under 0.5%).
DEAD_LETTER_HEADROOM_BYTES = 64 * 1024


def dead_letter_max_bytes(source_max_bytes: int) -> int:
    """The ``max.message.bytes`` a dead-letter topic needs so that every message its
    source topic accepts fits as a letter."""
    return source_max_bytes + source_max_bytes // 100 + DEAD_LETTER_HEADROOM_BYTES


def ensure_topics(
    settings: KafkaSettings,
    topics: Sequence[str],
    partitions: int = 3,
    config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (replication: the broker's default, and
    ``config`` as their topic configuration); the ones created.

    A dead-letter topic (``<source>-dlq``) must take every message its source accepts
    plus the letter's headers: it is created, after the sources, with the
    ``max.message.bytes`` of :func:`dead_letter_max_bytes` for its source's (as the
    broker reports it, when the source exists), and one that exists with less is raised
    to that."""
    dead = [topic for topic in topics if source_of_dead_letters(topic) is not None]
    sources = [topic for topic in topics if topic not in dead]
    created = _create(settings, sources, partitions, config or {})
    for topic in dead:
        wanted = _dead_letter_config(settings, topic, config or {}, sources)
        created += _create(settings, [topic], partitions, wanted)
        _raise_limit(settings, topic, wanted.get(MAX_MESSAGE_BYTES))
    return created


def _create(
    settings: KafkaSettings, topics: Sequence[str], partitions: int, config: Mapping[str, str]
) -> list[str]:
    if not topics:
        return []
    new = [NewTopic(topic, num_partitions=partitions, config=dict(config)) for topic in topics]
    admin = new_admin(settings)  # kept alive until the futures are done
    futures = admin.create_topics(new, request_timeout=REQUEST_TIMEOUT_S)
    return _completed(futures, ignore=KafkaError.TOPIC_ALREADY_EXISTS)


def _dead_letter_config(
    settings: KafkaSettings, topic: str, config: Mapping[str, str], ensured: Sequence[str]
) -> dict[str, str]:
    source = source_of_dead_letters(topic) or topic
    source_max = _source_limit(settings, source, source in ensured)
    if source_max is None:  # no source (yet): what it would be created with, if we know
        given = config.get(MAX_MESSAGE_BYTES)
        source_max = int(given) if given else None
    if source_max is None:
        return dict(config)
    return {**config, MAX_MESSAGE_BYTES: str(dead_letter_max_bytes(source_max))}


def _source_limit(settings: KafkaSettings, source: str, ensured: bool) -> int | None:
    """The source's ``max.message.bytes``. A topic just created is not known to every
    broker at once: one that was just ensured is asked again, for a few seconds."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        limit = topic_max_message_bytes(settings, source)
        if limit is not None or not ensured or time.monotonic() > deadline:
            return limit
        time.sleep(0.1)


def _raise_limit(settings: KafkaSettings, topic: str, wanted: str | None) -> None:
    """Raise the topic's ``max.message.bytes`` to ``wanted`` if it is below (never
    lower it)."""
    current = topic_max_message_bytes(settings, topic)
    if wanted is None or current is None or current >= int(wanted):
        return
    entry = ConfigEntry(MAX_MESSAGE_BYTES, wanted, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = new_admin(settings)
    for future in admin.incremental_alter_configs(
        [resource], request_timeout=REQUEST_TIMEOUT_S
    ).values():
        future.result()


def topic_max_message_bytes(settings: KafkaSettings, topic: str) -> int | None:
    """The largest record batch the topic accepts (its ``max.message.bytes``, or the
    broker's default for it), as the broker reports it; None if the topic does not
    exist."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = new_admin(settings)
    future = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S)[resource]
    try:
        entries = future.result()
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise
    entry = entries.get(MAX_MESSAGE_BYTES)
    return int(entry.value) if entry is not None and entry.value is not None else None


def delete_topics(settings: KafkaSettings, topics: Sequence[str]) -> list[str]:
    """Delete the topics that exist (the broker finishes it in the background)."""
    if not topics:
        return []
    admin = new_admin(settings)
    futures = admin.delete_topics(list(topics), request_timeout=REQUEST_TIMEOUT_S)
    return _completed(futures, ignore=KafkaError.UNKNOWN_TOPIC_OR_PART)


def _completed(futures: dict[str, Future[None]], ignore: int) -> list[str]:
    done: list[str] = []
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != ignore:
                raise
        else:
            done.append(topic)
    return done


def consumer_group_lag(settings: KafkaSettings, group: str, topic: str) -> dict[int, int]:
    """Per partition, the messages the group has not committed yet (all of them if it
    never committed: the layers start at the earliest offset)."""
    with _consumer(settings, group) as consumer:
        partitions = partitions_of(consumer, topic)
        marks = watermarks(consumer, topic, partitions)
        done = committed(consumer, topic, partitions)
    return {p: high - max(low, done.get(p, low)) for p, (low, high) in marks.items()}


def group_members(settings: KafkaSettings, group: str) -> int:
    """How many consumers are members of the group now (0 if it does not exist)."""
    admin = new_admin(settings)

    def describe() -> int:
        future = admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S)
        try:
            return len(future[group].result().members)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return 0
            raise

    return until_coordinator_ready(describe, f"describing group {group}")


def reset_group_to_earliest(settings: KafkaSettings, group: str, topic: str) -> tuple[int, int]:
    """Commit, for the group, the earliest offset of every partition of the topic, so
    that its consumers read the whole topic again; (partitions, messages) moved back
    over, (0, 0) if the topic does not exist. Members of the group would overwrite this
    with their next commit: the caller makes sure it has none."""
    marks = _topic_watermarks(settings, topic)
    if not marks:
        return 0, 0
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, low) for p, (low, _) in sorted(marks.items())]
    )
    admin = new_admin(settings)

    def alter() -> None:
        [future] = admin.alter_consumer_group_offsets(
            [request], request_timeout=REQUEST_TIMEOUT_S
        ).values()
        for tp in future.result().topic_partitions:
            if tp.error is not None:
                raise KafkaException(tp.error)

    until_coordinator_ready(alter, f"resetting group {group}")
    return len(marks), sum(high - low for low, high in marks.values())


def topic_message_count(settings: KafkaSettings, topic: str) -> int:
    """The messages the topic holds now (0 if it does not exist)."""
    marks = _topic_watermarks(settings, topic)
    return sum(high - low for low, high in marks.values())


def _topic_watermarks(settings: KafkaSettings, topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) of each partition of the topic; empty if it does not exist."""
    with _consumer(settings, _LOOKUP_GROUP) as consumer:
        return watermarks(consumer, topic, partitions_of(consumer, topic))


def wait_for_broker(settings: KafkaSettings, timeout: float) -> None:
    """Return once the cluster answers a metadata request. Otherwise
    :class:`KafkaUnreachable`: at once when the client learned why it cannot connect (a
    refused password, an unverified certificate: waiting would not help), else after
    ``timeout`` seconds."""
    admin = new_admin(settings)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(min(remaining, 5.0), 0.1))
            return
        except KafkaException as exc:
            admin.poll(0)  # serves the error callback, which records why
            why = trouble.cause(settings, within_s=time.monotonic() - started)
            if why is not None:
                raise KafkaUnreachable(why) from exc
            if time.monotonic() >= deadline:
                error = exc.args[0] if exc.args else exc
                detail = error.str() if isinstance(error, KafkaError) else str(error)
                raise KafkaUnreachable(
                    f"no answer within {timeout:g}s ({detail}); is it up?"
                ) from exc


@contextmanager
def _consumer(settings: KafkaSettings, group: str) -> Iterator[Consumer]:
    consumer = new_consumer(settings, group)
    try:
        yield consumer
    finally:
        consumer.close()
