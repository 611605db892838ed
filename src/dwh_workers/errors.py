"""Which failures belong to a message and which to the world around the worker.

A failure caused by the data of a message (a value PostgreSQL refuses, a constraint it
breaks, a value our code cannot handle) will fail again on every retry: the worker
isolates that message and dead-letters it. Every other failure (a dependency that is
down, busy, or misconfigured) is treated as transient: the batch is retried with
back-off, forever, and the worker reports not-ready, because dead-lettering everything
while, say, a privilege is missing would empty the pipeline into the dead-letter topics.
"""

from __future__ import annotations

import psycopg

MESSAGE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
)


def is_transient(exc: BaseException) -> bool:
    return not isinstance(exc, MESSAGE_ERRORS)
