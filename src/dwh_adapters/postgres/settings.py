"""Where the warehouse database is and how to connect to it."""

from __future__ import annotations

import psycopg
from attrs import field, frozen
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

CONNECT_TIMEOUT_SECONDS = 5


@frozen
class PgSettings:
    """Connection settings of the warehouse database (``PG_WAREHOUSE_*``).

    ``sslmode`` and ``sslrootcert`` are libpq's (``verify-full`` plus a CA file in
    production). The password never appears in ``repr()`` or :meth:`describe`.
    """

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    application_name: str = "dwh"

    def conninfo(self) -> str:
        """The libpq connection string, password included: pass it to libpq only."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
            sslrootcert=self.sslrootcert,
            application_name=self.application_name,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # A network that drops packets silently (a host gone, a firewall change)
            # would leave a query waiting for the kernel's retransmissions, about 15
            # minutes: keepalives and a send timeout end the connection within ~30 s,
            # so the worker retries and reports not ready. A slow query is not cut.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
        )

    def describe(self) -> str:
        """Where the database is, for logs and health output (no password)."""
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}?sslmode={self.sslmode}"
        )


def connect(settings: PgSettings, autocommit: bool = False) -> psycopg.Connection[TupleRow]:
    """A new connection; raises :class:`psycopg.OperationalError` when the server is
    unreachable or refuses it (within ``connect_timeout``)."""
    return psycopg.connect(settings.conninfo(), autocommit=autocommit)
