"""How ``dwh`` reads an error to people: one line naming the service and the cause."""

from __future__ import annotations

import os

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from dwh_workers.error_messages import describe_error
from dwh_workers.errors import OperatorError


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OperatorError("no user"), "no user"),
        (
            psycopg.OperationalError(
                "connection failed: connection refused\n\tIs the server running?"
            ),
            "PostgreSQL at postgresql://dwh@127.0.0.1:5432/de?sslmode=prefer: connection refused",
        ),
        (
            KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure")),
            "Kafka at 127.0.0.1:9092 PLAINTEXT: Broker transport failure",
        ),
        (RuntimeError("odd\nthing"), "odd thing (RuntimeError; --debug shows the traceback)"),
    ],
)
def test_an_error_reads_as_one_line_naming_the_service(
    error: Exception, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in os.environ:  # the messages name the defaults' hosts and protocol
        if name.startswith(("PG_WAREHOUSE_", "KAFKA_")):
            monkeypatch.delenv(name)

    assert describe_error(error) == expected


def test_a_missing_table_says_to_migrate() -> None:
    error = psycopg.errors.UndefinedTable('relation "cdm.user_product_counters" does not exist')

    assert describe_error(error) == (
        'relation "cdm.user_product_counters" does not exist: the warehouse schema is '
        "missing (run `dwh migrate`)"
    )
