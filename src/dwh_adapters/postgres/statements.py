"""Set-based statements: a whole batch as one ``INSERT ... SELECT FROM unnest(arrays)``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from psycopg import sql


def insert_from_arrays(
    schema: str,
    table: str,
    columns: Sequence[tuple[str, str]],
    conflict: sql.Composable,
) -> sql.Composed:
    """``INSERT INTO schema.table AS t (columns) SELECT * FROM unnest(%b::type[], ...)
    <conflict>``: one array parameter per (column, SQL type), in column order; the
    conflict clause may refer to the table as ``t``."""
    return sql.SQL(
        "INSERT INTO {table} AS t ({columns}) SELECT * FROM unnest({arrays}) {conflict}"
    ).format(
        table=sql.Identifier(schema, table),
        columns=sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
        arrays=sql.SQL(", ").join(
            sql.SQL("%b::{}[]").format(sql.SQL(type_)) for _, type_ in columns
        ),
        conflict=conflict,
    )


def arrays_of(rows: Iterable[Sequence[object]]) -> list[list[object]]:
    """Rows to the column arrays :func:`insert_from_arrays` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def assignments(columns: Iterable[str]) -> sql.Composed:
    """``col = excluded.col, ...`` for an ``ON CONFLICT ... DO UPDATE SET``."""
    return sql.SQL(", ").join(
        sql.SQL("{column} = excluded.{column}").format(column=sql.Identifier(column))
        for column in columns
    )
