"""Smoke tests for the local stack (`scripts/stack up`): Kafka, Redis and PostgreSQL really work.

Connection settings come from the same environment variables the workers use (docs/CONTRACT.md §6),
defaulting to the local stack on 127.0.0.1. Every name (topic, group, key, schema) is unique per
test, so the tests can run against a shared stack and in any order. Nothing sleeps: waiting is
polling with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it without __all__
from psycopg import sql

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


KAFKA_BOOTSTRAP = f"{_env('KAFKA_HOST', '127.0.0.1')}:{_env('KAFKA_PORT', '9092')}"
REDIS_HOST = _env("REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(_env("REDIS_PORT", "6379"))
PG_CONNINFO = psycopg.conninfo.make_conninfo(
    host=_env("PG_WAREHOUSE_HOST", "127.0.0.1"),
    port=_env("PG_WAREHOUSE_PORT", "5432"),
    dbname=_env("PG_WAREHOUSE_DBNAME", "de"),
    user=_env("PG_WAREHOUSE_USER", "dwh"),
    password=_env("PG_WAREHOUSE_PASSWORD", "dwh"),
    connect_timeout="10",
)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------- Kafka


KAFKA_LOGGER = logging.getLogger("smoke.kafka")
KafkaSetting = str | int | float | bool


def _kafka_config(**extra: KafkaSetting) -> dict[str, KafkaSetting]:
    return {"bootstrap.servers": KAFKA_BOOTSTRAP, **extra}


@pytest.fixture(scope="module")
def kafka_admin() -> AdminClient:
    # `logger`: librdkafka's log lines go through `logging` (captured by pytest), not raw stderr.
    admin = AdminClient(_kafka_config(), logger=KAFKA_LOGGER)
    try:
        admin.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(f"Kafka does not answer on {KAFKA_BOOTSTRAP} ({exc}); run scripts/stack up")
    return admin


@pytest.fixture
def topic(kafka_admin: AdminClient) -> Iterator[str]:
    """A fresh single-partition topic (one partition: the order of messages is defined)."""
    name = _unique("smoke")
    futures = kafka_admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    futures[name].result(timeout=DEADLINE_S)
    yield name
    kafka_admin.delete_topics([name])[name].result(timeout=DEADLINE_S)


def _consumer(group: str, **extra: KafkaSetting) -> Consumer:
    config = _kafka_config(**extra)
    config.setdefault("group.id", group)
    config.setdefault("auto.offset.reset", "earliest")
    config.setdefault("enable.auto.commit", False)
    return Consumer(config, logger=KAFKA_LOGGER)


def _consume(consumer: Consumer, count: int) -> list[Message]:
    """Poll until `count` messages arrived; fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    messages: list[Message] = []
    while len(messages) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"received {len(messages)} of {count} messages within {DEADLINE_S}s")
        message = consumer.poll(min(1.0, remaining))
        if message is None:
            continue
        error = message.error()
        if error is not None:
            raise KafkaException(error)
        messages.append(message)
    return messages


def _produce(producer: Producer, topic: str, values: list[bytes]) -> None:
    for value in values:
        producer.produce(topic, key=b"smoke", value=value)


def test_kafka_produce_consume_and_group_commit(topic: str) -> None:
    group = _unique("smoke_group")
    values = [f"заказ-{i}".encode() for i in range(5)]
    producer = Producer(_kafka_config(**{"enable.idempotence": True}), logger=KAFKA_LOGGER)
    _produce(producer, topic, values)
    assert producer.flush(DEADLINE_S) == 0, "messages left undelivered"

    first = _consumer(group)
    try:
        first.subscribe([topic])
        head = _consume(first, 3)
        assert [m.value() for m in head] == values[:3]
        assert [m.offset() for m in head] == [0, 1, 2]
        first.commit(message=head[-1], asynchronous=False)
        committed = first.committed([TopicPartition(topic, 0)], timeout=DEADLINE_S)
        assert committed[0].offset == 3  # the next offset to read
    finally:
        first.close()

    second = _consumer(group)
    try:
        second.subscribe([topic])
        tail = _consume(second, 2)
        assert [m.value() for m in tail] == values[3:]
        assert tail[0].offset() == 3, "the group did not resume after its committed offset"
    finally:
        second.close()


def test_kafka_transaction_commit_is_visible_and_abort_is_not(topic: str) -> None:
    producer = Producer(
        _kafka_config(**{"transactional.id": _unique("smoke_tx")}), logger=KAFKA_LOGGER
    )
    producer.init_transactions(DEADLINE_S)
    aborted = [b"aborted-1", b"aborted-2"]
    committed = [b"committed-1", b"committed-2", b"committed-3"]

    producer.begin_transaction()
    _produce(producer, topic, aborted)
    producer.flush(DEADLINE_S)
    producer.abort_transaction(DEADLINE_S)

    producer.begin_transaction()
    _produce(producer, topic, committed)
    producer.commit_transaction(DEADLINE_S)

    # read_committed skips the aborted records, which come first in the log.
    reader = _consumer(_unique("smoke_rc"), **{"isolation.level": "read_committed"})
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        assert [m.value() for m in _consume(reader, len(committed))] == committed
    finally:
        reader.close()

    # The aborted records were really written: read_uncommitted sees them.
    raw = _consumer(_unique("smoke_ru"), **{"isolation.level": "read_uncommitted"})
    try:
        raw.assign([TopicPartition(topic, 0, 0)])
        seen = [m.value() for m in _consume(raw, len(aborted) + len(committed))]
        assert seen == aborted + committed
    finally:
        raw.close()


# ------------------------------------------------------------------------------------- Redis


def test_redis_round_trips_json_with_cyrillic() -> None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=10)
    key = _unique("smoke:dictionary")
    value = {"name": "Борщ с пампушками", "category": "Супы", "price": 450, "tags": ["горячее"]}
    try:
        assert client.set(key, json.dumps(value, ensure_ascii=False).encode("utf-8"), ex=300)
        raw = client.get(key)
        assert isinstance(raw, bytes)
        assert "Борщ".encode() in raw  # stored as UTF-8 text, not \\u escapes
        assert json.loads(raw.decode("utf-8")) == value
    finally:
        client.delete(key)
        client.close()


# -------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema owned by the warehouse user (who may create schemas)."""
    name = _unique("smoke")
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.notes (id int PRIMARY KEY, note text NOT NULL)").format(
                sql.Identifier(name)
            )
        )
    yield name
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_postgres_commit_is_visible_and_rollback_is_not(schema: str) -> None:
    notes = sql.SQL("{}.notes").format(sql.Identifier(schema))
    insert = sql.SQL("INSERT INTO {} (id, note) VALUES (%s, %s)").format(notes)
    select = sql.SQL("SELECT id, note FROM {} ORDER BY id").format(notes)

    with (
        psycopg.connect(PG_CONNINFO, autocommit=True) as writer,
        psycopg.connect(PG_CONNINFO, autocommit=True) as reader,
    ):
        with writer.transaction():
            writer.execute(insert, (1, "зафиксировано"))
            assert reader.execute(select).fetchall() == [], "uncommitted row leaked"
        assert reader.execute(select).fetchall() == [(1, "зафиксировано")]

        with writer.transaction():
            writer.execute(insert, (2, "откачено"))
            assert writer.execute(select).fetchall() == [(1, "зафиксировано"), (2, "откачено")]
            raise psycopg.Rollback()
        assert reader.execute(select).fetchall() == [(1, "зафиксировано")]
        assert writer.execute(select).fetchall() == [(1, "зафиксировано")]
