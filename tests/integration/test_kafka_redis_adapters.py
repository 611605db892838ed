"""The Kafka and Redis adapters against the local stack (`scripts/stack up`).

One contract suite per port runs against the in-memory adapter and the real one, so the
fakes cannot drift; the tests after them cover what only the real adapters have (consumer
groups, commits, lag, dead-letter headers, redrive). Every topic, group and key is unique
per test; nothing sleeps: waiting is polling with a deadline.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
from attrs import frozen
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from dwh_adapters.kafka import (
    DeliveryFailed,
    KafkaBatchConsumer,
    KafkaDeadLetterSink,
    KafkaPublisher,
    KafkaSettings,
    MessageRejected,
    RedriveResult,
    consumer_group_lag,
    delete_topics,
    ensure_topics,
    group_members,
    read_dead_letters,
    redrive,
    topic_message_count,
    wait_for_broker,
)
from dwh_adapters.kafka.admin import dead_letter_max_bytes, topic_max_message_bytes
from dwh_adapters.kafka.producer import DeadLetterRefused
from dwh_adapters.memory import (
    InMemoryDeadLetters,
    InMemoryDictionaries,
    InMemoryPublisher,
    InMemoryTopics,
)
from dwh_adapters.redis import RedisDictionaryReader, RedisDictionaryWriter, RedisSettings
from dwh_core.messages import MAX_REASON, DeadLetter, InMessage, OutMessage, dead_letter_topic
from dwh_core.ports import DeadLetterSink, DictionaryReader, Publisher

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


KAFKA = KafkaSettings(f"{_env('KAFKA_HOST', '127.0.0.1')}:{_env('KAFKA_PORT', '9092')}")
REDIS = RedisSettings(_env("REDIS_HOST", "127.0.0.1"), int(_env("REDIS_PORT", "6379")))


def unique(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kafka() -> KafkaSettings:
    wait_for_broker(KAFKA, timeout=60)
    return KAFKA


@pytest.fixture
def new_topic(kafka: KafkaSettings) -> Iterator[Callable[[], str]]:
    """Makes unique topics (3 partitions, with their dead-letter topics); deletes them."""
    made: list[str] = []

    def make() -> str:
        topic = unique("topic")
        made.extend([topic, dead_letter_topic(topic)])
        ensure_topics(kafka, [topic, dead_letter_topic(topic)], partitions=3)
        return topic

    yield make
    delete_topics(kafka, made)


def consumer(topic: str, group: str | None = None, batch_size: int = 500) -> KafkaBatchConsumer:
    return KafkaBatchConsumer(KAFKA, group or unique("group"), topic, batch_size, 0.2)


def drain(source: KafkaBatchConsumer, count: int, commit: bool = True) -> list[InMessage]:
    """Consume (and commit) batches until ``count`` messages have come."""
    read: list[InMessage] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(read) < count:
        assert time.monotonic() < deadline, f"read {len(read)} of {count} messages"
        batch = source.consume()
        if commit:
            source.commit(batch)
        read.extend(batch)
    return read


def read_topic(topic: str, count: int) -> list[InMessage]:
    """The first ``count`` messages of the topic, in offset order per partition."""
    with consumer(topic) as reader:
        messages = drain(reader, count, commit=False)
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def user_key(number: int) -> bytes:
    return f"626a81ce{number:016x}".encode()


# ------------------------------------------------------------------------ Publisher contract


@frozen
class PublisherUnderTest:
    publisher: Publisher
    read: Callable[[int], list[InMessage]]


@pytest.fixture(params=["memory", "kafka"])
def publisher(request: pytest.FixtureRequest) -> Iterator[PublisherUnderTest]:
    if request.param == "memory":
        topics = InMemoryTopics()
        yield PublisherUnderTest(
            InMemoryPublisher(topics, "out"), lambda _count: list(topics.messages["out"])
        )
        return
    topic = request.getfixturevalue("new_topic")()
    with KafkaPublisher(KAFKA, topic) as real:
        yield PublisherUnderTest(real, lambda count: read_topic(topic, count))


def test_everything_published_is_on_the_topic_keyed_by_user_in_order_per_user(
    publisher: PublisherUnderTest,
) -> None:
    batches = [
        [
            OutMessage(user_key(n % 7), f'{{"seq": {b * 100 + n}, "name": "Рис №{n}"}}'.encode())
            for n in range(40)
        ]
        for b in range(3)
    ]
    for batch in batches:
        publisher.publisher.publish(batch)
    publisher.publisher.publish([])

    sent = [message for batch in batches for message in batch]
    read = publisher.read(len(sent))

    assert Counter((m.key, m.value) for m in read) == Counter((m.key, m.value) for m in sent)
    for number in range(7):
        key = user_key(number)
        assert [m.value for m in read if m.key == key] == [m.value for m in sent if m.key == key]
        assert len({m.partition for m in read if m.key == key}) == 1


# ------------------------------------------------------------------- DeadLetterSink contract


@frozen
class SinkUnderTest:
    sink: DeadLetterSink
    source_topic: str
    read_dead_letters: Callable[[int], list[InMessage]]


@pytest.fixture(params=["memory", "kafka"])
def sink(request: pytest.FixtureRequest) -> Iterator[SinkUnderTest]:
    if request.param == "memory":
        topics = InMemoryTopics()
        yield SinkUnderTest(
            InMemoryDeadLetters(topics),
            "source",
            lambda _count: list(topics.messages[dead_letter_topic("source")]),
        )
        return
    topic = request.getfixturevalue("new_topic")()
    with KafkaDeadLetterSink(KAFKA) as real:
        yield SinkUnderTest(real, topic, lambda n: read_topic(dead_letter_topic(topic), n))


ODD_VALUES: list[tuple[bytes | None, bytes | None]] = [
    (None, b"{not json"),
    (None, None),
    (user_key(1), '{"name": "Кофейня №1; \\"quoted\\""}'.encode()),
    (user_key(2), bytes(range(256))),
    (None, b""),
]


def letters_from(
    topic: str, values: Sequence[tuple[bytes | None, bytes | None]]
) -> list[DeadLetter]:
    return [
        DeadLetter(
            InMessage(value=value, topic=topic, partition=n % 3, offset=1000 + n, key=key),
            "stg",
            f"reason {n}:\n  not an order",
        )
        for n, (key, value) in enumerate(values)
    ]


def test_dead_letters_keep_the_original_key_and_bytes_unchanged_on_the_dlq_topic(
    sink: SinkUnderTest,
) -> None:
    sink.sink.send(letters_from(sink.source_topic, ODD_VALUES))
    sink.sink.send([])

    stored = sink.read_dead_letters(len(ODD_VALUES))

    assert Counter((m.key, m.value) for m in stored) == Counter(ODD_VALUES)
    assert {m.topic for m in stored} == {dead_letter_topic(sink.source_topic)}


# ----------------------------------------------------------------- DictionaryReader contract


@pytest.fixture(params=["memory", "redis"])
def dictionaries(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[dict[str, bytes]], DictionaryReader]]:
    if request.param == "memory":
        yield InMemoryDictionaries
        return
    written: list[str] = []

    def load(entries: dict[str, bytes]) -> DictionaryReader:
        with RedisDictionaryWriter(REDIS) as writer:
            writer.put_many(entries)
        written.extend(entries)
        return reader

    with RedisDictionaryReader(REDIS) as reader:
        yield load
    client = REDIS.client()
    if written:
        client.delete(*written)
    client.close()


def test_present_ids_come_back_as_raw_bytes_and_absent_ids_are_left_out(
    dictionaries: Callable[[dict[str, bytes]], DictionaryReader],
) -> None:
    prefix = uuid.uuid4().hex[:16]
    user_id, restaurant_id, absent_id = (f"{prefix}{n:08x}" for n in range(3))
    entries = {
        user_id: f'{{"_id": "{user_id}", "name": "Котова Ольга Вениаминовна"}}'.encode(),
        restaurant_id: f'{{"_id": "{restaurant_id}", "name": "Кофейня №1"}}'.encode(),
    }
    reader = dictionaries(entries)

    assert reader.fetch([absent_id, restaurant_id, user_id, user_id]) == entries
    assert reader.fetch({absent_id}) == {}
    assert reader.fetch([]) == {}


# ------------------------------------------------------------------------ Kafka consumer


def test_a_new_consumer_in_the_group_resumes_after_the_last_commit(
    new_topic: Callable[[], str],
) -> None:
    topic = new_topic()
    group = unique("group")
    sent = [OutMessage(user_key(n), f"message {n}".encode()) for n in range(30)]
    with KafkaPublisher(KAFKA, topic) as publisher:
        publisher.publish(sent)

    with consumer(topic, group, batch_size=10) as first:
        committed = drain(first, 1)
        assert first.assignment == {0, 1, 2}
    with consumer(topic, group, batch_size=10) as second:
        rest = drain(second, len(sent) - len(committed))

    assert 1 <= len(committed) <= 10
    assert Counter(m.value for m in committed + rest) == Counter(m.value for m in sent)
    assert topic_message_count(KAFKA, topic) == len(sent)
    assert sum(consumer_group_lag(KAFKA, group, topic).values()) == 0


def test_two_consumers_in_a_group_split_the_partitions_and_read_everything_once(
    new_topic: Callable[[], str],
) -> None:
    topic = new_topic()
    group = unique("group")
    with consumer(topic, group, batch_size=20) as one, consumer(topic, group, batch_size=20) as two:
        deadline = time.monotonic() + DEADLINE_S
        while not (
            one.assignment and two.assignment and one.assignment | two.assignment == {0, 1, 2}
        ):
            assert time.monotonic() < deadline, (one.assignment, two.assignment)
            assert one.consume() == two.consume() == []
        assert not one.assignment & two.assignment
        assert group_members(KAFKA, group) == 2
        sent = [OutMessage(user_key(n), f"message {n}".encode()) for n in range(200)]
        with KafkaPublisher(KAFKA, topic) as publisher:
            publisher.publish(sent)

        read: dict[str, list[InMessage]] = {"one": [], "two": []}
        while len(read["one"]) + len(read["two"]) < len(sent):
            assert time.monotonic() < deadline
            for name, member in (("one", one), ("two", two)):
                batch = member.consume()
                member.commit(batch)
                read[name].extend(batch)

        assert {m.partition for m in read["one"]} <= one.assignment
        assert {m.partition for m in read["two"]} <= two.assignment
    assert read["one"] and read["two"]
    everything = read["one"] + read["two"]
    assert Counter(m.value for m in everything) == Counter(m.value for m in sent)
    assert sum(consumer_group_lag(KAFKA, group, topic).values()) == 0


def test_lag_falls_to_zero_once_everything_is_consumed_and_committed(
    new_topic: Callable[[], str],
) -> None:
    topic = new_topic()
    with KafkaPublisher(KAFKA, topic) as publisher:
        publisher.publish([OutMessage(user_key(n), b"x") for n in range(60)])

    with consumer(topic, batch_size=10) as member:
        assert member.lag() == {}
        first = drain(member, 1)
        assert 0 < sum(member.lag().values()) <= 60 - len(first)
        drain(member, 60 - len(first))
        assert member.lag() == {0: 0, 1: 0, 2: 0}


# ---------------------------------------------------------------------- Kafka dead letters


def test_dead_letters_carry_stage_reason_and_origin_in_headers(
    new_topic: Callable[[], str],
) -> None:
    source = new_topic()
    with KafkaDeadLetterSink(KAFKA) as sink:
        sink.send(letters_from(source, ODD_VALUES))

    stored = read_dead_letters(KAFKA, dead_letter_topic(source))

    assert len(stored) == len(ODD_VALUES)
    by_offset = {int(letter.headers["dwh.source.offset"]): letter for letter in stored}
    for n, (key, value) in enumerate(ODD_VALUES):
        letter = by_offset[1000 + n]
        assert (letter.key, letter.value) == (key, value)
        assert letter.headers["dwh.stage"] == "stg"
        assert letter.headers["dwh.reason"] == f"reason {n}: not an order"
        assert letter.reason == f"reason {n}: not an order"
        assert letter.headers["dwh.source.topic"] == source
        assert letter.headers["dwh.source.partition"] == str(n % 3)
        assert letter.headers["dwh.rejected.at"].endswith("Z")
    assert len(read_dead_letters(KAFKA, dead_letter_topic(source), limit=2)) == 2


def test_redrive_sends_matching_letters_back_once_and_leaves_the_others_for_later(
    new_topic: Callable[[], str],
) -> None:
    source = new_topic()
    dlq = dead_letter_topic(source)
    users: list[tuple[bytes | None, bytes | None]] = [
        (None, f'{{"order": {n}, "user": "missing"}}'.encode()) for n in range(4)
    ]
    restaurants: list[tuple[bytes | None, bytes | None]] = [
        (user_key(n), f'{{"order": {n}, "restaurant": "missing"}}'.encode()) for n in range(3)
    ]
    letters = letters_from(source, users + restaurants)
    letters = [
        DeadLetter(letter.message, "stg", "unknown user 626a: not in the dictionaries")
        if n < len(users)
        else DeadLetter(letter.message, "stg", "unknown restaurant ef8c: not in the dictionaries")
        for n, letter in enumerate(letters)
    ]
    with KafkaDeadLetterSink(KAFKA) as sink:
        sink.send(letters)

    first = redrive(KAFKA, dlq, reason_contains="Unknown USER")
    again = redrive(KAFKA, dlq, reason_contains="unknown user")

    assert (first.sent, first.skipped) == (4, 3)
    assert (again.sent, again.skipped) == (0, 3)
    assert Counter((m.key, m.value) for m in read_topic(source, 4)) == Counter(users)
    pending = read_dead_letters(KAFKA, dlq, pending=True)
    assert Counter((m.key, m.value) for m in pending) == Counter(restaurants)
    assert {letter.reason for letter in pending} == {
        "unknown restaurant ef8c: not in the dictionaries"
    }

    rest = redrive(KAFKA, dlq)
    nothing = redrive(KAFKA, dlq)

    assert (rest.sent, rest.skipped) == (3, 0)
    assert (nothing.sent, nothing.skipped) == (0, 0)
    assert topic_message_count(KAFKA, source) == len(users) + len(restaurants)
    assert Counter((m.key, m.value) for m in read_topic(source, 7)) == Counter(users + restaurants)
    assert read_dead_letters(KAFKA, dlq, pending=True) == []


def test_a_topic_or_group_that_does_not_exist_is_empty_and_redrives_nothing(
    kafka: KafkaSettings,
) -> None:
    assert redrive(kafka, unique("absent") + "-dlq") == RedriveResult(sent=0, skipped=0)
    assert read_dead_letters(kafka, unique("absent") + "-dlq") == []
    assert group_members(kafka, unique("absent")) == 0
    assert consumer_group_lag(kafka, unique("absent"), unique("absent")) == {}
    assert topic_message_count(kafka, unique("absent")) == 0


# ------------------------------------------------------------------------ failures


def test_publishing_to_an_unreachable_broker_fails_clearly_within_seconds() -> None:
    unreachable = KafkaSettings("127.0.0.1:1")
    started = time.monotonic()
    with (
        pytest.raises(DeliveryFailed, match=r"2 message\(s\) to orders not delivered: .*timed out"),
        KafkaPublisher(unreachable, "orders", delivery_timeout_s=2.0) as publisher,
    ):
        publisher.publish([OutMessage(b"k", b"one"), OutMessage(b"k", b"two")])
    assert time.monotonic() - started < 10


def test_a_message_too_large_for_the_broker_is_a_message_error_naming_its_size_and_the_limit(
    new_topic: Callable[[], str],
) -> None:
    topic = new_topic()
    limit = known_limit(KAFKA, topic)
    huge = os.urandom(2_000_000)  # incompressible: the broker weighs the compressed batch
    with (
        pytest.raises(MessageRejected) as raised,
        KafkaPublisher(KAFKA, topic) as publisher,
    ):
        publisher.publish([OutMessage(b"k", b"small"), OutMessage(b"k", huge)])

    assert isinstance(raised.value, ValueError)
    assert f"2,000,001 bytes, more than {topic} accepts (max.message.bytes {limit:,}" in str(
        raised.value
    )
    assert "too large" in str(raised.value)


def test_a_dead_letter_the_topic_refuses_is_not_a_message_error_so_the_worker_retries(
    kafka: KafkaSettings,
) -> None:
    source = unique("tight")
    dlq = dead_letter_topic(source)
    create_by_hand(kafka, dlq, {"max.message.bytes": "100000"})  # smaller than any source
    try:
        letter = DeadLetter(InMessage(os.urandom(200_000), source, 0, 7), "stg", "bad value")
        with (
            pytest.raises(DeadLetterRefused, match=r"raise its max\.message\.bytes") as raised,
            KafkaDeadLetterSink(kafka) as sink,
        ):
            sink.send([letter])

        assert not isinstance(raised.value, ValueError)  # so errors.is_transient says retry
        assert f"more than {dlq} accepts (max.message.bytes 100,000" in str(raised.value)
    finally:
        delete_topics(kafka, [dlq])


def create_by_hand(kafka: KafkaSettings, topic: str, config: dict[str, str]) -> None:
    """A topic made as ensure_topics never would: with exactly this configuration."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    futures = admin.create_topics([NewTopic(topic, 1, config=config)])
    futures[topic].result(timeout=DEADLINE_S)


