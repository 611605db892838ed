"""User tags on PostgreSQL (docs/CONTRACT.md §8, docs/TAGS.md): entered and exited with
the marts in one transaction, exact under refunds, stale versions and replays; rule
changes that count afresh and emit only real changes; windows swept at an explicit
clock; delivery after the commit that survives a crash before the mark; and a recount
from scratch that finds nothing to correct, or names what differs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import orjson
import pytest

from dwh_adapters.memory import InMemoryDeadLetters, InMemoryPublisher, InMemoryTopics
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.postgres.tag_store import PostgresTagAdmin, tag_differences
from dwh_core import CdmService, InMessage, KeyName, OrderFacts, hash_key
from dwh_core.orders import OrderId
from dwh_core.parsing import encode
from dwh_core.tags import TagEvent, TagRule
from tests.support.stores import Connection

pytestmark = pytest.mark.integration

T0 = datetime(2023, 4, 1, 12, 0)
PIZZA = KeyName(hash_key("Пицца"), "Пицца")
SOUP = KeyName(hash_key("Супы"), "Супы")
MARGHERITA = KeyName(hash_key("p-1"), "Пицца «Маргарита»")
BORSCH = KeyName(hash_key("p-2"), "Борщ")
RULES = [
    TagRule("pizza_lover", "Любитель пиццы", "category", "пицца ", 2),
    TagRule("borsch_fan", "Любитель борща", "product", "Борщ", 1),
]


def facts(
    order_id: int,
    user: str,
    status: str,
    minute: int,
    products: Sequence[KeyName] = (MARGHERITA,),
    date: datetime | None = None,
) -> OrderFacts:
    categories = [PIZZA if p is MARGHERITA else SOUP for p in products]
    return OrderFacts(
        order_key=hash_key(str(order_id)),
        order_id=OrderId(order_id),
        user_key=hash_key(user),
        user_id=user,
        update_ts=T0 + timedelta(minutes=minute),
        status=status,
        products=list(products),
        categories=list({c.key: c for c in categories}.values()),
        content_hash=f"{order_id}-{status}-{minute}",
        date=date or T0 + timedelta(minutes=minute),
    )


class Cdm:
    """The CDM layer on the warehouse, its tag events on an in-memory topic."""

    def __init__(self, settings: PgSettings) -> None:
        self.topics = InMemoryTopics()
        self.store = PostgresCounterStore(settings)
        self.service = CdmService(
            self.store,
            InMemoryDeadLetters(self.topics),
            InMemoryPublisher(self.topics, "tags"),
        )
        self.offset = 0

    def handle(self, versions: Sequence[OrderFacts], batch: int = 500) -> None:
        messages = []
        for version in versions:
            messages.append(InMessage(encode(version), "dds", 0, self.offset))
            self.offset += 1
        for start in range(0, len(messages), batch):
            self.service.handle(messages[start : start + batch])
            self.service.deliver_tag_events()

    def published(self) -> list[dict[str, object]]:
        return [orjson.loads(m.value or b"") for m in self.topics.messages["tags"]]


@pytest.fixture
def cdm(settings: PgSettings, db: Connection) -> Iterator[Cdm]:
    layer = Cdm(settings)
    yield layer
    layer.store.close()


@pytest.fixture
def admin(settings: PgSettings, db: Connection) -> Iterator[PostgresTagAdmin]:
    with PostgresTagAdmin(settings) as admin:
        yield admin


def events(db: Connection) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT user_source_id, tag_id, sequence, event, at, order_cnt"
        " FROM cdm.user_tag_events ORDER BY event_id"
    ).fetchall()


def members(db: Connection) -> set[tuple[str, str, int]]:
    rows = db.execute("SELECT user_source_id, tag_id, order_cnt FROM cdm.user_tags").fetchall()
    return set(rows)


def test_a_user_enters_at_the_threshold_and_exits_after_a_refund(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection
) -> None:
    admin.change(RULES, "rules", T0, apply=True)
    cdm.handle([facts(1, "u1", "CLOSED", 1), facts(2, "u1", "CLOSED", 2)])
    assert members(db) == {("u1", "pizza_lover", 2)}
    cdm.handle([facts(2, "u1", "CANCELLED", 5)])  # the refund
    cdm.handle([facts(2, "u1", "CLOSED", 3)])  # older than the refund: stale
    assert members(db) == set()
    assert events(db) == [
        ("u1", "pizza_lover", 1, "entered", T0 + timedelta(minutes=2), 2),
        ("u1", "pizza_lover", 2, "exited", T0 + timedelta(minutes=5), 1),
    ]
    assert [(m["user_id"], m["event"], m["sequence"]) for m in cdm.published()] == [
        ("u1", "entered", 1),
        ("u1", "exited", 2),
    ]
    assert cdm.published()[0] == {
        "user_id": "u1",
        "tag_id": "pizza_lover",
        "tag_name": "Любитель пиццы",
        "event": "entered",
        "at": "2023-04-01 12:02:00",
        "sequence": 1,
    }
    assert tag_differences(db)[1] == []


FEED = [
    facts(1, "u1", "CLOSED", 1),
    facts(2, "u1", "CLOSED", 2, (MARGHERITA, BORSCH)),
    facts(3, "u2", "CLOSED", 3, (BORSCH,)),
    facts(2, "u1", "CANCELLED", 4, (MARGHERITA, BORSCH)),
    facts(4, "u1", "CLOSED", 5),
    facts(1, "u1", "CANCELLED", 6),
    facts(1, "u1", "CLOSED", 2),  # stale
    facts(5, "u2", "CLOSED", 7, (MARGHERITA,)),
    facts(6, "u2", "CLOSED", 8, (MARGHERITA, BORSCH)),
    facts(6, "u2", "CLOSED", 8, (MARGHERITA, BORSCH)),  # duplicate
]


@pytest.mark.parametrize("batch", [1, 3, 500])
def test_the_transitions_do_not_depend_on_batches_and_replays_change_nothing(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection, batch: int
) -> None:
    admin.change(RULES, "rules", T0, apply=True)
    cdm.handle(FEED, batch)
    first = events(db), members(db)
    # Version by version, in the order they came, whatever the batches.
    assert [(user, tag, event) for user, tag, _, event, _, _ in first[0]] == [
        ("u1", "pizza_lover", "entered"),
        ("u1", "borsch_fan", "entered"),
        ("u2", "borsch_fan", "entered"),
        ("u1", "pizza_lover", "exited"),
        ("u1", "borsch_fan", "exited"),
        ("u1", "pizza_lover", "entered"),
        ("u1", "pizza_lover", "exited"),
        ("u2", "pizza_lover", "entered"),
    ]
    cdm.handle(FEED, 2)  # a replay, in other batches
    assert (events(db), members(db)) == first
    assert members(db) == {("u2", "borsch_fan", 2), ("u2", "pizza_lover", 2)}
    assert tag_differences(db)[1] == []


def test_a_rule_change_is_shown_then_applied_and_counts_afresh(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection
) -> None:
    admin.change(RULES, "v1", T0, apply=True)
    cdm.handle(FEED)
    db.execute("INSERT INTO dds.h_user VALUES (%s, 'u2', now(), 'test')", [hash_key("u2")])
    before = events(db)
    wanted = [
        TagRule("pizza_lover", "Любитель пиццы", "category", "Пицца", 3),  # changed
        TagRule("soup_fan", "Супы", "category", "Супы", 1),  # added; borsch_fan removed
    ]
    change, update, version = admin.change(wanted, "v2", T0 + timedelta(days=1), apply=False)
    assert (change.added, change.changed, [r.tag_id for r in change.removed]) == (
        ("soup_fan",),
        ("pizza_lover",),
        ["borsch_fan"],
    )
    assert sorted((e.user_id, e.tag_id, e.event) for e in update.events) == [
        ("u2", "borsch_fan", "exited"),
        ("u2", "pizza_lover", "exited"),
        ("u2", "soup_fan", "entered"),
    ]
    assert version == 2
    assert events(db) == before, "a dry run writes nothing"
    admin.change(wanted, "v2", T0 + timedelta(days=1), apply=True)
    assert events(db)[len(before) :] == [
        ("u2", "borsch_fan", 2, "exited", T0 + timedelta(days=1), 0),
        ("u2", "pizza_lover", 2, "exited", T0 + timedelta(days=1), 2),
        ("u2", "soup_fan", 1, "entered", T0 + timedelta(days=1), 2),
    ]
    again, update, version = admin.change(wanted, "v2", T0 + timedelta(days=2), apply=True)
    assert again.is_empty and update.events == [] and version == 2
    cdm.handle([facts(7, "u2", "CLOSED", 9)])  # the new threshold, on the hot path
    assert ("u2", "pizza_lover", 3) in members(db)
    assert tag_differences(db)[1] == []


def test_a_windowed_rule_is_swept_at_an_explicit_clock(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection
) -> None:
    rule = TagRule("pizza_month", "Пицца в этом месяце", "category", "Пицца", 2, within_days=30)
    admin.change([rule], "w", T0, apply=True)  # the window starts 30 days before T0
    day = timedelta(days=1)
    cdm.handle(
        [
            facts(1, "u1", "CLOSED", 1, date=T0 - 40 * day),  # already out of the window
            facts(2, "u1", "CLOSED", 2, date=T0 - 10 * day),
            facts(3, "u1", "CLOSED", 3, date=T0 - 5 * day),
        ]
    )
    assert members(db) == {("u1", "pizza_month", 2)}
    assert admin.sweep(T0 + 15 * day).events == []  # both still within 30 days
    update = admin.sweep(T0 + 21 * day)  # order 2 aged out on T0 + 20 days
    assert [(e.event, e.at, e.order_cnt) for e in update.events] == [("exited", T0 + 20 * day, 1)]
    assert admin.sweep(T0 + 10 * day).events == [], "a window never moves back"
    assert members(db) == set()
    assert tag_differences(db)[1] == []


def test_transitions_are_delivered_after_the_commit_and_again_after_a_failed_delivery(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection
) -> None:
    admin.change(RULES, "rules", T0, apply=True)
    cdm.handle([facts(1, "u1", "CLOSED", 1, (BORSCH,))])

    def fail(events: Sequence[TagEvent]) -> None:
        raise ConnectionError("broker down")

    cdm.handle([facts(2, "u3", "CLOSED", 2, (BORSCH,))], batch=1)
    published = len(cdm.published())
    db.execute("UPDATE cdm.user_tag_events SET published = false")  # as if never marked
    with pytest.raises(ConnectionError):
        cdm.store.deliver(fail)
    sent: list[TagEvent] = []
    assert cdm.store.deliver(sent.extend) == 2
    assert [(e.user_id, e.sequence) for e in sent] == [("u1", 1), ("u3", 1)]
    assert cdm.store.deliver(sent.extend) == 0
    assert published == 2


def test_a_recount_from_scratch_names_what_differs(
    cdm: Cdm, admin: PostgresTagAdmin, db: Connection
) -> None:
    admin.change(RULES, "rules", T0, apply=True)
    cdm.handle(FEED)
    compared, found = tag_differences(db)
    assert compared > 0 and found == []
    db.execute(
        "UPDATE cdm.user_tag_counters SET order_cnt = order_cnt + 1 WHERE tag_id = 'borsch_fan'"
    )
    db.execute("UPDATE cdm.user_tag_counters SET entered_at = NULL WHERE tag_id = 'pizza_lover'")
    found = tag_differences(db)[1]
    assert {(d.tag_id, d.what) for d in found} == {
        ("borsch_fan", "orders counted"),
        ("pizza_lover", "member"),
    }
    assert all(isinstance(d.user_key, uuid.UUID) for d in found)
