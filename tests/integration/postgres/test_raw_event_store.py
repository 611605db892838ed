"""The RawEventStore contract, run against the in-memory store and the PostgreSQL one
(so the fake cannot drift), and what only PostgreSQL has to show."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from attrs import frozen

from dwh_adapters.memory import InMemoryRawEventStore
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.settings import PgSettings
from dwh_core.ports import RawEvent, RawEventStore
from dwh_core.versions import Version
from tests.support.stores import T0, Connection, event, select

pytestmark = pytest.mark.integration


@frozen
class RawHarness:
    store: RawEventStore
    stored: Callable[[], dict[int, tuple[datetime, Any]]]
    """object_id -> (update_ts, payload as parsed JSON)"""


@pytest.fixture(params=["memory", "postgres"])
def raw(request: pytest.FixtureRequest) -> Iterator[RawHarness]:
    if request.param == "memory":
        memory = InMemoryRawEventStore()
        yield RawHarness(
            memory,
            lambda: {
                k: (e.version.update_ts, json.loads(e.message)["payload"])
                for k, e in memory.events.items()
            },
        )
        return
    db: Connection = request.getfixturevalue("db")
    with PostgresRawEventStore(request.getfixturevalue("settings")) as store:
        yield RawHarness(
            store,
            lambda: {
                object_id: (update_ts, payload)
                for object_id, update_ts, payload in select(
                    db, "SELECT object_id, update_ts, payload FROM stg.order_events"
                )
            },
        )


def test_raw_events_keep_the_newest_version_whatever_the_arrival_order(raw: RawHarness) -> None:
    raw.store.save([event(1, 10), event(1, 30), event(1, 20), event(2, 5)])
    raw.store.save([event(1, 25), event(2, 1)])
    raw.store.save([event(2, 7)])

    stored = raw.stored()
    assert {key: value[0] for key, value in stored.items()} == {
        1: T0 + timedelta(minutes=30),
        2: T0 + timedelta(minutes=7),
    }
    assert stored[1][1]["name"] == 'Салат «Цезарь»; с "курицей"'


def test_raw_events_keep_the_winner_of_the_tie_break_at_equal_update_ts(raw: RawHarness) -> None:
    raw.store.save([event(1, 10, "b"), event(1, 10, "c"), event(1, 10, "a")])
    raw.store.save([event(1, 10, "b")])
    assert raw.stored()[1][1]["note"] == "c"
    raw.store.save([event(1, 10, "d")])
    assert raw.stored()[1][1]["note"] == "d"


def test_stored_payloads_keep_numbers_no_python_float_holds_exactly(
    settings: PgSettings, db: Connection
) -> None:
    huge = "123456789012345678901234567890.000000000000000000001"
    message = '{"object_id": 1, "payload": {"tip": ' + huge + ', "big": 18446744073709551616}}'
    with PostgresRawEventStore(settings) as store:
        store.save([RawEvent(1, "order", T0, Version(T0, b""), message)])
    [(tip, big)] = select(
        db, "SELECT payload->>'tip', payload->>'big' FROM stg.order_events WHERE object_id = 1"
    )
    assert (tip, big) == (huge, "18446744073709551616")


def test_raw_events_of_many_orders_in_one_batch_are_each_kept_once(raw: RawHarness) -> None:
    rng = random.Random(7)
    events = [event(rng.randrange(50), rng.randrange(100), str(n)) for n in range(500)]
    raw.store.save(events)
    raw.store.save(events[::-1])

    newest = {
        e.object_id: max(x.version for x in events if x.object_id == e.object_id).update_ts
        for e in events
    }
    assert {key: value[0] for key, value in raw.stored().items()} == newest
