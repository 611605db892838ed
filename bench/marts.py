"""The marts as they are in PostgreSQL, against the oracle of the tests
(src/dwh_workers/oracle.py, written independently of the pipeline).

Only the counters of the run's own users are read: the stack is shared, and other
pipelines (tests, other runs) may write into the same tables meanwhile. The benchmark's
dictionaries have a seed of their own, so their user keys are not the tests'.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from attrs import frozen
from psycopg import sql

from bench.tables import Connection
from dwh_workers.oracle import expected_marts, newest_versions

Counts = Counter[tuple[uuid.UUID, uuid.UUID]]
_TABLES = (("user_product_counters", "product_id"), ("user_category_counters", "category_id"))


@frozen
class Marts:
    """(user key, product key) -> count and (user key, category key) -> count; counters
    at zero are left out (docs/CONTRACT.md §4 lets them stay in the tables)."""

    products: Counts
    categories: Counts

    @classmethod
    def expected(cls, messages: list[bytes], restaurants: list[dict[str, Any]]) -> Marts:
        return cls(*expected_marts(messages, restaurants))

    @classmethod
    def read(cls, conn: Connection, schema: str, users: Sequence[uuid.UUID]) -> Marts:
        """The counters of these users."""
        query = sql.SQL(
            "SELECT user_id, {}, order_cnt FROM {} WHERE order_cnt > 0 AND user_id = ANY(%s)"
        )
        products, categories = (
            Counter(
                {
                    (user, key): count
                    for user, key, count in conn.execute(
                        query.format(sql.Identifier(key), sql.Identifier(schema, table)),
                        (list(users),),
                    )
                }
            )
            for table, key in _TABLES
        )
        return cls(products, categories)

    @staticmethod
    def order_ids(messages: list[bytes]) -> set[int]:
        return set(newest_versions(messages))

    @property
    def totals(self) -> tuple[int, int, int, int]:
        """Counters and the sum of their counts, of each mart: cheap to compare."""
        return (
            len(self.products),
            sum(self.products.values()),
            len(self.categories),
            sum(self.categories.values()),
        )

    def differences(self, other: Marts) -> int:
        """How many counters differ between the two."""
        return sum(
            len({key for key in mine.keys() | theirs.keys() if mine[key] != theirs[key]})
            for mine, theirs in (
                (self.products, other.products),
                (self.categories, other.categories),
            )
        )


def read_totals(
    conn: Connection, schema: str, users: Sequence[uuid.UUID]
) -> tuple[int, int, int, int]:
    """:attr:`Marts.totals` of these users' counters, computed by PostgreSQL."""
    mine = sql.SQL("order_cnt > 0 AND user_id = ANY(%(users)s)")
    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {p} WHERE {mine}),"
            " (SELECT coalesce(sum(order_cnt), 0) FROM {p} WHERE {mine}),"
            " (SELECT count(*) FROM {c} WHERE {mine}),"
            " (SELECT coalesce(sum(order_cnt), 0) FROM {c} WHERE {mine})"
        ).format(
            p=sql.Identifier(schema, _TABLES[0][0]),
            c=sql.Identifier(schema, _TABLES[1][0]),
            mine=mine,
        ),
        {"users": list(users)},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def other_writers(
    conn: Connection, users: Sequence[uuid.UUID], orders: Collection[int]
) -> dict[str, int]:
    """Rows of the workers' tables that are not the run's: orders in ``stg.order_events``
    and counters of other users. Not zero: another pipeline wrote into the same tables
    during the run, and shared the machine and the database with it."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM stg.order_events WHERE NOT object_id = ANY(%(orders)s)),"
        " (SELECT count(*) FROM cdm.user_product_counters WHERE NOT user_id = ANY(%(users)s))"
        " + (SELECT count(*) FROM cdm.user_category_counters WHERE NOT user_id = ANY(%(users)s))",
        {"orders": sorted(orders), "users": list(users)},
    ).fetchone()
    assert row is not None
    return {"orders": int(row[0]), "counters": int(row[1])}
