"""Set-based statements: a whole batch as one ``INSERT ... SELECT FROM unnest(arrays)``
(parameters made by :func:`arrays_of`), or, for the large batches of the vault, binary
``COPY`` into a staging table and one ``INSERT ... SELECT`` from it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from attrs import frozen
from psycopg import sql
from psycopg.rows import TupleRow

Row = tuple[Any, ...]
"""A row of a table, in the columns of its statement."""


@frozen
class StagedInsert:
    """A batch into ``schema.table`` by way of a temporary staging table of the same
    columns: binary ``COPY`` of the rows into it, then one ``INSERT ... SELECT`` in key
    order (so two writers of the same keys lock them in the same order). Far cheaper
    than array parameters for thousands of rows: psycopg formats ``COPY`` rows in C,
    while it builds every array element in Python.

    The staging table lives as long as the session and empties at every commit (and a
    rollback takes its rows away too); :attr:`create` makes it, once per connection.
    """

    create: sql.Composed
    copy: sql.Composed
    insert: sql.Composed
    types: tuple[str, ...]

    def write(self, cursor: psycopg.Cursor[TupleRow], rows: Iterable[Sequence[object]]) -> None:
        with cursor.copy(self.copy) as copy:
            copy.set_types(self.types)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        cursor.execute(self.insert)


def staged_insert(
    schema: str,
    table: str,
    columns: Sequence[tuple[str, str]],
    order_by: Sequence[str],
    conflict: sql.Composable,
) -> StagedInsert:
    """The :class:`StagedInsert` of (column, SQL type) ``columns`` of ``schema.table``,
    inserted in ``order_by`` order; the conflict clause may refer to the table as ``t``.
    The types are named as psycopg's registry knows them (``integer``, not ``int``)."""
    target = sql.Identifier(schema, table)
    staging = sql.Identifier(f"staging_{schema}_{table}")
    names = _names(columns)
    return StagedInsert(
        create=sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS"
            " AS SELECT {names} FROM {target} WITH NO DATA"
        ).format(staging=staging, names=names, target=target),
        copy=sql.SQL("COPY pg_temp.{staging} ({names}) FROM STDIN (FORMAT BINARY)").format(
            staging=staging, names=names
        ),
        insert=sql.SQL(
            "INSERT INTO {target} AS t ({names}) SELECT {names} FROM pg_temp.{staging}"
            " ORDER BY {order} {conflict}"
        ).format(
            target=target,
            names=names,
            staging=staging,
            order=sql.SQL(", ").join(sql.Identifier(name) for name in order_by),
            conflict=conflict,
        ),
        types=tuple(type_ for _, type_ in columns),
    )


def _names(columns: Sequence[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)


def arrays_of(rows: Iterable[Sequence[object]]) -> list[list[object]]:
    """Rows to column arrays, for ``unnest(%b::type[], ...)`` parameters."""
    return [list(column) for column in zip(*rows, strict=True)]


def assignments(columns: Iterable[str]) -> sql.Composed:
    """``col = excluded.col, ...`` for an ``ON CONFLICT ... DO UPDATE SET``."""
    return sql.SQL(", ").join(
        sql.SQL("{column} = excluded.{column}").format(column=sql.Identifier(column))
        for column in columns
    )
