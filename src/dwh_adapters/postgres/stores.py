"""The write-side ports on PostgreSQL: ``stg.order_events``, the vault and the marts.

Every batch is one statement per table: ``INSERT ... SELECT FROM unnest(arrays)``, or
for the vault, whose batches are the largest, binary ``COPY`` into a staging table and
``INSERT ... SELECT`` from it. Rows are written sorted by key, and tables in a fixed
order (hubs, links, satellites, states), so two replicas writing the same keys
(products and categories are shared by all users) wait for each other instead of
deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.statements import (
    StagedInsert,
    arrays_of,
    assignments,
    staged_insert,
)
from dwh_core.counters import Contribution, CounterDelta, CounterUpdate
from dwh_core.ports import RawEvent
from dwh_core.vault import HUBS, LINKS, SATELLITES, SatelliteState, VaultRows
from dwh_core.versions import Version

Row = tuple[Any, ...]
_LOAD_COLUMNS = (("load_dt", "timestamp"), ("load_src", "varchar"))
_DO_NOTHING = sql.SQL("ON CONFLICT DO NOTHING")

# PostgreSQL takes the payload out of the message text itself, so every number and
# every field of it is kept exactly as sent (a Python round trip would turn an integer
# past 64 bits into a float).
_SAVE_EVENTS = sql.SQL(
    "INSERT INTO stg.order_events AS t"
    " (object_id, object_type, sent_dttm, update_ts, tiebreak, payload)"
    " SELECT o, ot, s, u, tb, m::jsonb -> 'payload' FROM unnest("
    "  %b::int[], %b::varchar[], %b::timestamp[], %b::timestamp[], %b::bytea[], %b::text[])"
    " AS x(o, ot, s, u, tb, m)"
    " ON CONFLICT (object_id) DO UPDATE SET {}"
    " WHERE (excluded.update_ts, excluded.tiebreak) > (t.update_ts, t.tiebreak)"
).format(assignments(("object_type", "sent_dttm", "update_ts", "tiebreak", "payload")))


class PostgresRawEventStore(ConnectionOwner):
    """:class:`~dwh_core.ports.RawEventStore` on ``stg.order_events``."""

    def save(self, events: Sequence[RawEvent]) -> None:
        newest: dict[int, RawEvent] = {}
        for event in events:
            seen = newest.get(event.object_id)
            if seen is None or event.version > seen.version:
                newest[event.object_id] = event
        if not newest:
            return
        rows = [
            (
                e.object_id,
                e.object_type,
                e.sent_dttm,
                e.version.update_ts,
                e.version.tiebreak,
                e.message,
            )
            for _, e in sorted(newest.items())
        ]
        with self._transaction() as conn:
            conn.execute(_SAVE_EVENTS, arrays_of(rows))


_STATE_COLUMNS = (
    ("satellite", "varchar"),
    ("hub_pk", "uuid"),
    ("hashdiff", "uuid"),
    ("source_ts", "timestamp"),
    ("tiebreak", "bytea"),
)
_SATELLITE_STATE = "satellite_state"

# The statement of each DDS table, generated from the specs, in the order of writing.
_VAULT_TABLES: dict[str, StagedInsert] = {
    **{
        spec.table: staged_insert(
            "dds",
            spec.table,
            (
                (spec.pk, "uuid"),
                *zip(spec.key_columns, spec.key_types, strict=True),
                *_LOAD_COLUMNS,
            ),
            (spec.pk,),
            _DO_NOTHING,
        )
        for spec in HUBS.values()
    },
    **{
        spec.table: staged_insert(
            "dds",
            spec.table,
            ((spec.pk, "uuid"), *((HUBS[hub].pk, "uuid") for hub in spec.hubs), *_LOAD_COLUMNS),
            (spec.pk,),
            _DO_NOTHING,
        )
        for spec in LINKS.values()
    },
    **{
        spec.table: staged_insert(
            "dds",
            spec.table,
            (
                (HUBS[spec.hub].pk, "uuid"),
                *zip(spec.columns, spec.column_types, strict=True),
                (spec.hashdiff_column, "uuid"),
                ("source_ts", "timestamp"),
                *_LOAD_COLUMNS,
            ),
            (HUBS[spec.hub].pk, "source_ts"),
            # A row at the same source_ts is there only when the new version won the
            # tie-break against it (dwh_core.vault decided so under the state's lock).
            sql.SQL("ON CONFLICT ({}, source_ts) DO UPDATE SET {}").format(
                sql.Identifier(HUBS[spec.hub].pk),
                assignments((*spec.columns, spec.hashdiff_column, "load_dt", "load_src")),
            ),
        )
        for spec in SATELLITES.values()
    },
    _SATELLITE_STATE: staged_insert(
        "dds",
        _SATELLITE_STATE,
        _STATE_COLUMNS,
        ("satellite", "hub_pk"),
        sql.SQL(
            "ON CONFLICT (satellite, hub_pk) DO UPDATE SET {} WHERE t.source_ts IS NULL"
            " OR (excluded.source_ts, excluded.tiebreak) > (t.source_ts, t.tiebreak)"
        ).format(assignments(("hashdiff", "source_ts", "tiebreak"))),
    ),
}
_CREATE_STAGING = sql.SQL("; ").join(staged.create for staged in _VAULT_TABLES.values())

# Rows that do not exist yet cannot be locked, so a transaction first claims every key
# of its batch with a placeholder row: a second replica claiming the same new key waits
# for the first to commit, then sees its row. The placeholders are replaced by real
# values in the same transaction. A placeholder is the row whose version is NULL, which
# no input can produce (every timestamp, even 0001-01-01, is a real version).
PLACEHOLDER_KEY = uuid.UUID(int=0)

# Only keys that replicas on different partitions share need the claim: messages are
# keyed by user, so an order's and a user's satellites belong to one partition, and a
# replayed message two replicas might both process has one source_ts, which the primary
# key (hub key, source_ts) already keeps single. Products and restaurants appear in
# every partition's orders.
SHARED_SATELLITES = frozenset({"product_names", "restaurant_names"})

_CLAIM_STATES = sql.SQL(
    "INSERT INTO dds.satellite_state (satellite, hub_pk, hashdiff, source_ts)"
    " SELECT s, k, %b, NULL FROM unnest(%b::varchar[], %b::uuid[]) AS x(s, k) ORDER BY s, k"
    " ON CONFLICT DO NOTHING"
)
_LOCK_STATES = sql.SQL(
    "SELECT satellite, hub_pk, hashdiff, source_ts, tiebreak FROM dds.satellite_state"
    " WHERE (satellite, hub_pk) IN (SELECT * FROM unnest(%b::varchar[], %b::uuid[]))"
    " ORDER BY satellite, hub_pk FOR UPDATE"
)


def _by_name_and_key(key: tuple[str, uuid.UUID]) -> tuple[str, int]:
    return key[0], key[1].int


def _vault_batches(rows: VaultRows, states: Sequence[SatelliteState]) -> dict[str, list[Row]]:
    """The rows of each DDS table, in the columns of its statement."""
    batches: dict[str, list[Row]] = {table: [] for table in _VAULT_TABLES}
    for hub in rows.hubs:
        batches[HUBS[hub.name].table].append((hub.pk, *hub.values, hub.load_dt, hub.load_src))
    for link in rows.links:
        batches[LINKS[link.name].table].append(
            (link.pk, *link.hub_pks, link.load_dt, link.load_src)
        )
    for sat in rows.satellites:
        batches[SATELLITES[sat.name].table].append(
            (sat.hub_pk, *sat.values, sat.hashdiff, sat.source_ts, sat.load_dt, sat.load_src)
        )
    batches[_SATELLITE_STATE] = [
        (state.name, state.hub_pk, state.hashdiff, state.source_ts, state.tiebreak)
        for state in states
    ]
    return {table: batch for table, batch in batches.items() if batch}


class PostgresVaultTransaction:
    """:class:`~dwh_core.ports.VaultTransaction` inside one database transaction."""

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self._conn = conn
        self._placeholders: set[tuple[str, uuid.UUID]] = set()
        self._saved = False

    def satellite_states(
        self, keys: Collection[tuple[str, uuid.UUID]]
    ) -> Mapping[tuple[str, uuid.UUID], SatelliteState]:
        if not keys:
            return {}
        ordered = sorted(keys, key=_by_name_and_key)
        arrays = arrays_of(ordered)
        shared = sorted((k for k in keys if k[0] in SHARED_SATELLITES), key=_by_name_and_key)
        if shared:
            self._conn.execute(_CLAIM_STATES, [PLACEHOLDER_KEY, *arrays_of(shared)])
        rows = self._conn.execute(_LOCK_STATES, arrays).fetchall()
        self._placeholders |= {(name, pk) for name, pk, _, ts, _ in rows if ts is None}
        return {
            (name, pk): SatelliteState(name, pk, hashdiff, ts, tiebreak)
            for name, pk, hashdiff, ts, tiebreak in rows
            if ts is not None
        }

    def save(self, rows: VaultRows, states: Sequence[SatelliteState]) -> None:
        # The staging tables empty at commit: a second save would insert the first's rows again.
        if self._saved:
            raise RuntimeError("a vault transaction saves once")
        self._saved = True
        self._placeholders -= {(state.name, state.hub_pk) for state in states}
        batches = _vault_batches(rows, states)
        with self._conn.cursor() as cursor:
            for table, staged in _VAULT_TABLES.items():
                if table in batches:
                    staged.write(cursor, batches[table])

    def release_placeholders(self) -> None:
        """Drop the claims that no state replaced (keys asked about but not saved)."""
        if self._placeholders:
            placeholders = sorted(self._placeholders, key=_by_name_and_key)
            self._conn.execute(_RELEASE_STATES, arrays_of(placeholders))


_RELEASE_STATES = sql.SQL(
    "DELETE FROM dds.satellite_state WHERE source_ts IS NULL"
    " AND (satellite, hub_pk) IN (SELECT * FROM unnest(%b::varchar[], %b::uuid[]))"
)


class PostgresVaultStore(ConnectionOwner):
    """:class:`~dwh_core.ports.VaultStore` on the ``dds`` tables."""

    def _prepare(self, connection: psycopg.Connection[TupleRow]) -> None:
        connection.execute(_CREATE_STAGING)

    @contextmanager
    def transaction(self) -> Iterator[PostgresVaultTransaction]:
        with self._transaction() as conn:
            transaction = PostgresVaultTransaction(conn)
            yield transaction
            transaction.release_placeholders()


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
    " (order_key, user_key, update_ts, tiebreak, products, categories)"
    " SELECT o, u, ts, tb, p::uuid[], c::uuid[]"
    " FROM unnest(%b::uuid[], %b::uuid[], %b::timestamp[], %b::bytea[], %b::text[], %b::text[])"
    " AS x(o, u, ts, tb, p, c)"
    " ON CONFLICT (order_key) DO UPDATE SET {}"
).format(assignments(("user_key", "update_ts", "tiebreak", "products", "categories")))
# A placeholder has a NULL update_ts (see PLACEHOLDER_KEY).
_CLAIM_LEDGER = sql.SQL(
    "INSERT INTO cdm.order_contributions (order_key, user_key, update_ts, products, categories)"
    " SELECT k, %b, NULL, '{}', '{}' FROM unnest(%b::uuid[]) AS k ORDER BY k"
    " ON CONFLICT DO NOTHING"
)
_LOCK_LEDGER = sql.SQL(
    "SELECT order_key, user_key, update_ts, tiebreak, products, categories"
    " FROM cdm.order_contributions"
    " WHERE order_key = ANY(%b::uuid[]) ORDER BY order_key FOR UPDATE"
)


def _uuid_array(keys: frozenset[uuid.UUID]) -> str:
    """A set of keys as a PostgreSQL array literal (arrays of one batch differ in length,
    so they travel as text and are cast per row)."""
    return "{" + ",".join(str(key) for key in sorted(keys, key=attrgetter("int"))) + "}"


class PostgresCounterTransaction:
    """:class:`~dwh_core.ports.CounterTransaction` inside one database transaction."""

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self._conn = conn
        self._placeholders: set[uuid.UUID] = set()

    def ledger(self, order_keys: Collection[uuid.UUID]) -> Mapping[uuid.UUID, Contribution]:
        if not order_keys:
            return {}
        keys = sorted(order_keys, key=attrgetter("int"))
        self._conn.execute(_CLAIM_LEDGER, (PLACEHOLDER_KEY, keys))
        rows = self._conn.execute(_LOCK_LEDGER, (keys,)).fetchall()
        self._placeholders |= {row[0] for row in rows if row[2] is None}
        return {
            key: Contribution(
                key, user_key, Version(ts, tiebreak), frozenset(products), frozenset(categories)
            )
            for key, user_key, ts, tiebreak, products, categories in rows
            if ts is not None
        }

    def apply(self, update: CounterUpdate) -> None:
        self._placeholders -= {c.order_key for c in update.contributions}
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
                    )
                    for c in sorted(update.contributions, key=lambda c: c.order_key.int)
                ]
                cursor.execute(_UPSERT_LEDGER, arrays_of(rows))

    def release_placeholders(self) -> None:
        """Drop the claims that no contribution replaced."""
        if self._placeholders:
            _release_ledger(self._conn, self._placeholders)


def _release_ledger(conn: psycopg.Connection[TupleRow], keys: set[uuid.UUID]) -> None:
    conn.execute(
        "DELETE FROM cdm.order_contributions WHERE update_ts IS NULL"
        " AND order_key = ANY(%b::uuid[])",
        (sorted(keys, key=attrgetter("int")),),
    )


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
    """:class:`~dwh_core.ports.CounterStore` on the ``cdm`` marts and their ledger."""

    @contextmanager
    def transaction(self) -> Iterator[PostgresCounterTransaction]:
        with self._transaction() as conn:
            transaction = PostgresCounterTransaction(conn)
            yield transaction
            transaction.release_placeholders()
