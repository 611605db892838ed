"""Hostile input, fuzzed (docs/CONTRACT.md §5, §7): mutated orders and dictionary entries.

* The parsers return a value or raise :class:`InvalidMessage`, nothing else; they accept
  exactly what the contract accepts (the independent oracle), and what they accept they
  keep exactly.
* Through the whole in-memory pipeline, on dictionaries that may themselves be broken:
  no layer's ``handle()`` raises; every message is either dead-lettered by STG or
  passed on by every layer; the marts and the stored newest versions equal the oracle's.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_core.parsing import InvalidMessage, parse_order, parse_restaurant, parse_user
from dwh_workers import oracle
from dwh_workers.in_process import InMemoryPipeline
from dwh_workers.topology import DDS_TOPIC, STG_TOPIC
from tests.support.builders import BASE_TIME, MENU_A, MENU_B, order, restaurant, user
from tests.support.fuzz import (
    Drawn,
    Pairs,
    dumps,
    entry_messages,
    mutated_entries,
    mutated_orders,
    nested,
    order_messages,
    tied_version,
)

STATUSES = ("OPEN", "COOKING", "DELIVERING", "CLOSED", "CANCELLED", "REFUNDED")

# Valid, but at the edges: names at the length limit, astral characters, combining
# marks, right-to-left text; ids and categories that differ as text but are one hub key
# once trimmed and upper-cased (" user ß " and "USER SS", "Пицца" and "пицца ").
EDGE_USER = {
    "_id": " user ß ",
    "name": "😀" * 500,
    "login": "e\u0301\u202eлогин\u202c",
    "update_ts_utc": "0001-01-01 00:00:00",
}
TWIN_USER = {
    "_id": "USER SS",
    "name": "Щ" * 500,
    "login": "twin",
    "update_ts_utc": "9999-12-31 23:59:59",
}
EDGE_RESTAURANT = {
    "_id": "ресторан 😀",
    "name": "مطعم" * 100,
    "menu": [
        {"_id": "😀" * 24, "name": "x" * 500, "price": 99_999_999_999_999, "category": "пицца "},
        {"_id": "x" * 500, "name": "Ю\u0306", "price": -1, "category": "Щ" * 500},
        {"_id": "ß", "name": "ß", "price": 0, "category": "SS"},
        {"_id": "SS", "name": "SS", "price": 2**31, "category": "ß"},
    ],
    "update_ts_utc": "2023-04-01 20:45:43.5+03:00",
}
USERS = [*(user(n) for n in range(1, 4)), EDGE_USER, TWIN_USER]
RESTAURANTS = [restaurant(1, MENU_A), restaurant(2, MENU_B), EDGE_RESTAURANT]
ENTRIES = [*USERS, *RESTAURANTS]
REFERENCES = sorted(
    {doc["_id"] for doc in ENTRIES} | {item["_id"] for r in RESTAURANTS for item in r["menu"]}
)
ORDER_IDS = (1, 2, 3, 0, -(2**31), 2**31 - 1)


def sample_orders() -> list[dict[str, Any]]:
    """A few valid orders, one per user and restaurant, for the parser tests."""
    return [
        order(n, u["_id"], r, list(range(len(r["menu"]))), STATUSES[n % 6], 60 * n)
        for n, (u, r) in enumerate(itertools.product(USERS, RESTAURANTS), start=1)
    ]


SAMPLE_ORDERS = sample_orders()


def valid_order(**changes: Any) -> dict[str, Any]:
    document = order(7, USERS[0]["_id"], RESTAURANTS[0], [0, 1], "CLOSED", 60)
    document["payload"].update(changes)
    return document


# What the fuzzer found, kept as explicit examples (docs/CONTRACT.md §7 says each is valid):
# text that spells a NUL's escape without being one, and an extra field nested deeper
# than orjson writes (255 levels) but well within what it reads.
SPELLED_NUL = dumps(valid_order(note="C:\\u0000"))
DEEP_EXTRA = dumps(valid_order(extra=nested(300)))


def outcome(parse: Callable[[bytes], object], raw: bytes) -> object | None:
    """The parsed value, or None when rejected with InvalidMessage (anything else
    escapes and fails the test)."""
    try:
        return parse(raw)
    except InvalidMessage:
        return None


# --- (1) the parsers ------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(raw=order_messages(SAMPLE_ORDERS, REFERENCES))
@example(raw=dumps(Pairs((("object_id", "1"), *valid_order().items()))))
@example(raw=b"")
def test_parse_order_accepts_exactly_the_valid_orders_and_keeps_them_exact(raw: bytes) -> None:
    parsed = outcome(parse_order, raw)
    expected = oracle.problem(oracle.order_document, raw)
    assert (parsed is not None) == (expected is None), f"contract says: {expected or 'valid'}"
    if parsed is not None:
        assert_exact(parsed, oracle.order_document(raw))


def assert_exact(parsed: Any, document: dict[str, Any]) -> None:
    """Every value of the parsed order is the document's: nothing wrapped, truncated or
    rounded, timestamps the same instant in UTC."""
    payload = document["payload"]
    p = parsed.payload
    assert parsed.object_id == document["object_id"]
    assert (p.cost, p.payment, p.bonus_payment, p.bonus_grant) == (
        payload["cost"],
        payload["payment"],
        payload["bonus_payment"],
        payload["bonus_grant"],
    )
    assert [(i.id, i.name, i.price, i.quantity) for i in p.order_items] == [
        (i["id"], i["name"], i["price"], i["quantity"]) for i in payload["order_items"]
    ]
    assert (p.user.id, p.restaurant.id, p.final_status) == (
        payload["user"]["id"],
        payload["restaurant"]["id"],
        payload["final_status"],
    )
    assert [(s.status, s.dttm) for s in p.statuses] == [
        (s["status"], oracle.utc(s["dttm"])) for s in payload["statuses"]
    ]
    assert (p.update_ts, p.date, parsed.sent_dttm) == (
        oracle.utc(payload["update_ts"]),
        oracle.utc(payload["date"]),
        oracle.utc(document["sent_dttm"]),
    )


@settings(max_examples=300, deadline=None)
@given(raw=entry_messages(USERS, REFERENCES))
def test_parse_user_accepts_exactly_the_valid_users_and_keeps_them_exact(raw: bytes) -> None:
    parsed = outcome(parse_user, raw)
    expected = oracle.problem(oracle.user_document, raw)
    assert (parsed is not None) == (expected is None), f"contract says: {expected or 'valid'}"
    if parsed is not None:
        document = oracle.user_document(raw)
        assert (parsed.id, parsed.name, parsed.login) == (  # type: ignore[attr-defined]
            document["_id"],
            document["name"],
            document["login"],
        )


@settings(max_examples=300, deadline=None)
@given(raw=entry_messages(RESTAURANTS, REFERENCES))
def test_parse_restaurant_accepts_exactly_the_valid_restaurants_and_keeps_them_exact(
    raw: bytes,
) -> None:
    parsed = outcome(parse_restaurant, raw)
    expected = oracle.problem(oracle.restaurant_document, raw)
    assert (parsed is not None) == (expected is None), f"contract says: {expected or 'valid'}"
    if parsed is not None:
        document = oracle.restaurant_document(raw)
        assert [(m.id, m.name, m.price, m.category) for m in parsed.menu] == [  # type: ignore[attr-defined]
            (m["_id"], m["name"], m["price"], m["category"]) for m in document["menu"]
        ]


# --- (2) the in-memory pipeline -------------------------------------------------------

Feed = tuple[dict[str, bytes], list[bytes | None]]


@st.composite
def valid_orders(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Versions of a few orders: statuses and update seconds from a small range, so that
    stale versions, replays and ties (same ``update_ts``, other content) are common."""
    documents = []
    for object_id in draw(st.sets(st.sampled_from(ORDER_IDS), min_size=1, max_size=4)):
        owner = draw(st.sampled_from(USERS))["_id"]
        place = draw(st.sampled_from(RESTAURANTS))
        menu = range(len(place["menu"]))
        items = draw(st.lists(st.sampled_from(menu), min_size=1, max_size=3))
        for _ in range(draw(st.integers(1, 3))):
            status, second = draw(st.sampled_from(STATUSES)), draw(st.integers(0, 3))
            documents.append(order(object_id, owner, place, items, status, 60 * second))
    ties = draw(st.lists(st.sampled_from(documents), max_size=2))
    return documents + [tied_version(Drawn(draw), document) for document in ties]


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    """Dictionaries (some entries mutated) and the messages of a feed: valid versions,
    mutated ones, empty values, in any order, with duplicates."""
    entries = {doc["_id"]: dumps(doc) for doc in ENTRIES}
    for document in draw(st.lists(st.sampled_from(ENTRIES), max_size=2, unique_by=id)):
        entries[document["_id"]] = draw(mutated_entries([document], REFERENCES))
    documents = draw(valid_orders())
    valid = [dumps(document, draw(st.booleans())) for document in documents]
    hostile = draw(st.lists(mutated_orders(documents, REFERENCES), max_size=10))
    empty = draw(st.lists(st.none(), max_size=1))  # a Kafka message with no value
    messages: list[bytes | None] = [*valid, *hostile, *empty]
    shuffled = draw(st.permutations(messages))
    duplicates = draw(st.lists(st.sampled_from(messages), max_size=4))
    return entries, shuffled + duplicates


