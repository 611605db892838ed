"""Every value stored exactly or rejected with its path, and one winner for versions of
an order with the same ``update_ts``, whatever the arrival order (docs/CONTRACT.md §7)."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwh_core.hashing import hash_key
from dwh_core.parsing import (
    MAX_INTEGER,
    MAX_TEXT,
    InvalidMessage,
    parse_order,
    parse_restaurant,
    parse_user,
)
from dwh_core.versions import content_hash, tiebreak
from dwh_workers import oracle
from tests.support.builders import order, to_bytes
from tests.support.pipeline import sample_pipeline


def example() -> dict[str, Any]:
    _, users, restaurants = sample_pipeline()
    return order(7, users[0]["_id"], restaurants[0], [0, 1], "CLOSED", 60)


def rejection(document: dict[str, Any]) -> str:
    with pytest.raises(InvalidMessage) as caught:
        parse_order(to_bytes(document))
    return str(caught.value)


@pytest.mark.parametrize("money", [2**31, 2**40, MAX_INTEGER, -MAX_INTEGER])
def test_money_up_to_the_documented_bound_is_accepted_as_it_is(money: int) -> None:
    document = example()
    document["payload"]["cost"] = money
    assert parse_order(to_bytes(document)).payload.cost == money


def test_money_past_the_bound_is_rejected_with_its_path_never_wrapped() -> None:
    document = example()
    document["payload"]["order_items"][1]["price"] = MAX_INTEGER + 1
    assert rejection(document) == (
        f"$.payload.order_items[1].price: {MAX_INTEGER + 1} is out of range"
        f" (at most {MAX_INTEGER} in magnitude)"
    )


@pytest.mark.parametrize("object_id", [2**31, -(2**31) - 1, 2**40])
def test_an_order_id_past_postgresql_int_is_rejected(object_id: int) -> None:
    document = example()
    document["object_id"] = object_id
    assert rejection(document).startswith(f"$.object_id: order id {object_id} is out of range")


def test_text_past_the_bound_is_rejected_with_a_short_reason() -> None:
    document = example()
    document["payload"]["user"]["id"] = "x" * 10_000
    reason = rejection(document)
    assert reason.startswith(f"$.payload.user.id: text of 10000 characters, more than {MAX_TEXT}")
    assert len(reason) < 200


def test_text_at_the_bound_is_accepted() -> None:
    document = example()
    document["payload"]["order_items"][0]["name"] = "Щ" * MAX_TEXT
    assert parse_order(to_bytes(document)).payload.order_items[0].name == "Щ" * MAX_TEXT


@pytest.mark.parametrize(
    "stamp", ["0001-01-01 00:00:00+01:00", "9999-12-31 23:59:59-01:00", "2023-13-01 00:00:00"]
)
def test_a_timestamp_outside_the_calendar_is_rejected_not_raised(stamp: str) -> None:
    document = example()
    document["payload"]["update_ts"] = stamp
    assert rejection(document).startswith("$.payload.update_ts: ")


@pytest.mark.parametrize("stamp", ["0001-01-01 00:00:00", "9999-12-31 23:59:59"])
def test_the_first_and_last_timestamps_are_ordinary_versions(stamp: str) -> None:
    document = example()
    document["payload"]["update_ts"] = stamp
    assert str(parse_order(to_bytes(document)).payload.update_ts) == stamp


def test_dictionary_entries_follow_the_same_bounds() -> None:
    user = b'{"_id": "u1", "name": "%s", "login": "l", "update_ts_utc": "2022-05-01 00:00:00"}'
    with pytest.raises(InvalidMessage, match=r"^\$\.name: a NUL character"):
        parse_user(user % b"\\u0000")
    menu = (
        '{"_id": "r1", "name": "R", "update_ts_utc": "2022-05-01 00:00:00", "menu":'
        ' [{"_id": "m1", "name": "M", "price": 1, "category": "%s"}]}'
    )
    with pytest.raises(InvalidMessage, match=r"^\$\.menu\[0\]\.category: text of 10000"):
        parse_restaurant((menu % ("К" * 10_000)).encode())


def test_a_bad_dictionary_entry_makes_the_order_a_dead_letter_of_stg() -> None:
    pipeline, users, restaurants = sample_pipeline()
    broken = dict(restaurants[0], name="Кофейня\x00")
    pipeline.dictionaries.entries[broken["_id"]] = to_bytes(broken)
    pipeline.feed([to_bytes(order(7, users[0]["_id"], restaurants[0], [0], "CLOSED", 60))])
    pipeline.run()
    [letter] = pipeline.dead_letters.letters
    assert letter.stage == "stg"
    assert letter.reason.startswith(f"restaurant {broken['_id']}: unreadable dictionary entry")


# --- ties ------------------------------------------------------------------------------


def test_the_later_status_in_the_lifecycle_wins_a_tie_then_the_greater_content_hash() -> None:
    low, high = "00" * 16, "ff" * 16
    ranked = [tiebreak(status, low) for status in ("UNKNOWN", *oracle.LIFECYCLE)]
    assert ranked == sorted(ranked)
    assert tiebreak("CLOSED", high) > tiebreak("CLOSED", low)
    assert tiebreak("CANCELLED", low) > tiebreak("CLOSED", high)


def test_the_same_content_written_two_ways_is_decided_the_same_way_in_any_order() -> None:
    document = example()
    escaped, plain = to_bytes(document, ensure_ascii=True), to_bytes(document)
    assert content_hash(escaped) != content_hash(plain)
    assert warehouse([escaped, plain], 1) == warehouse([plain, escaped], 1)
    assert warehouse([escaped, plain], 2) == warehouse([plain, escaped], 1)


# Versions of one order at one update_ts: other statuses, and other items at one status.
TIED = [
    ("CLOSED", [0, 1]),
    ("CLOSED", [2]),
    ("CANCELLED", [0]),
    ("COOKING", [3]),
    ("DELIVERING", [1, 3]),
]


def warehouse(messages: list[bytes], batch_size: int) -> tuple[object, ...]:
    """The STG rows, the current satellite values and the marts after ``messages``."""
    pipeline, _, _ = sample_pipeline()
    pipeline.feed(messages)
    pipeline.run(itertools.repeat(batch_size))
    vault = pipeline.vault
    return (
        {key: event.message for key, event in pipeline.events.events.items()},
        {
            (name, key): vault.current(name, key).values  # type: ignore[union-attr]
            for name, by_key in vault.satellites.items()
            for key in by_key
        },
        pipeline.counters.product_counts(),
        pipeline.counters.category_counts(),
    )


@settings(max_examples=25, deadline=None)
@given(
    chosen=st.lists(st.sampled_from(range(len(TIED))), min_size=2, max_size=4, unique=True),
    user=st.integers(0, 2),
    batch_size=st.sampled_from([1, 2, 100]),
)
def test_every_arrival_order_of_tied_versions_gives_the_same_warehouse(
    chosen: list[int], user: int, batch_size: int
) -> None:
    _, users, restaurants = sample_pipeline()
    versions = [
        to_bytes(order(9, users[user]["_id"], restaurants[0], TIED[i][1], TIED[i][0], 60))
        for i in chosen
    ]
    first, *others = [
        warehouse(list(permutation), batch_size) for permutation in itertools.permutations(versions)
    ]
    assert all(other == first for other in others)
    # And the one result is the documented winner's.
    winner = max(versions, key=_rule)
    stored, _, products, categories = warehouse(versions, batch_size)
    assert json.loads(stored[9]) == json.loads(winner)  # type: ignore[index]
    assert (products, categories) == warehouse([winner], 1)[2:]


def _rule(raw: bytes) -> tuple[int, bytes]:
    """The rule as docs/CONTRACT.md §7 states it, written apart from dwh_core.versions."""
    return oracle.rank(json.loads(raw)["payload"]["final_status"]), hashlib.md5(raw).digest()


def test_a_tie_is_decided_the_same_way_in_every_layer() -> None:
    pipeline, users, restaurants = sample_pipeline()
    closed = to_bytes(order(9, users[0]["_id"], restaurants[0], [0], "CLOSED", 60))
    cancelled = to_bytes(order(9, users[0]["_id"], restaurants[0], [0], "CANCELLED", 60))
    pipeline.feed([cancelled, closed])
    pipeline.run(itertools.repeat(1))
    assert json.loads(pipeline.events.events[9].message)["payload"]["final_status"] == "CANCELLED"
    current = pipeline.vault.current("order_status", hash_key(9))
    assert current is not None and current.values == ("CANCELLED",)
    assert pipeline.counters.product_counts() == {}
