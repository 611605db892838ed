"""The mart counters (docs/CONTRACT.md §4) and how the CDM layer keeps them exact.

An order **counts** when its newest version (greatest ``update_ts``) is ``CLOSED``; a
user's counter for a product (or a category) is the number of distinct counted orders
that contain it.

How it stays exact and idempotent: **deltas guarded by a ledger.** For every order the
store keeps one ledger row, a :class:`Contribution`: the version
(:class:`~dwh_core.versions.Version`: ``update_ts`` and its tie-break) of the newest
version applied so far and the product and category keys that version counts under
(empty unless it is ``CLOSED``). A batch of order versions is reduced to the newest
version per order; a version no newer than the ledger's is stale or a replay and changes
nothing; otherwise the counters move by the difference between the new contribution
and the old one, and the ledger row is replaced, **in the same transaction** as the
counters. So any replay, duplicate, crash or restart leaves the same numbers: a batch
either committed with its ledger rows (and is then a no-op when replayed) or did not
commit at all.

Why not recompute the affected keys from the vault instead? Recomputing a user's
counters means reading every order of that user from the vault on every change, a cost
that grows with history; the ledger costs one indexed read and one write per order,
whatever the history, and keeps the CDM layer independent of the DDS tables, so the two
can live in different databases.

At equal ``update_ts`` the tie-break of :mod:`dwh_core.versions` decides, as in every
other layer, so the result does not depend on the order of arrival.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from attrs import frozen

from dwh_core.hashing import hash_key
from dwh_core.orders import OrderFacts
from dwh_core.versions import Version


@frozen
class Contribution:
    """What one order currently adds to the marts: a ledger row."""

    order_key: uuid.UUID
    user_key: uuid.UUID
    version: Version
    products: frozenset[uuid.UUID]
    categories: frozenset[uuid.UUID]
    # What the tag rules need (dwh_core.tags): the order's date (None when the facts did
    # not carry it) and the hash keys of its products' names.
    order_date: datetime | None = None
    product_names: frozenset[uuid.UUID] = frozenset()


@frozen
class CounterDelta:
    """Add ``delta`` to the counter of (``user_key``, ``key``); ``name`` is the newest
    known name of the product or category, or None when this batch did not see it."""

    user_key: uuid.UUID
    key: uuid.UUID
    name: str | None
    delta: int


@frozen
class CounterUpdate:
    """What one batch changes: counter deltas (sorted by key, no zeros) and ledger rows."""

    products: list[CounterDelta]
    categories: list[CounterDelta]
    contributions: list[Contribution]


def newest_versions(versions: Iterable[OrderFacts]) -> dict[uuid.UUID, OrderFacts]:
    """The newest version of each order (:mod:`dwh_core.versions`)."""
    newest: dict[uuid.UUID, OrderFacts] = {}
    for facts in versions:
        seen = newest.get(facts.order_key)
        if seen is None or facts.version > seen.version:
            newest[facts.order_key] = facts
    return newest


@functools.lru_cache(maxsize=65536)
def name_key(name: str) -> uuid.UUID:
    """The hash key of a product's name (names recur in almost every batch)."""
    return hash_key(name)


def contribution_of(facts: OrderFacts) -> Contribution:
    """The ledger row of an order version: empty keys unless it is counted."""
    if not facts.is_counted:
        return Contribution(
            facts.order_key, facts.user_key, facts.version, frozenset(), frozenset(), facts.date
        )
    return Contribution(
        order_key=facts.order_key,
        user_key=facts.user_key,
        version=facts.version,
        products=frozenset(p.key for p in facts.products),
        categories=frozenset(c.key for c in facts.categories),
        order_date=facts.date,
        product_names=frozenset(name_key(p.name) for p in facts.products),
    )


def plan_update(
    ledger: Mapping[uuid.UUID, Contribution], versions: Iterable[OrderFacts]
) -> CounterUpdate:
    """The counter deltas and new ledger rows for a batch of order versions, given the
    ledger rows of the orders in the batch (orders absent from ``ledger`` are new)."""
    product_deltas: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    category_deltas: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    names: dict[uuid.UUID, str] = {}
    contributions: list[Contribution] = []
    for order_key, facts in newest_versions(versions).items():
        old = ledger.get(order_key)
        new = contribution_of(facts)
        if old is not None and old.version >= new.version:
            continue
        names.update((p.key, p.name) for p in facts.products)
        names.update((c.key, c.name) for c in facts.categories)
        product_deltas.update((new.user_key, key) for key in new.products)
        category_deltas.update((new.user_key, key) for key in new.categories)
        if old is not None:
            product_deltas.subtract((old.user_key, key) for key in old.products)
            category_deltas.subtract((old.user_key, key) for key in old.categories)
        contributions.append(new)

    def deltas(counter: Counter[tuple[uuid.UUID, uuid.UUID]]) -> list[CounterDelta]:
        return [
            CounterDelta(user_key, key, names.get(key), delta)
            for (user_key, key), delta in sorted(
                counter.items(), key=lambda item: (item[0][0].int, item[0][1].int)
            )
            if delta
        ]

    contributions.sort(key=lambda c: c.order_key.int)
    return CounterUpdate(deltas(product_deltas), deltas(category_deltas), contributions)