def run_pipeline(
    entries: dict[str, bytes], messages: Sequence[bytes | None], sizes: list[int]
) -> InMemoryPipeline:
    pipeline = InMemoryPipeline(InMemoryDictionaries(entries), FixedClock(BASE_TIME))
    pipeline.feed(messages)
    pipeline.run(itertools.cycle(sizes))
    return pipeline


def letters(pipeline: InMemoryPipeline, stage: str) -> Counter[bytes | None]:
    return Counter(
        letter.message.value for letter in pipeline.dead_letters.letters if letter.stage == stage
    )


@settings(max_examples=200, deadline=None)
@given(feed=feeds(), sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5))
def test_every_message_is_in_the_marts_as_the_oracle_says_or_dead_lettered(
    feed: Feed, sizes: list[int]
) -> None:
    entries, messages = feed
    pipeline = run_pipeline(entries, messages, sizes)  # no handle() may raise
    verdict = oracle.judge(messages, oracle.Dictionaries(entries))

    # Per layer: passed on + dead-lettered == received.
    assert letters(pipeline, "stg") == Counter(raw for raw, _ in verdict.rejected)
    assert Counter(_order_id(m.value) for m in pipeline.topics.messages[STG_TOPIC]) == Counter(
        message.document["object_id"] for message in verdict.accepted
    )
    assert len(pipeline.topics.messages[DDS_TOPIC]) == len(verdict.accepted)
    assert not letters(pipeline, "dds") and not letters(pipeline, "cdm")

    products, categories = verdict.marts()
    assert pipeline.counters.product_counts() == products
    assert pipeline.counters.category_counts() == categories
    stored = {order_id: event.message for order_id, event in pipeline.events.events.items()}
    newest = {order_id: winner.raw.decode() for order_id, winner in verdict.newest().items()}
    assert stored == newest


