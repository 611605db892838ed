"""Dead letters for operators: list them, and send them back to where they came from
once the cause is fixed (CONTRACT.md §5).

How a redrive remembers what it has done: the consumer group ``dwh-redrive`` keeps, per
dead-letter topic partition, the offset up to which every letter has been handled.
``redrive`` reads from there to the end of each partition as it was when the redrive
began, and sends each letter either back to its source topic (its reason matches) or,
unchanged with its headers, to the end of the same dead-letter topic (it does not match,
or names no source), and commits past both only after the broker has confirmed them.
So a second redrive never sends a letter again, and a letter left behind stays
redrivable, later, as its copy. A crash between the delivery and the commit sends some
letters twice, which the idempotent layers absorb. The group never joins (partitions are
assigned explicitly), so two redrives of one topic must not run at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from attrs import frozen
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dwh_adapters.kafka._clients import (
    committed,
    log,
    new_consumer,
    next_offsets,
    partitions_of,
    watermarks,
)
from dwh_adapters.kafka.producer import (
    REASON_HEADER,
    SOURCE_TOPIC_HEADER,
    DeliveringProducer,
    Record,
)
from dwh_adapters.kafka.settings import KafkaSettings

REDRIVE_GROUP = "dwh-redrive"
_FETCH_SIZE = 1000
_POLL_S = 0.5
_IDLE_TIMEOUT_S = 30.0


@frozen
class StoredDeadLetter:
    """A dead letter as stored: the original key and bytes, and the headers as text."""

    value: bytes | None
    key: bytes | None
    headers: Mapping[str, str]
    partition: int
    offset: int

    @property
    def reason(self) -> str:
        return self.headers.get(REASON_HEADER, "")

    @property
    def source_topic(self) -> str | None:
        return self.headers.get(SOURCE_TOPIC_HEADER) or None


@frozen
class RedriveResult:
    sent: int
    skipped: int


def read_dead_letters(
    settings: KafkaSettings, dlq_topic: str, limit: int | None = None, *, pending: bool = False
) -> list[StoredDeadLetter]:
    """The letters in the topic, oldest first, at most ``limit``: all of them from the
    beginning, or with ``pending`` only those no redrive has handled yet (a letter a
    filtered redrive left behind then appears once, as its newer copy)."""
    with _reader(settings) as consumer:
        ranges = _ranges(consumer, dlq_topic, pending)
        if limit is not None:
            ranges = {p: (start, min(end, start + limit)) for p, (start, end) in ranges.items()}
        messages = [m for batch in _read(consumer, dlq_topic, ranges) for m in batch]
    messages.sort(key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
    return [_stored(message) for message in messages[:limit]]


def redrive(
    settings: KafkaSettings, dlq_topic: str, reason_contains: str | None = None
) -> RedriveResult:
    """Send the pending letters whose reason contains ``reason_contains`` (ignoring case;
    all of them if ``None``) back to their source topics, with their original key and
    bytes; see the module docstring for how the others stay redrivable."""
    wanted = reason_contains.casefold() if reason_contains is not None else None
    producer = DeliveringProducer(settings)
    sent = skipped = 0
    try:
        with _reader(settings) as consumer:
            ranges = _ranges(consumer, dlq_topic, pending=True)
            for batch in _read(consumer, dlq_topic, ranges):
                letters = [_stored(message) for message in batch]
                records = [_destination(letter, dlq_topic, wanted) for letter in letters]
                producer.deliver(records)
                returned = sum(record.topic != dlq_topic for record in records)
                sent, skipped = sent + returned, skipped + len(records) - returned
                _commit(consumer, next_offsets((dlq_topic, m.partition, m.offset) for m in letters))
    finally:
        producer.close()
    log.info("dead letters redriven", extra={"topic": dlq_topic, "sent": sent, "skipped": skipped})
    return RedriveResult(sent, skipped)


def _destination(letter: StoredDeadLetter, dlq_topic: str, wanted: str | None) -> Record:
    source = letter.source_topic
    if source is not None and (wanted is None or wanted in letter.reason.casefold()):
        return Record(source, letter.value, letter.key)
    headers = tuple((name, text.encode("utf-8")) for name, text in letter.headers.items())
    return Record(dlq_topic, letter.value, letter.key, headers)


@contextmanager
def _reader(settings: KafkaSettings) -> Iterator[Consumer]:
    consumer = new_consumer(settings, REDRIVE_GROUP, {"enable.partition.eof": True})
    try:
        yield consumer
    finally:
        consumer.close()


def _ranges(consumer: Consumer, topic: str, pending: bool) -> dict[int, tuple[int, int]]:
    """[start, end) of each partition: from the beginning (or the redrive group's commit)
    to the end as it is now."""
    partitions = partitions_of(consumer, topic)
    marks = watermarks(consumer, topic, partitions)
    done = committed(consumer, topic, partitions) if pending else {}
    return {p: (_start(low, high, done.get(p, low)), high) for p, (low, high) in marks.items()}


def _start(low: int, high: int, done: int) -> int:
    # outside [low, high]: never committed, expired by retention, or the topic was recreated
    return done if low <= done <= high else low


def _read(
    consumer: Consumer, topic: str, ranges: Mapping[int, tuple[int, int]]
) -> Iterator[list[Message]]:
    """The messages of the ranges, in fetched batches; raises ``TimeoutError`` if the
    broker sends nothing for a while before the ends are reached."""
    todo = {p: end for p, (start, end) in ranges.items() if start < end}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in todo])
    deadline = time.monotonic() + _IDLE_TIMEOUT_S
    while todo:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic}: no message for {_IDLE_TIMEOUT_S:g}s")
        batch: list[Message] = []
        for message in consumer.consume(_FETCH_SIZE, timeout=_POLL_S):
            deadline = time.monotonic() + _IDLE_TIMEOUT_S
            partition, offset = message.partition() or 0, message.offset() or 0
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                _skip_or_raise(error)
            elif partition in todo:
                if error is None and offset < todo[partition]:
                    batch.append(message)
                if error is not None or offset + 1 >= todo[partition]:
                    del todo[partition]
        if batch:
            yield batch


def _skip_or_raise(error: KafkaError) -> None:
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer error, skipped", extra={"error": str(error)})


def _commit(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    for partition in consumer.commit(offsets=offsets, asynchronous=False):
        if partition.error is not None:
            raise KafkaException(partition.error)


def _stored(message: Message) -> StoredDeadLetter:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {
        name: value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""
        for name, value in pairs
    }
    return StoredDeadLetter(
        value=message.value(),
        key=message.key(),
        headers=headers,
        partition=message.partition() or 0,
        offset=message.offset() or 0,
    )
