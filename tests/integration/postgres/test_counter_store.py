"""The CounterStore contract, run against the in-memory store and the PostgreSQL one (so
the fake cannot drift)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest
from attrs import frozen

from dwh_adapters.memory import InMemoryCounterStore
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_core.counters import Contribution, CounterDelta, CounterUpdate
from dwh_core.hashing import hash_key
from dwh_core.ports import CounterStore
from dwh_core.versions import Version
from tests.support.stores import T0, Connection, select

pytestmark = pytest.mark.integration


@frozen
class CounterHarness:
    store: CounterStore
    counts: Callable[[], tuple[dict[tuple[uuid.UUID, uuid.UUID], int], ...]]
    """(product counts, category counts), rows with 0 left out"""
    names: Callable[[], dict[uuid.UUID, str]]
    """product or category key -> the name stored with its counters"""


@pytest.fixture(params=["memory", "postgres"])
def counters(request: pytest.FixtureRequest) -> Iterator[CounterHarness]:
    if request.param == "memory":
        memory = InMemoryCounterStore()
        yield CounterHarness(
            memory, lambda: (memory.product_counts(), memory.category_counts()), memory.names
        )
        return
    db: Connection = request.getfixturevalue("db")
    settings = request.getfixturevalue("settings")
    with PostgresCounterStore(settings) as store, PostgresMarts(settings) as marts:
        yield CounterHarness(
            store,
            lambda: (marts.product_counts(), marts.category_counts()),
            lambda: dict(
                select(
                    db,
                    "SELECT product_id, product_name FROM cdm.user_product_counters UNION"
                    " SELECT category_id, category_name FROM cdm.user_category_counters",
                )
            ),
        )


ALICE, BOB = hash_key("alice"), hash_key("bob")
SOUP, PIZZA = hash_key("soup"), hash_key("pizza")
DISHES = hash_key("Dishes")


def contribution(
    order_id: int, user_key: uuid.UUID, minute: int, *products: uuid.UUID
) -> Contribution:
    return Contribution(
        hash_key(order_id),
        user_key,
        Version(T0 + timedelta(minutes=minute), b""),
        frozenset(products),
        frozenset({DISHES}) if products else frozenset(),
    )


def apply(store: CounterStore, update: CounterUpdate) -> None:
    with store.transaction() as transaction:
        transaction.apply(update)


def test_the_ledger_returns_the_contributions_applied(counters: CounterHarness) -> None:
    rows = [
        contribution(1, ALICE, 1, SOUP, PIZZA),
        contribution(2, BOB, 2),
        contribution(3, BOB, 3, SOUP),
    ]
    apply(counters.store, CounterUpdate([], [], sorted(rows, key=lambda c: c.order_key)))

    with counters.store.transaction() as transaction:
        ledger = transaction.ledger({hash_key(1), hash_key(2), hash_key(3), hash_key(4)})
    assert ledger == {row.order_key: row for row in rows}

    replaced = contribution(1, ALICE, 9)
    apply(counters.store, CounterUpdate([], [], [replaced]))
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {hash_key(1): replaced}


def test_counter_deltas_add_up_and_the_newest_name_is_kept(counters: CounterHarness) -> None:
    def update(delta: int, name: str | None) -> CounterUpdate:
        return CounterUpdate(
            sorted(
                [CounterDelta(ALICE, SOUP, name, delta), CounterDelta(BOB, SOUP, name, 1)],
                key=lambda d: (d.user_key, d.key),
            ),
            [CounterDelta(ALICE, DISHES, "Dishes", delta)],
            [],
        )

    apply(counters.store, update(2, "Soup"))
    apply(counters.store, update(1, None))
    apply(counters.store, update(-1, "Borscht"))

    products, categories = counters.counts()
    assert products == {(ALICE, SOUP): 2, (BOB, SOUP): 3}
    assert categories == {(ALICE, DISHES): 2}
    assert counters.names() == {SOUP: "Borscht", DISHES: "Dishes"}


def test_a_counter_that_falls_to_zero_is_left_out_of_the_counts(counters: CounterHarness) -> None:
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, "Soup", 1)], [], []))
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, None, -1)], [], []))

    assert counters.counts() == ({}, {})


def test_a_counter_never_falls_below_zero(counters: CounterHarness) -> None:
    apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, "Soup", 1)], [], []))
    with pytest.raises((ValueError, psycopg.errors.CheckViolation)):
        apply(
            counters.store,
            CounterUpdate(
                [CounterDelta(ALICE, PIZZA, "Pizza", 1), CounterDelta(ALICE, SOUP, None, -2)],
                [],
                [contribution(1, ALICE, 1)],
            ),
        )

    assert counters.counts() == ({(ALICE, SOUP): 1}, {})
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {}


def test_a_decrement_of_a_counter_that_does_not_exist_is_refused(
    counters: CounterHarness,
) -> None:
    with pytest.raises(ValueError, match="counter below zero"):
        apply(counters.store, CounterUpdate([CounterDelta(ALICE, SOUP, None, -1)], [], []))

    assert counters.counts() == ({}, {})


def test_a_counter_transaction_that_raises_changes_nothing(counters: CounterHarness) -> None:
    with pytest.raises(RuntimeError, match="boom"), counters.store.transaction() as transaction:
        transaction.apply(
            CounterUpdate(
                [CounterDelta(ALICE, SOUP, "Soup", 1)],
                [CounterDelta(ALICE, DISHES, "Dishes", 1)],
                [contribution(1, ALICE, 1, SOUP)],
            )
        )
        raise RuntimeError("boom")

    assert counters.counts() == ({}, {})
    with counters.store.transaction() as transaction:
        assert transaction.ledger([hash_key(1)]) == {}