def known_limit(kafka: KafkaSettings, topic: str) -> int:
    """The topic's max.message.bytes, once the broker knows the new topic."""
    deadline = time.monotonic() + DEADLINE_S
    while (limit := topic_max_message_bytes(kafka, topic)) is None:
        assert time.monotonic() < deadline, f"{topic} unknown to the broker"
        time.sleep(0.1)
    return limit


def test_the_producer_passes_on_a_message_over_librdkafkas_default_that_the_topic_accepts() -> None:
    topic = unique("big")
    ensure_topics(KAFKA, [topic], partitions=1, config={"max.message.bytes": str(3 * 2**20)})
    try:
        value = os.urandom(2_500_000)  # over librdkafka's default message.max.bytes (1,000,000)
        with KafkaPublisher(KAFKA, topic) as publisher:
            publisher.publish([OutMessage(b"k", value)])
        assert [m.value for m in read_topic(topic, 1)] == [value]
    finally:
        delete_topics(KAFKA, [topic])


def test_a_dead_letter_topic_is_made_to_take_what_its_source_takes_plus_headroom(
    kafka: KafkaSettings,
) -> None:
    source, existing = unique("src"), unique("old")
    topics = [source, dead_letter_topic(source), existing, dead_letter_topic(existing)]
    try:
        ensure_topics(kafka, [existing], partitions=1)
        create_by_hand(kafka, dead_letter_topic(existing), {})  # as the source: too small
        default = known_limit(kafka, existing)
        assert known_limit(kafka, dead_letter_topic(existing)) == default
        created = ensure_topics(
            kafka,
            [dead_letter_topic(source), source, dead_letter_topic(existing)],
            partitions=1,
            config={"max.message.bytes": str(5 * 2**20)},
        )

        assert created == [source, dead_letter_topic(source)]
        assert topic_max_message_bytes(kafka, source) == 5 * 2**20
        assert topic_max_message_bytes(kafka, dead_letter_topic(source)) == dead_letter_max_bytes(
            5 * 2**20
        )
        # an existing dead-letter topic is raised to fit its source's (the broker default)
        assert topic_max_message_bytes(kafka, dead_letter_topic(existing)) == (
            dead_letter_max_bytes(default)
        )
        assert dead_letter_max_bytes(default) > default + MAX_REASON * 4 + 1000
    finally:
        delete_topics(kafka, topics)


def test_consuming_a_topic_that_does_not_exist_yet_gives_empty_batches(
    kafka: KafkaSettings,
) -> None:
    with consumer(unique("not-yet")) as member:
        assert member.consume() == member.consume() == []
