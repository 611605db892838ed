"""``dwh dead-letters redrive`` on the real broker: only from a ``<source>-dlq`` topic,
only to ``<source>``, each letter at most once, and the letters a selective redrive
skips stay where they are, once, for a later one (docs/operations.md, Dead letters).

Every test has topics of its own; the letters are written as a worker writes them
(KafkaDeadLetterSink), or by hand where a test needs headers no worker writes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from dwh_adapters.kafka import (
    KafkaDeadLetterSink,
    KafkaSettings,
    delete_topics,
    ensure_topics,
    read_dead_letters,
    topic_message_count,
    wait_for_broker,
)
from dwh_adapters.kafka.producer import DeliveringProducer, Record, dead_letter_headers
from dwh_core.messages import DeadLetter, InMessage, dead_letter_topic
from tests.support.cli import dwh
from tests.support.processes import KAFKA

pytestmark = pytest.mark.integration

USER = "unknown user 626a81ce: not in the dictionaries"
RESTAURANT = "unknown restaurant ef8c: not in the dictionaries"


@pytest.fixture(scope="module")
def kafka() -> KafkaSettings:
    wait_for_broker(KAFKA, timeout=60)
    return KAFKA


@pytest.fixture
def source(kafka: KafkaSettings) -> Iterator[str]:
    """A new source topic and its dead-letter topic (2 partitions each); deleted after."""
    topic = f"it-redrive-{uuid.uuid4().hex[:10]}"
    made = [topic, dead_letter_topic(topic)]
    ensure_topics(kafka, made, partitions=2)
    yield topic
    delete_topics(kafka, made)


def dead_letter(source: str, n: int, reason: str) -> DeadLetter:
    value = f'{{"order": {n}}}'.encode()
    return DeadLetter(InMessage(value, source, n % 2, 100 + n, key=f"k{n}".encode()), "stg", reason)


def send_letters(source: str, reasons: list[str]) -> list[DeadLetter]:
    """Dead letters of ``source`` as the worker sends them, the n-th with reasons[n]."""
    letters = [dead_letter(source, n, reason) for n, reason in enumerate(reasons)]
    with KafkaDeadLetterSink(KAFKA) as sink:
        sink.send(letters)
    return letters


def originals(letters: list[DeadLetter]) -> Counter[tuple[bytes | None, bytes | None]]:
    return Counter((letter.message.key, letter.message.value) for letter in letters)


def in_topic(topic: str) -> Counter[tuple[bytes | None, bytes | None]]:
    """Every (key, value) in the topic; read as dead letters, which any topic can be."""
    return Counter((m.key, m.value) for m in read_dead_letters(KAFKA, topic))


def pending(dlq: str) -> Counter[tuple[bytes | None, bytes | None]]:
    return Counter((m.key, m.value) for m in read_dead_letters(KAFKA, dlq, pending=True))


def test_a_letter_whose_header_names_another_topic_is_refused_reported_and_left_pending(
    capsys: pytest.CaptureFixture[str], source: str, kafka: KafkaSettings
) -> None:
    dlq = dead_letter_topic(source)
    elsewhere = f"{source}-elsewhere"
    good = send_letters(source, [USER])
    # Letters in this dead-letter topic whose headers name another topic, or none.
    stray = dead_letter(elsewhere, 5, USER)
    headless = dead_letter(source, 7, USER)
    producer = DeliveringProducer(kafka)
    try:
        producer.deliver(
            [
                Record(
                    dlq, stray.message.value, stray.message.key, dead_letter_headers(stray, "t")
                ),
                Record(dlq, headless.message.value, headless.message.key, (), partition=1),
            ]
        )
    finally:
        producer.close()

    code, out, _ = dwh(capsys, "dead-letters", "redrive", "--topic", dlq)

    assert code == 0
    assert f"re-drove 1 dead letter(s) from {dlq} to {source}; 0 left pending" in out
    assert f"refused 2 letter(s) whose dwh.source.topic is not {source}, left pending" in out
    assert f"names '{elsewhere}'" in out
    assert "names no source topic" in out
    assert in_topic(source) == originals(good)
    assert topic_message_count(kafka, elsewhere) == 0
    assert pending(dlq) == originals([stray, headless])

    again = dwh(capsys, "dead-letters", "redrive", "--topic", dlq)[1]

    assert f"re-drove 0 dead letter(s) from {dlq} to {source}" in again
    assert "refused 2 letter(s)" in again
    assert in_topic(source) == originals(good)


def test_a_selective_redrive_leaves_each_skipped_letter_exactly_once_where_it_was(
    capsys: pytest.CaptureFixture[str], source: str
) -> None:
    dlq = dead_letter_topic(source)
    letters = send_letters(source, [USER, RESTAURANT, USER, RESTAURANT, RESTAURANT, USER])
    users = [letter for letter in letters if letter.reason == USER]
    restaurants = [letter for letter in letters if letter.reason == RESTAURANT]
    stored_before = read_dead_letters(KAFKA, dlq)

    code, out, _ = dwh(capsys, "dead-letters", "redrive", "--topic", dlq, "--reason", "USER")

    assert code == 0
    assert f"re-drove 3 dead letter(s) from {dlq} to {source}; 3 left pending" in out
    assert in_topic(source) == originals(users)
    # no copy anywhere: the dead-letter topic holds each letter once, at its old place
    stored_after = read_dead_letters(KAFKA, dlq)
    assert [(s.partition, s.offset, s.value) for s in stored_after] == [
        (s.partition, s.offset, s.value) for s in stored_before
    ]
    assert {(s.value, s.redriven) for s in stored_after} == {
        *((letter.message.value, True) for letter in users),
        *((letter.message.value, False) for letter in restaurants),
    }
    assert pending(dlq) == originals(restaurants)
    code, out, _ = dwh(capsys, "dead-letters", "list", "--topic", dlq)
    assert f"3 dead letter(s) in {dlq}" in out
    assert out.count(RESTAURANT) == 3


def test_redriving_twice_sends_each_letter_once_and_a_later_redrive_finds_the_skipped_ones(
    capsys: pytest.CaptureFixture[str], source: str
) -> None:
    dlq = dead_letter_topic(source)
    letters = send_letters(source, [RESTAURANT, USER, USER, RESTAURANT])
    users = [letter for letter in letters if letter.reason == USER]

    def redrive(*more: str) -> str:
        code, out, _ = dwh(capsys, "dead-letters", "redrive", "--topic", dlq, *more)
        assert code == 0
        return out

    first = redrive("--reason", "unknown user")
    second = redrive("--reason", "unknown user")

    assert "re-drove 2 dead letter(s)" in first
    assert "re-drove 0 dead letter(s)" in second
    assert "2 left pending" in second
    assert in_topic(source) == originals(users)

    everything = redrive()
    nothing = redrive()

    assert "re-drove 2 dead letter(s)" in everything
    assert f"re-drove 0 dead letter(s) from {dlq} to {source}; 0 left pending" in nothing
    assert in_topic(source) == originals(letters)  # each exactly once
    assert pending(dlq) == Counter()

    # A re-driven message that fails again is a new letter, and a redrive sends it.
    [again] = send_letters(source, [USER])
    assert "re-drove 1 dead letter(s)" in redrive()
    assert in_topic(source) == originals(letters) + originals([again])
