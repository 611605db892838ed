"""Sending to Kafka and waiting for the broker to confirm: the publisher of a layer's
output and the dead-letter sink share one piece of produce-and-wait code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from attrs import frozen
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dwh_adapters.clock import SystemClock
from dwh_adapters.kafka._clients import is_fatal, log, new_producer
from dwh_adapters.kafka.admin import topic_max_message_bytes
from dwh_adapters.kafka.settings import KafkaSettings
from dwh_adapters.lifecycle import Closeable
from dwh_core.messages import DeadLetter, OutMessage
from dwh_core.ports import Clock

STAGE_HEADER = "dwh.stage"
REASON_HEADER = "dwh.reason"
SOURCE_TOPIC_HEADER = "dwh.source.topic"
SOURCE_PARTITION_HEADER = "dwh.source.partition"
SOURCE_OFFSET_HEADER = "dwh.source.offset"
REJECTED_AT_HEADER = "dwh.rejected.at"

DEFAULT_DELIVERY_TIMEOUT_S = 30.0
# librdkafka refuses, before sending, a message over its own ``message.max.bytes``
# (1,000,000 bytes by default), whatever the topic accepts: a worker could then never
# pass on, or dead-letter, a message that its source topic took. The limit that counts
# is each topic's ``max.message.bytes``, which the broker enforces (a refusal is a
# MessageRejected naming it); this one only has to be above any of them. 100 MiB is
# the broker's default ``socket.request.max.bytes``: no produce request can be larger.
PRODUCER_MESSAGE_MAX_BYTES = 100 * 1024 * 1024
_FLUSH_MARGIN_S = 5.0
_QUEUE_FULL_WAIT_S = 0.1

# Refusals of a message for what it is: sending it again cannot succeed.
_MESSAGE_FAULTS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
    }
)


class DeliveryFailed(Exception):
    """Not every message was confirmed by the broker (it is unreachable or refused
    them). Some may still have arrived: the caller sends the whole batch again, and
    the consumers downstream are idempotent."""


class MessageRejected(DeliveryFailed, ValueError):
    """The broker refuses a message for what it is (too large, malformed): a message
    error, so that the worker isolates and dead-letters it instead of retrying. For a
    message too large, ``str()`` says its size and what the topic accepts."""


class DeadLetterRefused(DeliveryFailed):
    """The dead-letter topic refuses a letter (it is larger than the topic accepts).
    Not a message error: dead-lettering the letter again could only fail again, and
    skipping it would lose the message. The worker retries, not ready, until the topic
    accepts it (its ``max.message.bytes`` above its source topic's, as ``dwh topics
    create`` makes it)."""


_Report = Callable[[KafkaError | None, Message], None]


@frozen
class Record:
    """One message to send; ``partition`` None lets the partitioner choose by key."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@frozen
class _Failure:
    error: KafkaError
    topic: str
    size: int


