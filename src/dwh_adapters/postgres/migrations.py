"""Versioned schema migrations: the SQL files of ``dwh_adapters/migrations``.

A file ``NNNN_name.sql`` is version ``NNNN``. :func:`migrate` applies the pending
versions in order, each in its own transaction together with its row in
``public.dwh_schema_migrations``, under a transaction-level advisory lock, so a second
run applies nothing and two migrators started at once apply each version once.
Workers do not migrate: they call :func:`check_schema` at start and refuse to run on
an older schema (``dwh migrate`` brings it up to date).
"""

from __future__ import annotations

import re
from importlib.resources import files

import psycopg
from attrs import frozen
from psycopg import sql
from psycopg.rows import TupleRow

MIGRATIONS_TABLE = "public.dwh_schema_migrations"
# An arbitrary fixed key ("dwh_migr" in ASCII) that only the migrator takes.
_LOCK_KEY = 0x6477685F6D696772
_FILE_NAME = re.compile(r"(\d{4})_(\w+)\.sql")


@frozen
class Migration:
    version: int
    name: str
    script: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def _load() -> tuple[Migration, ...]:
    folder = files("dwh_adapters").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1, 2, 3, ... without gaps: {versions}")
    return tuple(found)


MIGRATIONS = _load()
LATEST_VERSION = MIGRATIONS[-1].version


class SchemaOutdated(RuntimeError):
    """The warehouse schema is older than this code needs; ``str()`` says what to do."""


def migrate(conn: psycopg.Connection[TupleRow]) -> list[str]:
    """Apply the pending migrations in order; the labels (``0001_initial``) of those
    applied, empty when the schema was already up to date."""
    applied = []
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.dwh_schema_migrations ("
                " version int PRIMARY KEY, name varchar NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = conn.execute(
                "SELECT 1 FROM public.dwh_schema_migrations WHERE version = %s",
                (migration.version,),
            ).fetchone()
            if done:
                continue
            conn.execute(sql.SQL(migration.script))
            conn.execute(
                "INSERT INTO public.dwh_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        applied.append(migration.label)
    return applied


def schema_version(conn: psycopg.Connection[TupleRow]) -> int:
    """The newest applied migration version; 0 for a database never migrated."""
    with conn.transaction():
        table = conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone()
        if table is None or table[0] is None:
            return 0
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM public.dwh_schema_migrations"
        ).fetchone()
    return int(row[0]) if row else 0


def check_schema(conn: psycopg.Connection[TupleRow]) -> None:
    """Raise :class:`SchemaOutdated` unless the schema is at :data:`LATEST_VERSION` or
    newer. A newer schema is accepted so that the previous release's workers keep
    running during a rolling upgrade; migrations must stay backward compatible."""
    version = schema_version(conn)
    if version < LATEST_VERSION:
        raise SchemaOutdated(
            f"warehouse schema is at version {version}, this worker needs"
            f" {LATEST_VERSION}: run 'dwh migrate'"
        )
