"""The connection lifecycle every PostgreSQL adapter shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import TupleRow

from dwh_adapters.lifecycle import Closeable
from dwh_adapters.postgres.settings import PgSettings, connect


class ConnectionOwner(Closeable):
    """Owns one connection: opened on first use (never in ``__init__``) and kept.

    A connection that fails (:class:`psycopg.OperationalError`, or one left closed or
    broken by any error) is dropped, so the next call reconnects; the adapter itself
    never retries, the worker retries the whole batch with back-off.
    """

    def __init__(self, settings: PgSettings) -> None:
        self._settings = settings
        self._connection: psycopg.Connection[TupleRow] | None = None

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """One transaction: committed when the block ends normally, else rolled back."""
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        try:
            with connection.transaction():
                yield connection
        except BaseException as exc:
            if isinstance(exc, psycopg.OperationalError) or connection.broken or connection.closed:
                self.close()
            raise

    def _connect(self) -> psycopg.Connection[TupleRow]:
        connection = connect(self._settings)
        try:
            with connection.transaction():
                self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: psycopg.Connection[TupleRow]) -> None:
        """Set up a new connection's session, in a transaction of its own that commits
        before the first batch's; nothing by default."""

    def close(self) -> None:
        """Close the connection, if one is open; the next call opens a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class PostgresProbe(ConnectionOwner):
    """``SELECT 1`` on a connection of the probe's own, kept between probes (one more
    session per worker, rather than a new one every few seconds), for a worker's
    readiness; a broken connection is dropped and the next probe connects again."""

    def check(self) -> None:
        """Raise unless PostgreSQL answers."""
        with self._transaction() as connection:
            connection.execute("SELECT 1")
