"""For any orders, duplicates, replays, status changes, stale versions and batch
boundaries, the marts of the in-memory pipeline equal the independent oracle."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dwh_core.hashing import hash_key
from dwh_workers.oracle import expected_marts
from tests.support.builders import order, to_bytes, ts
from tests.support.pipeline import sample_pipeline

STATUSES = ["OPEN", "COOKING", "DELIVERING", "CLOSED", "CANCELLED"]


@st.composite
def order_histories(
    draw: st.DrawFn,
) -> list[tuple[int, int, int, list[int], list[tuple[str, int]]]]:
    """Orders as (id, user, restaurant, menu indexes, versions of (status, update second))."""
    histories = []
    for object_id in draw(st.sets(st.integers(1, 40), min_size=1, max_size=12)):
        restaurant = draw(st.integers(0, 1))
        menu_size = 4 if restaurant == 0 else 3
        items = draw(st.lists(st.integers(0, menu_size - 1), min_size=1, max_size=4))
        seconds = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True))
        versions = [(draw(st.sampled_from(STATUSES)), second) for second in seconds]
        histories.append((object_id, draw(st.integers(0, 2)), restaurant, items, versions))
    return histories


def messages_of(histories: list[Any], users: list[Any], restaurants: list[Any]) -> list[bytes]:
    return [
        to_bytes(
            order(object_id, users[u]["_id"], restaurants[r], items, status, second),
            ensure_ascii=second % 2 == 0,
        )
        for object_id, u, r, items, versions in histories
        for status, second in versions
    ]


@settings(max_examples=300, deadline=None)
@given(
    histories=order_histories(),
    data=st.data(),
)
def test_marts_equal_the_oracle_under_duplicates_replays_and_any_batching(
    histories: list[Any], data: st.DataObject
) -> None:
    pipeline, users, restaurants = sample_pipeline()
    messages = messages_of(histories, users, restaurants)
    shuffled = data.draw(st.permutations(messages), label="arrival order")
    duplicates = data.draw(st.lists(st.sampled_from(messages), max_size=10), label="duplicates")
    feed = shuffled + duplicates
    split = data.draw(st.integers(0, len(feed)), label="first delivery")
    batch_sizes = iter(data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=50)) * 1000)

    pipeline.feed(feed[:split])
    pipeline.run(batch_sizes)
    pipeline.feed(feed[split:])
    pipeline.run(batch_sizes)
    products, categories = expected_marts(messages, restaurants)
    assert pipeline.counters.product_counts() == products
    assert pipeline.counters.category_counts() == categories
    assert not pipeline.dead_letters.letters

    satellites_before = {
        name: sum(len(rows) for rows in by_key.values())
        for name, by_key in pipeline.vault.satellites.items()
    }
    pipeline.replay()
    pipeline.run(batch_sizes)
    assert pipeline.counters.product_counts() == products
    assert pipeline.counters.category_counts() == categories
    assert {
        name: sum(len(rows) for rows in by_key.values())
        for name, by_key in pipeline.vault.satellites.items()
    } == satellites_before


@settings(max_examples=100, deadline=None)
@given(histories=order_histories())
def test_the_current_status_is_the_newest_whatever_the_arrival_order(histories: list[Any]) -> None:
    pipeline, users, restaurants = sample_pipeline()
    messages = messages_of(histories, users, restaurants)
    pipeline.feed(reversed(messages))
    pipeline.run()
    for object_id, _, _, _, versions in histories:
        newest_status = max(versions, key=lambda version: version[1])[0]
        current = pipeline.vault.current("order_status", hash_key(object_id))
        assert current is not None
        assert current.values == (newest_status,)
        newest_second = max(second for _, second in versions)
        stored = json.loads(pipeline.events.events[object_id].message)
        assert stored["payload"]["update_ts"] == ts(newest_second)
