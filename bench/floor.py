"""The PostgreSQL floor: how long PostgreSQL alone takes to store the rows a run wrote.

The rows are copied out of the real tables into memory (binary ``COPY ... TO STDOUT``),
then timed going into empty copies of the tables (same indexes and constraints, no
foreign keys) by binary ``COPY ... FROM STDIN``, one transaction per set of tables,
commit included. No parsing, no hashing, no network hops between services, no
conflicts to resolve: what the workers do can only be slower.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from attrs import frozen
from psycopg import sql

from bench.tables import Connection, copy_tables, drop_schema, recreate_schema
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tables import WAREHOUSE_TABLES, identifier
from dwh_core.vault import HUBS, LINKS, SATELLITES

SCHEMA = "bench_floor"
MARTS = ("cdm.user_product_counters", "cdm.user_category_counters")
# The headline: the vault (hubs, links, satellites) and the marts.
VAULT_AND_MARTS = (
    *(f"dds.{spec.table}" for spec in HUBS.values()),
    *(f"dds.{spec.table}" for spec in LINKS.values()),
    *(f"dds.{spec.table}" for spec in SATELLITES.values()),
    *MARTS,
)
# The rest of what the run wrote: STG's events and the layers' bookkeeping.
REST = tuple(table for table in WAREHOUSE_TABLES if table not in VAULT_AND_MARTS)


@frozen
class TableLoad:
    rows: int
    bytes: int
    seconds: float


@frozen
class FloorSet:
    """``seconds`` to COPY the ``tables`` in one transaction; ``orders_per_s`` is the
    run's orders over those seconds."""

    tables: list[str]
    rows: int
    bytes: int
    seconds: float
    orders_per_s: float


@frozen
class Floor:
    vault_and_marts: FloorSet
    all_written: FloorSet
    tables: dict[str, TableLoad]


def measure(settings: PgSettings, orders: int) -> Floor:
    with connect(settings, autocommit=True) as conn:
        data = {table: _copy_out(conn, table) for table in WAREHOUSE_TABLES}
        rows = {table: _count(conn, table) for table in WAREHOUSE_TABLES}
        recreate_schema(conn, SCHEMA)
        try:
            copies = copy_tables(conn, WAREHOUSE_TABLES, SCHEMA)
            loads: dict[str, TableLoad] = {}
            with connect(settings) as timed:
                headline = _load(timed, VAULT_AND_MARTS, data, rows, copies, orders, loads)
                rest = _load(timed, REST, data, rows, copies, orders, loads)
        finally:
            drop_schema(conn, SCHEMA)
    everything = FloorSet(
        tables=[*headline.tables, *rest.tables],
        rows=headline.rows + rest.rows,
        bytes=headline.bytes + rest.bytes,
        seconds=round(headline.seconds + rest.seconds, 3),
        orders_per_s=round(orders / (headline.seconds + rest.seconds), 1),
    )
    return Floor(headline, everything, loads)


def _load(
    conn: Connection,
    tables: Sequence[str],
    data: dict[str, bytes],
    rows: dict[str, int],
    copies: dict[str, str],
    orders: int,
    loads: dict[str, TableLoad],
) -> FloorSet:
    started = time.perf_counter()
    with conn.transaction():
        for table in tables:
            table_started = time.perf_counter()
            with conn.cursor().copy(
                sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(identifier(copies[table]))
            ) as copy:
                copy.write(data[table])
            loads[table] = TableLoad(
                rows[table], len(data[table]), round(time.perf_counter() - table_started, 4)
            )
    seconds = time.perf_counter() - started
    return FloorSet(
        tables=list(tables),
        rows=sum(rows[table] for table in tables),
        bytes=sum(len(data[table]) for table in tables),
        seconds=round(seconds, 3),
        orders_per_s=round(orders / seconds, 1),
    )


def _copy_out(conn: Connection, table: str) -> bytes:
    query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT BINARY)").format(identifier(table))
    with conn.cursor().copy(query) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def _count(conn: Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(identifier(table))).fetchone()
    assert row is not None
    return int(row[0])
