"""The vault store on PostgreSQL: the ``dds`` hubs, links and satellites, and the
satellite states, with statements generated from the specs of :mod:`dwh_core.vault`
and the SQL types of :data:`COLUMN_TYPES`.

The vault's batches are the largest, so each table's rows go by binary ``COPY`` into a
staging table and one ``INSERT ... SELECT`` from it
(:class:`~dwh_adapters.postgres.statements.StagedInsert`). Rows are written sorted by
key, and tables in a fixed order (hubs, links, satellites, states), so two replicas
writing the same keys (products and categories are shared by all users) wait for each
other instead of deadlocking. The states of shared satellites are claimed before they
are read (:mod:`~dwh_adapters.postgres.claims`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.claims import ClaimedTable, Claims
from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.statements import Row, StagedInsert, assignments, staged_insert
from dwh_core.vault import HUBS, LINKS, SATELLITES, SatelliteState, VaultRows

# The SQL type of every value column the specs name (hub keys and satellite values; the
# specs describe the model, its storage is this adapter's), as psycopg's registry names
# them: the COPY is binary, so each value is sent as exactly this type. A column name
# has the same type in every table (``name``: a product's or a restaurant's).
COLUMN_TYPES: Mapping[str, str] = {
    "user_id": "varchar",
    "product_id": "varchar",
    "category_name": "varchar",
    "restaurant_id": "varchar",
    "order_id": "integer",
    "order_dt": "timestamp",
    "username": "varchar",
    "userlogin": "varchar",
    "name": "varchar",
    "cost": "numeric",
    "payment": "numeric",
    "status": "varchar",
}


def _typed(columns: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(column, SQL type) of spec columns; every one must have a type in COLUMN_TYPES."""
    missing = [column for column in columns if column not in COLUMN_TYPES]
    if missing:
        raise LookupError(f"no SQL type for the vault columns {missing}: add them to COLUMN_TYPES")
    return tuple((column, COLUMN_TYPES[column]) for column in columns)


_LOAD_COLUMNS = (("load_dt", "timestamp"), ("load_src", "varchar"))
_DO_NOTHING = sql.SQL("ON CONFLICT DO NOTHING")
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
            ((spec.pk, "uuid"), *_typed(spec.key_columns), *_LOAD_COLUMNS),
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
                *_typed(spec.columns),
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

# Only keys that replicas on different partitions share need the claim: messages are
# keyed by user, so an order's and a user's satellites belong to one partition, and a
# replayed message two replicas might both process has one source_ts, which the primary
# key (hub key, source_ts) already keeps single. Products and restaurants appear in
# every partition's orders.
SHARED_SATELLITES = frozenset({"product_names", "restaurant_names"})

# The claims of dds.satellite_state, keyed by (satellite, hub_pk); a placeholder has a
# NULL source_ts.
_STATE_CLAIMS = ClaimedTable(
    claim=sql.SQL(
        "INSERT INTO dds.satellite_state (satellite, hub_pk, hashdiff, source_ts)"
        " SELECT s, k, %b, NULL FROM unnest(%b::varchar[], %b::uuid[]) AS x(s, k) ORDER BY s, k"
        " ON CONFLICT DO NOTHING"
    ),
    lock=sql.SQL(
        "SELECT satellite, hub_pk, hashdiff, source_ts, tiebreak FROM dds.satellite_state"
        " WHERE (satellite, hub_pk) IN (SELECT * FROM unnest(%b::varchar[], %b::uuid[]))"
        " ORDER BY satellite, hub_pk FOR UPDATE"
    ),
    release=sql.SQL(
        "DELETE FROM dds.satellite_state WHERE source_ts IS NULL"
        " AND (satellite, hub_pk) IN (SELECT * FROM unnest(%b::varchar[], %b::uuid[]))"
    ),
    key_width=2,  # satellite, hub_pk
    version_column=3,  # source_ts
    order=lambda key: (key[0], key[1].int),
    needs_claim=lambda key: key[0] in SHARED_SATELLITES,
)


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
        self._claims = Claims(conn, _STATE_CLAIMS)
        self._saved = False

    def satellite_states(
        self, keys: Collection[tuple[str, uuid.UUID]]
    ) -> Mapping[tuple[str, uuid.UUID], SatelliteState]:
        rows = self._claims.lock(keys)
        return {
            (name, pk): SatelliteState(name, pk, hashdiff, ts, tiebreak)
            for name, pk, hashdiff, ts, tiebreak in rows
        }

    def save(self, rows: VaultRows, states: Sequence[SatelliteState]) -> None:
        # The staging tables empty at commit: a second save would insert the first's rows again.
        if self._saved:
            raise RuntimeError("a vault transaction saves once")
        self._saved = True
        self._claims.replaced((state.name, state.hub_pk) for state in states)
        batches = _vault_batches(rows, states)
        with self._conn.cursor() as cursor:
            for table, staged in _VAULT_TABLES.items():
                if table in batches:
                    staged.write(cursor, batches[table])

    def release_placeholders(self) -> None:
        """Drop the claims that no state replaced (keys asked about but not saved)."""
        self._claims.release()


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
