"""What the tests of the PostgreSQL stores share: the warehouse connection type, a query
helper, raw events, and enriched orders from the sample users and restaurants written to
a vault store as the DDS layer writes them. The fixtures (``settings``, ``db``) are in
``tests/integration/conftest.py``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_core.enrichment import Catalog, enrich
from dwh_core.orders import EnrichedOrder
from dwh_core.parsing import parse_order
from dwh_core.ports import RawEvent, VaultStore
from dwh_core.vault import SatelliteState, VaultRows, satellite_changes, vault_rows
from dwh_core.versions import Version, content_hash
from dwh_workers.topology import STG_TOPIC
from tests.support.builders import MENU_A, MENU_B, order, restaurant, to_bytes, user
from tests.support.pipeline import dictionaries_of

Connection = psycopg.Connection[TupleRow]
Row = tuple[Any, ...]
T0 = datetime(2023, 4, 1, 12, 0, 0)
SOURCE = STG_TOPIC  # the record source DDS gives its rows


def select(conn: Connection, query: str, *params: object) -> list[Row]:
    return conn.execute(sql.SQL(query), params).fetchall()


def event(object_id: int, minute: int, note: str = "") -> RawEvent:
    """A version whose tie-break is its note (any bytes order the same way)."""
    payload = {"minute": minute, "note": note, "name": 'Салат «Цезарь»; с "курицей"'}
    return RawEvent(
        object_id=object_id,
        object_type="order",
        sent_dttm=T0 + timedelta(minutes=minute, seconds=5),
        version=Version(T0 + timedelta(minutes=minute), note.encode()),
        message=json.dumps({"object_id": object_id, "payload": payload}, ensure_ascii=False),
    )


USERS = [user(n) for n in range(1, 8)]
RESTAURANTS = [restaurant(1, MENU_A), restaurant(2, MENU_B)]
CATALOG = Catalog(dictionaries_of(USERS, RESTAURANTS).entries)


def enriched(
    object_id: int, items: list[int], status: str = "CLOSED", second: int = 60, user_number: int = 0
) -> EnrichedOrder:
    document = order(object_id, USERS[user_number]["_id"], RESTAURANTS[0], items, status, second)
    raw = to_bytes(document)
    return enrich(parse_order(raw), CATALOG, content_hash(raw))


def save_orders(
    store: VaultStore, orders: list[EnrichedOrder], load_dt: datetime = T0
) -> list[SatelliteState]:
    """What DdsService does with a batch; the states it stored."""
    rows = vault_rows(orders, load_dt, SOURCE)
    with store.transaction() as transaction:
        states = transaction.satellite_states({(s.name, s.hub_pk) for s in rows.satellites})
        changes = satellite_changes(rows.satellites, states)
        transaction.save(VaultRows(rows.hubs, rows.links, changes.rows), changes.states)
    return changes.states
