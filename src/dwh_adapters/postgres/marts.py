"""The read side of the warehouse, for the operator CLI and the tests."""

from __future__ import annotations

import uuid

from psycopg import sql

from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.tables import SATELLITE_TABLES, WAREHOUSE_TABLES, identifier
from dwh_core.hashing import hash_key

_COUNTERS = {
    "products": ("user_product_counters", "product_id", "product_name"),
    "categories": ("user_category_counters", "category_id", "category_name"),
}


def _counts_query(kind: str) -> sql.Composed:
    table, key, _ = _COUNTERS[kind]
    return sql.SQL("SELECT user_id, {key}, order_cnt FROM cdm.{table} WHERE order_cnt > 0").format(
        key=sql.Identifier(key), table=sql.Identifier(table)
    )


def _user_query(kind: str) -> sql.Composed:
    table, _, name = _COUNTERS[kind]
    return sql.SQL(
        "SELECT {name}, order_cnt FROM cdm.{table} WHERE user_id = %s AND order_cnt > 0"
        " ORDER BY order_cnt DESC, {name}"
    ).format(name=sql.Identifier(name), table=sql.Identifier(table))


def _top_pairs(condition: str) -> sql.Composed:
    """(user name, login, category name, count) of the largest category counters, the
    user named by the current row of ``s_user_names`` (its source id if it has none)."""
    return sql.SQL(
        "SELECT coalesce(names.username, u.user_id), coalesce(names.userlogin, ''),"
        " c.category_name, c.order_cnt"
        " FROM cdm.user_category_counters c"
        " JOIN dds.h_user u ON u.h_user_pk = c.user_id"
        " LEFT JOIN LATERAL (SELECT username, userlogin FROM dds.s_user_names s"
        "   WHERE s.h_user_pk = u.h_user_pk ORDER BY s.source_ts DESC LIMIT 1) names ON true"
        " WHERE c.order_cnt > 0 {condition}"
        " ORDER BY c.order_cnt DESC, 1, 2, 3 LIMIT %s"
    ).format(condition=sql.SQL(condition))


_TOP_USERS = _top_pairs("AND c.category_id = %s")
_TOP_PAIRS = _top_pairs("")


def _count_rows(tables: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {name}, count(*) FROM {table}").format(
            name=sql.Literal(table), table=identifier(table)
        )
        for table in tables
    )


class PostgresMarts(ConnectionOwner):
    """What the marts say, read in one transaction per call. Users and categories are
    named by their source ids and names; they are hashed here as everywhere else."""

    def product_counts(self) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        """(user key, product key) -> order count, rows with 0 left out (the shape of
        :meth:`~dwh_adapters.memory.InMemoryCounterStore.product_counts`)."""
        return self._counts("products")

    def category_counts(self) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        """(user key, category key) -> order count, rows with 0 left out."""
        return self._counts("categories")

    def user_products(self, user_id: str) -> list[tuple[str, int]]:
        """(product name, order count) of one user (source id), most ordered first."""
        return self._of_user("products", user_id)

    def user_categories(self, user_id: str) -> list[tuple[str, int]]:
        """(category name, order count) of one user (source id), most ordered first."""
        return self._of_user("categories", user_id)

    def top_users(self, category_name: str, limit: int = 10) -> list[tuple[str, str, int]]:
        """(user name, login, order count) of the users who ordered a category most
        (the category name is matched as a business key: case and spaces aside)."""
        with self._transaction() as conn:
            rows = conn.execute(_TOP_USERS, (hash_key(category_name), limit)).fetchall()
        return [(name, login, count) for name, login, _, count in rows]

    def top_categories(self, limit: int = 10) -> list[tuple[str, str, str, int]]:
        """(user name, login, category name, order count) of the largest category
        counters over all users."""
        with self._transaction() as conn:
            rows = conn.execute(_TOP_PAIRS, (limit,)).fetchall()
        return [(name, login, category, count) for name, login, category, count in rows]

    def row_counts(self) -> dict[str, int]:
        """Rows per warehouse table (``schema.table``)."""
        return self._row_counts(WAREHOUSE_TABLES)

    def satellite_row_counts(self) -> dict[str, int]:
        """Rows per satellite table (``dds.s_...``)."""
        return self._row_counts(SATELLITE_TABLES)

    def _counts(self, kind: str) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        with self._transaction() as conn:
            rows = conn.execute(_counts_query(kind)).fetchall()
        return {(user, key): count for user, key, count in rows}

    def _of_user(self, kind: str, user_id: str) -> list[tuple[str, int]]:
        with self._transaction() as conn:
            rows = conn.execute(_user_query(kind), (hash_key(user_id),)).fetchall()
        return [(name, count) for name, count in rows]

    def _row_counts(self, tables: tuple[str, ...]) -> dict[str, int]:
        with self._transaction() as conn:
            rows = conn.execute(_count_rows(tables)).fetchall()
        return {table: count for table, count in rows}
