"""The raw event store on PostgreSQL: ``stg.order_events``, the newest version of each
order as received, one ``INSERT ... SELECT FROM unnest(arrays)`` per batch in key order.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.statements import arrays_of, assignments
from dwh_core.ports import RawEvent

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
