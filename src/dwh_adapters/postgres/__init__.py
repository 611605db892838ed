"""The ports of :mod:`dwh_core.ports` on PostgreSQL (psycopg 3), the schema migrations
and the read side of the marts.

The write-side stores, one module each: :mod:`~dwh_adapters.postgres.raw_events`,
:mod:`~dwh_adapters.postgres.vault_store` and :mod:`~dwh_adapters.postgres.counter_store`
(the last two claim keys the same way, :mod:`~dwh_adapters.postgres.claims`).
"""

from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.vault_store import PostgresVaultStore

__all__ = ["PostgresCounterStore", "PostgresRawEventStore", "PostgresVaultStore"]
