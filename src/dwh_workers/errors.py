"""The warehouse's errors: which failures belong to a message and which to the world
around the worker, which service a failure comes from, and the operator's mistakes.

A failure caused by the data of a message (a value PostgreSQL refuses, a constraint it
breaks, a value our code cannot handle) will fail again on every retry: the worker
isolates that message and dead-letters it. Every other failure (a dependency that is
down, busy, or misconfigured) is treated as transient: the batch is retried with
back-off, forever, and the worker reports not-ready, because dead-lettering everything
while, say, a privilege is missing would empty the pipeline into the dead-letter topics.

:class:`OperatorError` is a ``dwh`` command refusing what it was asked; how ``dwh`` turns
any error into one line for people is :mod:`dwh_workers.error_messages`.
"""

from __future__ import annotations

import psycopg
import redis
from confluent_kafka import KafkaException

from dwh_adapters.kafka import DeliveryFailed
from dwh_adapters.kafka.consumer import InstanceFenced

MESSAGE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
)


# SQLSTATE classes that only a message's data causes, whatever psycopg's class for them:
# 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (a
# value too large for an index entry, say, which psycopg files under OperationalError).
MESSAGE_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help. A consumer fenced by another with its instance id may
    not retry: it would fence the other in turn, for ever."""
    if isinstance(exc, InstanceFenced):
        return False
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        return exc.sqlstate[:2] not in MESSAGE_SQLSTATE_CLASSES
    return not isinstance(exc, MESSAGE_ERRORS)


def dependency_of(exc: BaseException) -> str:
    """The service an error comes from: ``postgres``, ``redis``, ``kafka``, or ``other``
    (the label of ``dwh_dependency_errors_total``, and what ``dwh`` names)."""
    if isinstance(exc, psycopg.Error):
        return "postgres"
    if isinstance(exc, redis.RedisError):
        return "redis"
    if isinstance(exc, KafkaException | DeliveryFailed | InstanceFenced):
        return "kafka"
    return "other"


class OperatorError(Exception):
    """The command cannot do what was asked; ``str()`` is one line saying why."""
