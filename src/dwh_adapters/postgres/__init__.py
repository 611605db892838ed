"""The ports of :mod:`dwh_core.ports` on PostgreSQL (psycopg 3), the schema migrations
and the read side of the marts.

The write-side stores, one module each: :mod:`~dwh_adapters.postgres.raw_events`,
:mod:`~dwh_adapters.postgres.vault_store` and :mod:`~dwh_adapters.postgres.counter_store`
(the last two claim keys the same way, :mod:`~dwh_adapters.postgres.claims`). Nothing
is imported here, so a command that only connects or migrates loads no store.
"""
