"""Messages at the broker's size limit through a real STG worker: each is processed or
dead-lettered, unchanged, with a short reason naming the real problem; the worker never
restarts and its memory stays bounded.

The source topic is raised to 5 MiB (``max.message.bytes``) and every hostile message is
just under that, of random letters, so that compression cannot shrink it below the
limit. The worker's output topic accepts less than its source, as when only the source
was raised: an order whose enriched form is too big for it must become a dead letter of
the original, with a reason that says so.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dwh_adapters.kafka import (
    KafkaBatchConsumer,
    StoredDeadLetter,
    delete_topics,
    ensure_topics,
    read_dead_letters,
    topic_message_count,
)
from dwh_adapters.kafka.admin import dead_letter_max_bytes, topic_max_message_bytes
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.redis import RedisDictionaryWriter
from dwh_core.messages import MAX_REASON, dead_letter_topic
from dwh_workers.sample import dictionary_entries, sample_dictionaries
from dwh_workers.topology import Topology
from tests.support.builders import order, to_bytes
from tests.support.databases import fresh_database
from tests.support.processes import KAFKA, REDIS, WorkerProcess, produce, start_worker, wait_for

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=31, users=3, restaurants=1)
SOURCE_LIMIT = 5 * 2**20
OUTPUT_LIMIT = 256 * 2**10  # less than the source accepts
NEAR_LIMIT = SOURCE_LIMIT - 16 * 2**10  # room for the record's framing
MEMORY_BOUND_KB = 300 * 1024
DEADLINE_S = 180.0


def letters(length: int, seed: int) -> str:
    """Random ASCII letters: lz4 finds nothing to shrink in them."""
    return "".join(random.Random(seed).choices(string.ascii_letters, k=length))


def valid_order(object_id: int, items: int = 1) -> dict[str, Any]:
    user = DICTIONARIES.users[object_id % len(DICTIONARIES.users)]
    place = DICTIONARIES.restaurants[0]
    return order(object_id, user["_id"], place, [0] * items, "CLOSED", 600 + object_id)


def padded(document: dict[str, Any], path: tuple[str | int, ...], seed: int) -> bytes:
    """The document with the string at ``path`` grown until the whole is NEAR_LIMIT bytes."""
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = ""
    room = NEAR_LIMIT - len(to_bytes(document))
    target[path[-1]] = letters(room, seed)
    value = to_bytes(document)
    assert len(value) == NEAR_LIMIT
    return value


def output_too_big() -> bytes:
    """A valid order whose enriched form is larger than the output topic accepts: many
    items, each with its own name of the longest text allowed."""
    document = valid_order(7, items=800)
    for n, item in enumerate(document["payload"]["order_items"]):
        item["name"] = letters(500, seed=1000 + n)
    return to_bytes(document)


def hostile() -> dict[bytes, str]:
    """Each message, with what its dead letter's reason must say (empty: processed)."""
    extra = valid_order(4)
    extra["note"] = ""
    payload_date = ("payload", "update_ts")
    return {
        padded(valid_order(1), ("object_type",), seed=1): "$.object_type: expected 'order'",
        padded(valid_order(2), payload_date, seed=2): "$.payload.update_ts: expected timestamp",
        padded(valid_order(3), ("payload", "order_items", 0, "name"), seed=3): (
            "$.payload.order_items[0].name: text of"
        ),
        padded(extra, ("note",), seed=4): "",  # an unknown field is tolerated: processed
        letters(NEAR_LIMIT, seed=5).encode(): "not JSON",
        output_too_big(): "bytes, more than {output} accepts (max.message.bytes 262,144",
    }


@pytest.fixture
def topology() -> Iterator[Topology]:
    with fresh_database(BASE) as warehouse:
        topology = Topology(dbname=warehouse.dbname)
        source, output = topology.topic("stg"), topology.destination("stg") or ""
        topics = [source, dead_letter_topic(source), output]
        limits = {"max.message.bytes": str(SOURCE_LIMIT)}
        ensure_topics(KAFKA, [source, dead_letter_topic(source)], partitions=1, config=limits)
        ensure_topics(KAFKA, [output], 1, {"max.message.bytes": str(OUTPUT_LIMIT)})
        with RedisDictionaryWriter(REDIS) as writer:
            writer.put_many(dictionary_entries(DICTIONARIES))
        try:
            yield topology
        finally:
            delete_topics(KAFKA, topics)


def rss_kb(worker: WorkerProcess, field: str = "VmRSS") -> int:
    """The worker's resident memory (or its peak, ``VmHWM``) in KiB, from /proc."""
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{worker.process.pid}/status")


def output_ids(topic: str, count: int) -> list[int]:
    """The order ids of the first ``count`` messages of the output topic, sorted."""
    read: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    with KafkaBatchConsumer(KAFKA, f"reader-{uuid.uuid4().hex}", topic, 100, 0.2) as reader:
        while len(read) < count:
            assert time.monotonic() < deadline, f"{len(read)} of {count} orders in {topic}"
            read += [json.loads(m.value or b"")["object_id"] for m in reader.consume()]
    return sorted(read)


def test_messages_at_the_size_limit_are_processed_or_dead_lettered_unchanged_with_short_reasons(
    topology: Topology,
) -> None:
    source, output = topology.topic("stg"), topology.destination("stg") or ""
    dlq = dead_letter_topic(source)
    wait_for(
        lambda: topic_max_message_bytes(KAFKA, dlq) == dead_letter_max_bytes(SOURCE_LIMIT),
        30,
        f"{dlq} to accept what its source accepts plus headroom",
    )
    expected = hostile()
    dead = {value: reason for value, reason in expected.items() if reason}
    worker = start_worker(topology, "stg", {"DWH_BATCH_SIZE": "50"})
    try:
        produce(source, [to_bytes(valid_order(10))])
        assert output_ids(output, 1) == [10]
        before = rss_kb(worker)

        produce(source, [*expected, to_bytes(valid_order(11))], chunk=1)
        wait_for(lambda: topic_message_count(KAFKA, dlq) >= len(dead), DEADLINE_S, "the letters")
        assert output_ids(output, 3) == [4, 10, 11]
        after, peak = rss_kb(worker), rss_kb(worker, "VmHWM")
        assert worker.process.poll() is None, f"the worker exited; log: {worker.log_path}"
    finally:
        code = worker.terminate()
    assert code == 0, f"log: {worker.log_path}"

    stored: dict[bytes | None, StoredDeadLetter] = {
        letter.value: letter for letter in read_dead_letters(KAFKA, dlq)
    }
    assert set(stored) == set(dead)  # the original bytes, unchanged, each once
    assert topic_message_count(KAFKA, dlq) == len(dead)
    for value, says in dead.items():
        reason = stored[value].reason
        assert len(reason) <= MAX_REASON
        assert len(reason.encode()) <= 4 * MAX_REASON
        assert says.format(output=output) in reason, reason
        assert stored[value].headers["dwh.stage"] == "stg"
    print(f"RSS before {before} KiB, after {after} KiB, peak {peak} KiB")
    assert after < MEMORY_BOUND_KB
    assert peak < MEMORY_BOUND_KB
