"""The mart semantics of docs/CONTRACT.md §4, case by case."""

from __future__ import annotations

from dwh_core.hashing import hash_key
from tests.support.builders import order, to_bytes
from tests.support.pipeline import sample_pipeline


def run_versions(
    *versions: tuple[int, str, int], items: list[int] | None = None
) -> tuple[dict, dict]:  # type: ignore[type-arg]
    pipeline, users, restaurants = sample_pipeline()
    pipeline.feed(
        to_bytes(
            order(object_id, users[0]["_id"], restaurants[0], items or [0, 1, 3], status, second)
        )
        for object_id, status, second in versions
    )
    pipeline.run(iter([1] * 100))
    return pipeline.counters.product_counts(), pipeline.counters.category_counts()


def test_a_closed_order_counts_once_per_product_and_category() -> None:
    products, categories = run_versions((1, "CLOSED", 10), items=[0, 0, 3])
    assert sorted(products.values()) == [1, 1]
    # two pizzas in one order: the Пицца category counts the order once
    assert list(categories.values()) == [1]
    assert {key for _, key in categories} == {hash_key("Пицца")}


def test_distinct_orders_add_up() -> None:
    products, _ = run_versions((1, "CLOSED", 10), (2, "CLOSED", 11), (3, "CANCELLED", 12))
    assert set(products.values()) == {2}


def test_a_closed_order_that_becomes_cancelled_stops_counting() -> None:
    products, categories = run_versions((1, "CLOSED", 10), (1, "CANCELLED", 20))
    assert products == {}
    assert categories == {}


def test_a_stale_version_arriving_late_changes_nothing() -> None:
    products, _ = run_versions((1, "CANCELLED", 20), (1, "CLOSED", 10))
    assert products == {}
    products, _ = run_versions((1, "CLOSED", 20), (1, "COOKING", 10))
    assert len(products) == 3


def test_an_order_cooking_then_closed_starts_counting() -> None:
    products, _ = run_versions((1, "COOKING", 10), (1, "CLOSED", 20))
    assert set(products.values()) == {1}


def test_counter_names_are_product_and_category_names() -> None:
    pipeline, users, restaurants = sample_pipeline()
    pipeline.feed([to_bytes(order(1, users[0]["_id"], restaurants[0], [1], "CLOSED", 1))])
    pipeline.run()
    names = pipeline.counters.names()
    assert names[hash_key(restaurants[0]["menu"][1]["_id"])] == "Салат «Цезарь»; с курицей"
    assert names[hash_key("Салаты")] == "Салаты"
