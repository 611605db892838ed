"""Dead letters for operators: list them, and send them back to where they came from
once the cause is fixed (docs/CONTRACT.md §5).

A redrive reads only a dead-letter topic, ``<source>-dlq``, and sends its letters only
to ``<source>``, each with its original key and bytes; a letter whose
``dwh.source.topic`` header names another topic (or none) is refused: left where it is
and reported.

How a redrive remembers what it has done, per letter, without moving any: after the
broker has confirmed a letter back on its source topic, the redrive appends a *mark* to
the letter's own dead-letter partition (no key, no value, header
``dwh.redriven.offset``: the letter's offset). A letter with a mark is handled; one
without is pending, wherever it is. The consumer group ``dwh-redrive`` only saves
reading: per partition, it commits the offset of the first letter still pending (or the
end), below which every letter is handled. So a letter is sent once whatever the redrives
that follow, selective or not; a letter a selective redrive skipped stays where it is,
once, pending for a later one. A crash between the delivery and its mark sends those
letters again, which the idempotent layers absorb. Partitions are assigned explicitly
(the group never joins), so two redrives of one topic must not run at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from attrs import evolve, frozen
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dwh_adapters.kafka._clients import (
    committed,
    is_fatal,
    log,
    new_consumer,
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
from dwh_core.messages import shorten, source_of_dead_letters

REDRIVE_GROUP = "dwh-redrive"
REDRIVEN_OFFSET_HEADER = "dwh.redriven.offset"
REDRIVEN_TO_HEADER = "dwh.redriven.to"
REDRIVEN_AT_HEADER = "dwh.redriven.at"
_FETCH_SIZE = 1000
_POLL_S = 0.5
_IDLE_TIMEOUT_S = 30.0

_Position = tuple[int, int]  # (partition, offset)


class RedriveRefused(ValueError):
    """A redrive that must not run: ``str()`` says why, naming the topic."""


@frozen
class StoredDeadLetter:
    """A dead letter as stored: the original key and bytes, the headers as text, and
    whether a redrive has sent it back (``redriven``)."""

    value: bytes | None
    key: bytes | None
    headers: Mapping[str, str]
    partition: int
    offset: int
    redriven: bool = False

    @property
    def reason(self) -> str:
        return self.headers.get(REASON_HEADER, "")


@frozen
class RefusedLetter:
    """A letter a redrive did not send: its header names ``names`` (None: no source
    topic at all), not the topic it reads the dead letters of."""

    partition: int
    offset: int
    names: str | None


@frozen
class RedriveResult:
    """What a redrive did: letters sent back, letters left pending because their reason
    did not match, and letters refused (left pending too)."""

    sent: int
    skipped: int
    refused: tuple[RefusedLetter, ...] = ()


@frozen
class _Entry:
    """A letter seen while surveying a topic: everything but its key and value."""

    partition: int
    offset: int
    timestamp: int
    headers: Mapping[str, str]
    redriven: bool = False


@frozen
class _Survey:
    ranges: Mapping[int, tuple[int, int]]
    letters: list[_Entry]


def read_dead_letters(
    settings: KafkaSettings,
    dlq_topic: str,
    limit: int | None = None,
    *,
    pending: bool = False,
    values: bool = True,
) -> list[StoredDeadLetter]:
    """The letters in the topic (never the redrive's marks), oldest first, at most
    ``limit``: all of them, or with ``pending`` only those no redrive has sent back yet.
    Without ``values`` the keys and values are not kept (None), which spares memory when
    only the headers are shown."""
    survey = _survey(settings, dlq_topic, pending)
    letters = sorted(survey.letters, key=lambda e: (e.timestamp, e.partition, e.offset))
    chosen = letters[:limit]
    if not values:
        return [_without_value(entry) for entry in chosen]
    by_position = {(e.partition, e.offset): e for e in chosen}
    found: dict[_Position, StoredDeadLetter] = {}
    for batch in _fetch(settings, dlq_topic, by_position):
        for message in batch:
            letter = _stored(message)
            found[(letter.partition, letter.offset)] = letter
    return [
        evolve(found[position], redriven=by_position[position].redriven)
        for position in ((e.partition, e.offset) for e in chosen)
        if position in found
    ]


def redrive(
    settings: KafkaSettings, dlq_topic: str, reason_contains: str | None = None
) -> RedriveResult:
    """Send the pending letters of ``<source>-dlq`` whose reason contains
    ``reason_contains`` (ignoring case; all of them if ``None``) back to ``<source>``,
    with their original key and bytes, and mark each as sent (see the module
    docstring). Letters whose ``dwh.source.topic`` is not ``<source>`` are refused and
    stay pending, as do those whose reason does not match. Raises
    :class:`RedriveRefused` for a topic that is not a dead-letter topic, or when
    ``<source>`` does not exist."""
    source = redrive_destination(dlq_topic)
    wanted = reason_contains.casefold() if reason_contains is not None else None
    survey = _survey(settings, dlq_topic, pending=True)
    send, skipped, refused = _plan(survey.letters, source, wanted)
    if send:
        _check_exists(settings, source, dlq_topic)
        _send(settings, dlq_topic, source, send)
    _commit_progress(settings, dlq_topic, _progress(survey, skipped + refused))
    log.info(
        "dead letters redriven",
        extra={"topic": dlq_topic, "sent": len(send), "skipped": len(skipped)},
    )
    return RedriveResult(
        len(send),
        len(skipped),
        tuple(
            RefusedLetter(e.partition, e.offset, e.headers.get(SOURCE_TOPIC_HEADER))
            for e in refused
        ),
    )


def redrive_destination(dlq_topic: str) -> str:
    """Where a redrive of ``dlq_topic`` sends letters: its name without ``-dlq``; raises
    :class:`RedriveRefused` naming it if it is not a dead-letter topic."""
    source = source_of_dead_letters(dlq_topic)
    if source is None:
        raise RedriveRefused(
            f"{dlq_topic} is not a dead-letter topic: a redrive reads only <source>-dlq "
            "topics, and sends their letters back to <source>"
        )
    return source


def _plan(
    letters: list[_Entry], source: str, wanted: str | None
) -> tuple[set[_Position], list[_Entry], list[_Entry]]:
    """(the positions to send, the letters skipped, the letters refused)."""
    send: set[_Position] = set()
    skipped: list[_Entry] = []
    refused: list[_Entry] = []
    for entry in letters:
        if entry.headers.get(SOURCE_TOPIC_HEADER) != source:
            refused.append(entry)
        elif wanted is None or wanted in entry.headers.get(REASON_HEADER, "").casefold():
            send.add((entry.partition, entry.offset))
        else:
            skipped.append(entry)
    return send, skipped, refused


def _check_exists(settings: KafkaSettings, source: str, dlq_topic: str) -> None:
    with _reader(settings) as consumer:
        if not partitions_of(consumer, source):
            raise RedriveRefused(
                f"{source}, where the letters of {dlq_topic} go back to, does not exist"
            )


def _send(settings: KafkaSettings, dlq_topic: str, source: str, send: set[_Position]) -> None:
    """Each letter back to the source, then, once the broker confirmed them, its mark."""
    producer = DeliveringProducer(settings)
    try:
        for batch in _fetch(settings, dlq_topic, send):
            producer.deliver(Record(source, m.value(), m.key()) for m in batch)
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            producer.deliver(_mark(dlq_topic, m, source, at) for m in batch)
    finally:
        producer.close()


def _mark(dlq_topic: str, message: Message, source: str, at: str) -> Record:
    headers = (
        (REDRIVEN_OFFSET_HEADER, str(message.offset()).encode()),
        (REDRIVEN_TO_HEADER, source.encode()),
        (REDRIVEN_AT_HEADER, at.encode()),
    )
    return Record(dlq_topic, None, None, headers, partition=message.partition())


def _progress(survey: _Survey, left: list[_Entry]) -> dict[int, int]:
    """Per partition read, the offset below which every letter is handled: the first
    letter left pending, or the end of what was read."""
    done = {p: end for p, (start, end) in survey.ranges.items() if start < end}
    for entry in left:
        done[entry.partition] = min(done[entry.partition], entry.offset)
    return done


def _commit_progress(settings: KafkaSettings, topic: str, done: Mapping[int, int]) -> None:
    if not done:
        return
    with _reader(settings) as consumer:
        offsets = [TopicPartition(topic, p, offset) for p, offset in sorted(done.items())]
        for partition in consumer.commit(offsets=offsets, asynchronous=False) or []:
            if partition.error is not None:
                raise KafkaException(partition.error)


def _survey(settings: KafkaSettings, topic: str, pending: bool) -> _Survey:
    """The letters of the topic from the beginning (or, ``pending``, from the redrive
    group's progress) to its end as it is now, without their values; ``pending`` leaves
    out those a redrive has marked."""
    entries: list[_Entry] = []
    marked: set[_Position] = set()
    with _reader(settings) as consumer:
        ranges = _ranges(consumer, topic, pending)
        for batch in _read(consumer, topic, ranges):
            for message in batch:
                headers = _headers(message)
                position = (message.partition() or 0, message.offset() or 0)
                if REDRIVEN_OFFSET_HEADER in headers:
                    marked.add((position[0], _int(headers[REDRIVEN_OFFSET_HEADER])))
                else:
                    entries.append(_Entry(*position, message.timestamp()[1], headers))
    letters = [
        _Entry(e.partition, e.offset, e.timestamp, e.headers, (e.partition, e.offset) in marked)
        for e in entries
    ]
    return _Survey(ranges, [e for e in letters if not (pending and e.redriven)])


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1  # a mark we did not write: it marks nothing


def _fetch(
    settings: KafkaSettings, topic: str, positions: Collection[_Position]
) -> Iterator[list[Message]]:
    """The messages at these positions, in fetched batches."""
    ranges: dict[int, tuple[int, int]] = {}
    for partition, offset in positions:
        low, high = ranges.get(partition, (offset, offset + 1))
        ranges[partition] = (min(low, offset), max(high, offset + 1))
    with _reader(settings) as consumer:
        for batch in _read(consumer, topic, ranges):
            chosen = [m for m in batch if (m.partition() or 0, m.offset() or 0) in positions]
            if chosen:
                yield chosen


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
    bounds = watermarks(consumer, topic, partitions)
    done = committed(consumer, topic, partitions) if pending else {}
    return {p: (_start(low, high, done.get(p, low)), high) for p, (low, high) in bounds.items()}


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
    if is_fatal(error):
        raise KafkaException(error)
    log.warning("consumer error, skipped", extra={"error": str(error)})


def _headers(message: Message) -> dict[str, str]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""
        for name, value in pairs
    }


def _stored(message: Message) -> StoredDeadLetter:
    return StoredDeadLetter(
        value=message.value(),
        key=message.key(),
        headers=_headers(message),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
    )


def _without_value(entry: _Entry) -> StoredDeadLetter:
    return StoredDeadLetter(
        None, None, entry.headers, entry.partition, entry.offset, entry.redriven
    )


def describe_refused(refused: RefusedLetter) -> str:
    """``partition:offset names <topic>`` (or ``names no source topic``), for reports."""
    names = f"names {shorten(refused.names)}" if refused.names else "names no source topic"
    return f"{refused.partition}:{refused.offset} {names}"
