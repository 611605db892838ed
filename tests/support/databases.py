"""Throwaway warehouse databases, so a test owns its tables."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import psycopg
from psycopg import sql

from dwh_adapters.postgres.migrations import migrate
from dwh_adapters.postgres.settings import PgSettings, connect


@contextmanager
def fresh_database(base: PgSettings, migrated: bool = True) -> Iterator[PgSettings]:
    """A new database, migrated to the latest schema unless told not to; dropped
    afterwards."""
    name = f"dwh_test_{uuid.uuid4().hex[:10]}"
    with connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    settings = attrs.evolve(base, dbname=name)
    try:
        if migrated:
            with connect(settings, autocommit=True) as connection:
                migrate(connection)
        yield settings
    finally:
        _drop(base, name)


def _drop(base: PgSettings, name: str, timeout: float = 60) -> None:
    """Drop the database, ending its sessions. An autovacuum worker busy in it cannot be
    ended by a non-superuser; it finishes within moments, so try again until then."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    deadline = time.monotonic() + timeout
    with connect(base, autocommit=True) as admin:
        while True:
            try:
                admin.execute(statement)
                return
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
