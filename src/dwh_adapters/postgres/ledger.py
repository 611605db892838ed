"""Reading the marts' ledger, ``cdm.order_contributions``: one row per order, what it
adds to the marts and what the tag rules read of it
(:class:`~dwh_core.counters.Contribution`). The counter store reads the rows of a batch
(locked); the tags read them all, or those of a window."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from dwh_core.counters import Contribution
from dwh_core.versions import Version

LEDGER_COLUMNS = (
    "order_key, user_key, update_ts, tiebreak, products, categories, order_date, product_names"
)
"""The columns :func:`contribution` reads, in its order."""


def contribution(row: Sequence[Any]) -> Contribution:
    """A ledger row, read as :data:`LEDGER_COLUMNS`."""
    key, user_key, ts, tiebreak, products, categories, date, names = row
    return Contribution(
        key,
        user_key,
        Version(ts, tiebreak),
        frozenset(products),
        frozenset(categories),
        date,
        frozenset(names),
    )


def counted_rows(
    conn: psycopg.Connection[TupleRow],
    dated_after: datetime | None = None,
    dated_until: datetime | None = None,
) -> Iterator[Contribution]:
    """The ledger rows that count (every one, or those dated in (after, until]), in
    order-key order; read by a server-side cursor, so memory stays flat."""
    where = "WHERE update_ts IS NOT NULL AND cardinality(categories) > 0"
    params: list[object] = []
    if dated_after is not None and dated_until is not None:
        where += " AND order_date > %b AND order_date <= %b"
        params = [dated_after, dated_until]
    with conn.cursor(name="dwh_ledger") as cursor:
        cursor.itersize = 10_000
        cursor.execute(
            f"SELECT {LEDGER_COLUMNS} FROM cdm.order_contributions {where} ORDER BY order_key",
            params,
        )
        yield from (contribution(row) for row in cursor)