def _order_id(value: bytes | None) -> int:
    return int(json.loads(value or b"null")["object_id"])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (dumps(valid_order(extra=10**20)), dumps(valid_order(extra=10**20 + 1))),
        (dumps(valid_order(note="a")), dumps(valid_order(note="b"))),
    ],
    ids=["integers past 64 bits", "strings"],
)
def test_tied_versions_that_differ_only_in_an_extra_field_have_one_winner(
    first: bytes, second: bytes
) -> None:
    """Two versions with the same update_ts and status, different content: the same one
    is stored whatever the arrival order (docs/CONTRACT.md §7)."""
    entries = {doc["_id"]: dumps(doc) for doc in ENTRIES}
    results = [
        run_pipeline(entries, feed, [1]).events.events[7].message
        for feed in ([first, second], [second, first])
    ]
    assert results[0] == results[1]
    winner = oracle.judge([first, second], oracle.Dictionaries(entries)).newest()[7]
    assert results[0] == winner.raw.decode()


@pytest.mark.parametrize("raw", [SPELLED_NUL, DEEP_EXTRA], ids=["spelled NUL", "deep extra field"])
def test_valid_orders_the_fuzzer_found_pass_every_layer(raw: bytes) -> None:
    entries = {doc["_id"]: dumps(doc) for doc in ENTRIES}
    pipeline = run_pipeline(entries, [raw], [1])
    assert [letter.reason for letter in pipeline.dead_letters.letters] == []
    assert len(pipeline.topics.messages[DDS_TOPIC]) == 1
    products, categories = oracle.judge([raw], oracle.Dictionaries(entries)).marts()
    assert products and categories
    assert pipeline.counters.product_counts() == products
    assert pipeline.counters.category_counts() == categories
