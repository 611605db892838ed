"""The ports of :mod:`dwh_core.ports` on PostgreSQL (psycopg 3), the schema migrations
and the read side of the marts."""
