"""``plan_update``, the mart rule of docs/CONTRACT.md §4, on its own: the deltas and the
ledger rows a batch of order versions gives, against a given ledger."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from dwh_core import Contribution, CounterDelta, KeyName, OrderFacts, hash_key, plan_update
from dwh_core.orders import OrderId

T0 = datetime(2023, 4, 1, 12, 0)
USER = hash_key("user-1")
PIZZA, SOUP = KeyName(hash_key("pizza"), "Пицца Маргарита"), KeyName(hash_key("soup"), "Борщ")
PIZZAS = KeyName(hash_key("Пицца"), "Пицца")


def facts(
    order_id: int, status: str, minute: int, products: list[KeyName] | None = None
) -> OrderFacts:
    return OrderFacts(
        order_key=hash_key(str(order_id)),
        order_id=OrderId(order_id),
        user_key=USER,
        user_id="user-1",
        update_ts=T0 + timedelta(minutes=minute),
        status=status,
        products=[PIZZA] if products is None else products,
        categories=[PIZZAS],
        content_hash=f"{order_id}-{status}-{minute}",
    )


def ledger_of(*versions: OrderFacts) -> dict[uuid.UUID, Contribution]:
    update = plan_update({}, versions)
    return {row.order_key: row for row in update.contributions}


def test_a_new_closed_order_adds_one_per_product_and_category() -> None:
    update = plan_update({}, [facts(1, "CLOSED", 0, [PIZZA, SOUP])])
    assert [(d.key, d.name, d.delta) for d in update.products] == sorted(
        [(PIZZA.key, PIZZA.name, 1), (SOUP.key, SOUP.name, 1)], key=lambda d: d[0].int
    )
    assert update.categories == [CounterDelta(USER, PIZZAS.key, "Пицца", 1)]
    [row] = update.contributions
    assert (row.products, row.categories) == (
        frozenset({PIZZA.key, SOUP.key}),
        frozenset({PIZZAS.key}),
    )


def test_an_order_that_is_not_closed_moves_nothing_but_is_recorded() -> None:
    update = plan_update({}, [facts(1, "DELIVERING", 0)])
    assert (update.products, update.categories) == ([], [])
    [row] = update.contributions
    assert row.products == row.categories == frozenset()


def test_a_refund_takes_back_what_the_closed_version_added() -> None:
    update = plan_update(ledger_of(facts(1, "CLOSED", 0)), [facts(1, "CANCELLED", 5)])
    assert [(d.key, d.delta) for d in update.products] == [(PIZZA.key, -1)]
    assert [(d.key, d.delta) for d in update.categories] == [(PIZZAS.key, -1)]
    assert update.contributions[0].products == frozenset()


def test_a_stale_or_replayed_version_changes_nothing() -> None:
    ledger = ledger_of(facts(1, "CLOSED", 5))
    for version in (facts(1, "CLOSED", 5), facts(1, "CANCELLED", 0)):
        update = plan_update(ledger, [version])
        assert (update.products, update.categories, update.contributions) == ([], [], [])


def test_within_a_batch_only_the_newest_version_of_an_order_counts() -> None:
    update = plan_update({}, [facts(1, "CLOSED", 9), facts(1, "OPEN", 1), facts(1, "COOKING", 3)])
    assert [(d.key, d.delta) for d in update.products] == [(PIZZA.key, 1)]
    assert [row.version.update_ts for row in update.contributions] == [T0 + timedelta(minutes=9)]


def test_a_closed_order_whose_items_change_moves_only_the_difference() -> None:
    ledger = ledger_of(facts(1, "CLOSED", 0, [PIZZA, SOUP]))
    update = plan_update(ledger, [facts(1, "CLOSED", 1, [PIZZA])])
    assert [(d.key, d.delta) for d in update.products] == [(SOUP.key, -1)]
    assert update.categories == []  # the category is still there: no zero deltas


def test_deltas_and_ledger_rows_come_sorted_by_key() -> None:
    update = plan_update({}, [facts(n, "CLOSED", n, [PIZZA, SOUP]) for n in range(5)])
    assert [d.key.int for d in update.products] == sorted(d.key.int for d in update.products)
    keys = [row.order_key.int for row in update.contributions]
    assert keys == sorted(keys)
    assert [d.delta for d in update.products] == [5, 5]
