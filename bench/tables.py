"""Empty copies of warehouse tables in schemas of the benchmark's own (the floor's and
the baseline's), so that they never touch the tables of the workers under test."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.tables import identifier

Connection = psycopg.Connection[TupleRow]


def recreate_schema(conn: Connection, schema: str) -> None:
    drop_schema(conn, schema)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(conn: Connection, schema: str) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def copy_tables(conn: Connection, sources: Iterable[str], schema: str) -> dict[str, str]:
    """An empty copy of each ``schema.table`` of ``sources`` in ``schema``, with the same
    columns, defaults, constraints and indexes (not the foreign keys); source -> copy."""
    return {source: _copy_table(conn, source, schema) for source in sources}


def _copy_table(conn: Connection, source: str, schema: str) -> str:
    table = source.split(".")[1]
    target = f"{schema}.{table}"
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            identifier(target), identifier(source)
        )
    )
    # A copied serial column still draws from the source's sequence: give it its own.
    serials = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s AND column_default LIKE 'nextval(%%'",
        (schema, table),
    ).fetchall()
    for (column,) in serials:
        sequence = sql.Identifier(schema, f"{table}_{column}_seq")
        conn.execute(
            sql.SQL("CREATE SEQUENCE {} OWNED BY {}").format(
                sequence, sql.Identifier(schema, table, column)
            )
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({})").format(
                identifier(target),
                sql.Identifier(column),
                sql.Literal(f"{schema}.{table}_{column}_seq"),
            )
        )
    return target