def _size(
    key: str | bytes | None,
    value: str | bytes | None,
    headers: Mapping[str, str | bytes | None] | Iterable[tuple[str, str | bytes | None]] | None,
) -> int:
    """Key, value and headers in bytes, about: what a topic's ``max.message.bytes``
    weighs (before compression)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    weight = sum(len(name) + len(data or b"") for name, data in pairs)
    return len(key or b"") + len(value or b"") + weight


class DeliveringProducer:
    """An idempotent producer (``acks=all``) created on first use; :meth:`deliver`
    returns only once the broker has confirmed every record, else raises
    :class:`DeliveryFailed` within about ``delivery_timeout_s``."""

    def __init__(
        self, settings: KafkaSettings, delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S
    ) -> None:
        self._settings = settings
        self._delivery_timeout_s = delivery_timeout_s
        self._producer: Producer | None = None
        # A topic's max.message.bytes, asked once: isolating an oversized message in a
        # batch of 2,000 takes a dozen failed deliveries.
        self._limits: dict[str, int | None] = {}

    def deliver(self, records: Iterable[Record]) -> int:
        """Send the records, each with its key and headers; the number sent."""
        producer = self._client()
        failures: list[_Failure] = []

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                size = _size(message.key(), message.value(), message.headers())
                failures.append(_Failure(error, message.topic() or "", size))

        topics: set[str] = set()
        sent = 0
        for record in records:
            topics.add(record.topic)
            sent += 1
            _produce(producer, record, report, failures)
        undelivered = producer.flush(self._delivery_timeout_s + _FLUSH_MARGIN_S)
        if failures or undelivered:
            self._fail(failures, undelivered, topics)
        return sent

    def close(self) -> None:
        """Wait (up to the delivery timeout) for what is still queued, then let go."""
        producer, self._producer = self._producer, None
        if producer is not None:
            left = producer.flush(self._delivery_timeout_s)
            if left:
                log.warning("producer closed with messages undelivered", extra={"left": left})

    def _client(self) -> Producer:
        if self._producer is None:
            self._producer = _new_producer(self._settings, self._delivery_timeout_s)
        return self._producer

    def _fail(self, failures: list[_Failure], undelivered: int, topics: set[str]) -> None:
        if any(is_fatal(failure.error) for failure in failures):
            self._producer = None  # a fatal error ends this producer; the next call makes one
        where = ", ".join(sorted(topics))
        if not failures:
            raise DeliveryFailed(
                f"{undelivered} message(s) to {where} still unconfirmed after "
                f"{self._delivery_timeout_s + _FLUSH_MARGIN_S:g}s"
            )
        count = len(failures) + undelivered
        if all(failure.error.code() in _MESSAGE_FAULTS for failure in failures):
            raise MessageRejected(f"{count} message(s) to {where} refused: {self._why(failures)}")
        raise DeliveryFailed(f"{count} message(s) to {where} not delivered: {failures[0].error}")

    def _why(self, failures: list[_Failure]) -> str:
        """The first refusal, and for one of size how large the message is and what its
        topic accepts: the reason its dead letter will carry."""
        sized = [f for f in failures if f.error.code() == KafkaError.MSG_SIZE_TOO_LARGE]
        if not sized:
            return str(failures[0].error.str())
        largest = max(sized, key=lambda failure: failure.size)
        return (
            f"{largest.size:,} bytes, more than {largest.topic} accepts "
            f"({self._limit(largest.topic)}; {largest.error.str()})"
        )

    def _limit(self, topic: str) -> str:
        if topic not in self._limits:
            try:
                self._limits[topic] = topic_max_message_bytes(self._settings, topic)
            except KafkaException as exc:  # only the wording of an error depends on it
                log.debug("max.message.bytes of %s unknown: %s", topic, exc)
                return "max.message.bytes unknown"
        limit = self._limits[topic]
        return "max.message.bytes unknown" if limit is None else f"max.message.bytes {limit:,}"


def _new_producer(settings: KafkaSettings, delivery_timeout_s: float) -> Producer:
    config = {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "message.max.bytes": PRODUCER_MESSAGE_MAX_BYTES,
    }
    try:
        return new_producer(settings, config)
    except KafkaException:  # a librdkafka built without lz4
        return new_producer(settings, {**config, "compression.type": "none"})


def _produce(producer: Producer, record: Record, report: _Report, failures: list[_Failure]) -> None:
    headers: list[tuple[str, str | bytes | None]] = list(record.headers)
    # confluent-kafka takes -1 (librdkafka's RD_KAFKA_PARTITION_UA) for "any partition"
    partition = -1 if record.partition is None else record.partition
    while True:
        try:
            producer.produce(
                record.topic,
                record.value,
                record.key,
                partition=partition,
                on_delivery=report,
                headers=headers or None,
            )
        except BufferError:
            producer.poll(_QUEUE_FULL_WAIT_S)  # the local queue is full: let it drain
            continue
        except KafkaException as exc:  # refused before sending, e.g. too large
            size = _size(record.key, record.value, record.headers)
            failures.append(_Failure(exc.args[0], record.topic, size))
        return


class _LazyProducing(Closeable):
    """Lifecycle shared by the publisher and the sink: a context manager whose
    ``close()`` waits for what is still queued."""

    def __init__(self, settings: KafkaSettings, delivery_timeout_s: float) -> None:
        self._producer = DeliveringProducer(settings, delivery_timeout_s)

    def close(self) -> None:
        self._producer.close()


class KafkaPublisher(_LazyProducing):
    """A layer's output topic (:class:`~dwh_core.ports.Publisher`): every message keyed
    by the source user id, so that a user's events stay in one partition, in order."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
    ) -> None:
        super().__init__(settings, delivery_timeout_s)
        self.topic = topic

    def publish(self, messages: Sequence[OutMessage]) -> None:
        if messages:
            self._producer.deliver(Record(self.topic, m.value, m.key) for m in messages)


class KafkaDeadLetterSink(_LazyProducing):
    """Dead letters (:class:`~dwh_core.ports.DeadLetterSink`): the original key and
    bytes, unchanged, to ``<source topic>-dlq``, with why and whence in headers.

    A letter is its original plus at most a few kilobytes of headers (the reason is
    bounded), so a dead-letter topic whose ``max.message.bytes`` is its source's plus
    headroom (:func:`~dwh_adapters.kafka.admin.ensure_topics`) takes every letter. One
    it refuses all the same raises :class:`DeadLetterRefused`, never MessageRejected."""

    def __init__(
        self,
        settings: KafkaSettings,
        clock: Clock | None = None,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
    ) -> None:
        super().__init__(settings, delivery_timeout_s)
        self._clock = clock or SystemClock()

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rejected_at = self._clock.now().isoformat(timespec="milliseconds") + "Z"
        try:
            self._producer.deliver(
                Record(
                    letter.topic,
                    letter.message.value,
                    letter.message.key,
                    dead_letter_headers(letter, rejected_at),
                )
                for letter in letters
            )
        except MessageRejected as exc:
            raise DeadLetterRefused(
                f"a dead-letter topic refuses a letter ({exc}); raise its max.message.bytes "
                "above its source topic's (dwh topics create does)"
            ) from exc


def dead_letter_headers(letter: DeadLetter, rejected_at: str) -> tuple[tuple[str, bytes], ...]:
    message = letter.message
    return tuple(
        (name, text.encode("utf-8"))
        for name, text in (
            (STAGE_HEADER, letter.stage),
            (REASON_HEADER, letter.reason),
            (SOURCE_TOPIC_HEADER, message.topic),
            (SOURCE_PARTITION_HEADER, str(message.partition)),
            (SOURCE_OFFSET_HEADER, str(message.offset)),
            (REJECTED_AT_HEADER, rejected_at),
        )
    )
