"""The read side of the warehouse, for the operator CLI and the tests."""

from __future__ import annotations

import json
import re
import uuid

from attrs import asdict, frozen
from psycopg import sql

from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.tables import SATELLITE_TABLES, WAREHOUSE_TABLES, identifier
from dwh_core.hashing import hash_key

_SOURCE_ID = re.compile(r"[0-9a-fA-F]{24}")

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


_CURRENT_NAMES = (
    "SELECT DISTINCT ON (s.h_user_pk) u.user_id, s.username, s.userlogin"
    " FROM dds.s_user_names s JOIN dds.h_user u ON u.h_user_pk = s.h_user_pk"
    " WHERE s.h_user_pk = ANY(%s)"
    " ORDER BY s.h_user_pk, s.source_ts DESC"
)
_FIND_USERS = sql.SQL(
    "SELECT user_id, username, userlogin FROM (" + _CURRENT_NAMES + ") AS current"
    " WHERE user_id = %s OR userlogin = %s ORDER BY user_id"
)
_USERS_BY_LOGIN = "SELECT h_user_pk FROM dds.s_user_names WHERE userlogin = %s"
_BUSIEST = (
    "SELECT user_key FROM cdm.order_contributions WHERE cardinality(products) > 0"
    " GROUP BY user_key ORDER BY count(*) DESC, user_key LIMIT %s"
)
_TOTALS = sql.SQL(
    "SELECT (SELECT count(*) FROM stg.order_events),"
    " (SELECT count(*) FROM cdm.order_contributions WHERE cardinality(products) > 0),"
    " p.rows, p.total, c.rows, c.total"
    " FROM (SELECT count(*) AS rows, coalesce(sum(order_cnt), 0) AS total"
    "       FROM cdm.user_product_counters WHERE order_cnt > 0) p,"
    "      (SELECT count(*) AS rows, coalesce(sum(order_cnt), 0) AS total"
    "       FROM cdm.user_category_counters WHERE order_cnt > 0) c"
)


@frozen
class UserRef:
    """A user as the operator knows them: source id, name, login."""

    user_id: str
    name: str
    login: str

    def describe(self) -> str:
        return f"{self.name} ({self.login}, {self.user_id})"


@frozen
class Totals:
    """How much the warehouse holds. ``orders``: orders in STG (one row per order);
    ``counted_orders``: orders whose newest version is CLOSED, as the marts count them;
    then the mart rows with a count above 0 and the sums of their counts."""

    orders: int
    counted_orders: int
    product_counters: int
    product_count_sum: int
    category_counters: int
    category_count_sum: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Totals:
        return cls(**json.loads(text))


class PostgresMarts(ConnectionOwner):
    """What the marts say, and what the operator needs around them (users by login, the
    busiest users, the totals), read in one transaction per call. Users and categories
    are named by their source ids and names; they are hashed here as everywhere else."""

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

    def find_users(self, id_or_login: str) -> list[UserRef]:
        """The users whose source id or current login is ``id_or_login``."""
        with self._transaction() as conn:
            keys = [row[0] for row in conn.execute(_USERS_BY_LOGIN, (id_or_login,))]
            if _SOURCE_ID.fullmatch(id_or_login):
                keys.append(hash_key(id_or_login))
            rows = conn.execute(_FIND_USERS, (keys, id_or_login, id_or_login)).fetchall()
        return [UserRef(*row) for row in rows]

    def busiest_users(self, limit: int) -> list[UserRef]:
        """The users with the most counted orders, most first."""
        with self._transaction() as conn:
            keys = [row[0] for row in conn.execute(_BUSIEST, (limit,))]
            names = {
                hash_key(user_id): UserRef(user_id, name, login)
                for user_id, name, login in conn.execute(_CURRENT_NAMES, (keys,))
            }
        return [names[key] for key in keys if key in names]

    def totals(self) -> Totals:
        with self._transaction() as conn:
            row = conn.execute(_TOTALS).fetchone()
        assert row is not None
        return Totals(*row)

    def row_counts(self, tables: tuple[str, ...] = WAREHOUSE_TABLES) -> dict[str, int]:
        """Rows per warehouse table (``schema.table``), of every table or of those named."""
        return self._row_counts(tables)

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
