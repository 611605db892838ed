"""The counter store on PostgreSQL: the ``cdm`` counters of products and categories per
user, and the ledger of what each order version contributed to them
(``cdm.order_contributions``), whose order keys are claimed before they are read
(:mod:`~dwh_adapters.postgres.claims`). Each batch is one statement per table, rows
sorted by key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.claims import ClaimedTable, Claims
from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.ledger import LEDGER_COLUMNS, contribution
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.postgres.statements import arrays_of, assignments
from dwh_adapters.postgres.tag_store import RuleCache, TagKey, TagTables, deliver_pending
from dwh_core.counters import Contribution, CounterDelta, CounterUpdate
from dwh_core.tags import RuleIndex, TagEvent, TagState, TagUpdate


def _counter_update(table: str, key: str, name: str) -> sql.Composed:
    """Add the deltas of one batch to a counters table; the number of decremented rows.

    Increments are an upsert; decrements only ever apply to existing rows (the ledger
    says so), and cannot be an upsert because PostgreSQL checks ``order_cnt >= 0`` on
    the proposed new row before it finds the conflict. A name that is null or empty
    ("not seen in this batch") keeps the stored one.
    """
    return sql.SQL(
        "WITH d (user_id, key, name, delta) AS ("
        "  SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::varchar[], %b::int[])),"
        " decremented AS ("
        "  UPDATE cdm.{table} AS t"
        "  SET order_cnt = t.order_cnt + d.delta, {name} = coalesce(nullif(d.name, ''), t.{name})"
        "  FROM d WHERE d.delta < 0 AND t.user_id = d.user_id AND t.{key} = d.key"
        "  RETURNING 1),"
        " incremented AS ("
        "  INSERT INTO cdm.{table} AS t (user_id, {key}, {name}, order_cnt)"
        "  SELECT user_id, key, coalesce(name, ''), delta FROM d WHERE delta > 0"
        "  ON CONFLICT (user_id, {key}) DO UPDATE"
        "  SET order_cnt = t.order_cnt + excluded.order_cnt,"
        "  {name} = coalesce(nullif(excluded.{name}, ''), t.{name}))"
        " SELECT count(*) FROM decremented"
    ).format(table=sql.Identifier(table), key=sql.Identifier(key), name=sql.Identifier(name))


_UPDATE_PRODUCTS = _counter_update("user_product_counters", "product_id", "product_name")
_UPDATE_CATEGORIES = _counter_update("user_category_counters", "category_id", "category_name")
_UPSERT_LEDGER = sql.SQL(
    "INSERT INTO cdm.order_contributions AS t"
    " (order_key, user_key, update_ts, tiebreak, products, categories, order_date, product_names)"
    " SELECT o, u, ts, tb, p::uuid[], c::uuid[], d, n::uuid[]"
    " FROM unnest(%b::uuid[], %b::uuid[], %b::timestamp[], %b::bytea[], %b::text[], %b::text[],"
    " %b::timestamp[], %b::text[])"
    " AS x(o, u, ts, tb, p, c, d, n)"
    " ON CONFLICT (order_key) DO UPDATE SET {}"
).format(
    assignments(
        (
            "user_key",
            "update_ts",
            "tiebreak",
            "products",
            "categories",
            "order_date",
            "product_names",
        )
    )
)

# The claims of the ledger, keyed by order_key (every key of a batch is claimed); a
# placeholder has a NULL update_ts.
_LEDGER_CLAIMS = ClaimedTable(
    claim=sql.SQL(
        "INSERT INTO cdm.order_contributions (order_key, user_key, update_ts, products, categories)"
        " SELECT k, %b, NULL, '{}', '{}' FROM unnest(%b::uuid[]) AS k ORDER BY k"
        " ON CONFLICT DO NOTHING"
    ),
    lock=sql.SQL(
        f"SELECT {LEDGER_COLUMNS} FROM cdm.order_contributions"
        " WHERE order_key = ANY(%b::uuid[]) ORDER BY order_key FOR UPDATE"
    ),
    release=sql.SQL(
        "DELETE FROM cdm.order_contributions WHERE update_ts IS NULL"
        " AND order_key = ANY(%b::uuid[])"
    ),
    key_width=1,  # order_key
    version_column=2,  # update_ts
    order=lambda key: key[0].int,
)


def _uuid_array(keys: frozenset[uuid.UUID]) -> str:
    """A set of keys as a PostgreSQL array literal (arrays of one batch differ in length,
    so they travel as text and are cast per row)."""
    return "{" + ",".join(str(key) for key in sorted(keys, key=attrgetter("int"))) + "}"


class PostgresCounterTransaction:
    """:class:`~dwh_core.ports.CounterTransaction` inside one database transaction."""

    def __init__(self, conn: psycopg.Connection[TupleRow], rules: RuleCache) -> None:
        self._conn = conn
        self._claims = Claims(conn, _LEDGER_CLAIMS)
        self._rules = rules
        self._tags = TagTables(conn)

    def tag_rules(self) -> RuleIndex:
        return self._rules.current(self._conn)

    def ledger(self, order_keys: Collection[uuid.UUID]) -> Mapping[uuid.UUID, Contribution]:
        rows = self._claims.lock([(key,) for key in order_keys])
        return {row[0]: contribution(row) for row in rows}

    def tag_states(self, keys: Collection[tuple[uuid.UUID, str]]) -> Mapping[TagKey, TagState]:
        return self._tags.states(keys)

    def save_tags(self, update: TagUpdate, ruleset_version: int) -> None:
        self._tags.save(update, ruleset_version)

    def apply(self, update: CounterUpdate) -> None:
        self._claims.replaced((c.order_key,) for c in update.contributions)
        with self._conn.cursor() as cursor:
            for statement, deltas in (
                (_UPDATE_PRODUCTS, update.products),
                (_UPDATE_CATEGORIES, update.categories),
            ):
                if deltas:
                    _apply_deltas(cursor, statement, deltas)
            if update.contributions:
                rows = [
                    (
                        c.order_key,
                        c.user_key,
                        c.version.update_ts,
                        c.version.tiebreak,
                        _uuid_array(c.products),
                        _uuid_array(c.categories),
                        c.order_date,
                        _uuid_array(c.product_names),
                    )
                    for c in sorted(update.contributions, key=lambda c: c.order_key.int)
                ]
                cursor.execute(_UPSERT_LEDGER, arrays_of(rows))

    def release_placeholders(self) -> None:
        """Drop the claims that no contribution or tag state replaced."""
        self._claims.release()
        self._tags.release_placeholders()


def _apply_deltas(
    cursor: psycopg.Cursor[TupleRow], statement: sql.Composed, deltas: Sequence[CounterDelta]
) -> None:
    rows = [(d.user_key, d.key, d.name, d.delta) for d in deltas]
    (decremented,) = cursor.execute(statement, arrays_of(rows)).fetchone() or (0,)
    missing = sum(1 for d in deltas if d.delta < 0) - decremented
    if missing:
        # Only a ledger out of step with the counters gets here.
        raise ValueError(f"counter below zero: {missing} decrements of counters that do not exist")


class PostgresCounterStore(ConnectionOwner):
    """:class:`~dwh_core.ports.CounterStore` on the ``cdm`` marts, their ledger and the
    user tags (:mod:`~dwh_adapters.postgres.tag_store`)."""

    def __init__(self, settings: PgSettings) -> None:
        super().__init__(settings)
        self._rules = RuleCache()

    @contextmanager
    def transaction(self) -> Iterator[PostgresCounterTransaction]:
        with self._transaction() as conn:
            transaction = PostgresCounterTransaction(conn, self._rules)
            yield transaction
            transaction.release_placeholders()

    def deliver(self, send: Callable[[Sequence[TagEvent]], None]) -> int:
        return deliver_pending(self._transaction, send)
