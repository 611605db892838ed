"""How ``dwh`` says what went wrong: any exception as one line for people, naming the
service it came from (and where that service was looked for, from the environment) and
the cause, without the clients' reprs; an :class:`~dwh_workers.errors.OperatorError` or
a :class:`~dwh_workers.config.ConfigError` is already such a line.

Which service an error comes from is :func:`dwh_workers.errors.dependency_of`.
"""

from __future__ import annotations

import psycopg
from confluent_kafka import KafkaError

from dwh_adapters.redis import explain as redis_explain
from dwh_workers import config
from dwh_workers.errors import OperatorError, dependency_of


def describe_error(exc: BaseException) -> str:
    """One line: what failed, and where when a service did."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (OperatorError, config.ConfigError)):
        return text
    try:
        services: config.Services | None = config.services()
    except config.ConfigError:
        services = None
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        return f"{_first_line(exc)}: the warehouse schema is missing (run `dwh migrate`)"
    dependency = dependency_of(exc)
    if dependency == "postgres":
        where = f" at {services.postgres.describe()}" if services else ""
        return f"PostgreSQL{where}: {_first_line(exc).removeprefix('connection failed: ')}"
    if dependency == "redis":
        if services is None:
            return f"Redis: {text}"
        why = redis_explain(services.redis, exc)
        return f"Redis at {services.redis.describe()}: {why or text}"
    if dependency == "kafka":
        where = f" at {services.kafka.describe()}" if services else ""
        return f"Kafka{where}: {_kafka_text(exc)}"
    if isinstance(exc, OSError | ValueError):
        return text or type(exc).__name__
    return f"{text or 'failed'} ({type(exc).__name__}; --debug shows the traceback)"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _kafka_text(exc: BaseException) -> str:
    """The readable part of a confluent-kafka error (not its ``KafkaError{...}`` repr)."""
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return str(error.str())
    return " ".join(str(exc).split())
