"""Working in-memory implementations of every port, backed by dicts and lists.

They follow the same contracts as the real adapters (the contract tests in
``tests/integration`` run against both), so other services can use them in their
tests, and :mod:`dwh_workers.in_process` runs the whole STG -> DDS -> CDM pipeline on
them in one process, with no services at all.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime

from attrs import define, field

from dwh_core.counters import Contribution, CounterUpdate
from dwh_core.messages import DeadLetter, InMessage, OutMessage
from dwh_core.ports import RawEvent
from dwh_core.tags import RuleIndex, TagEvent, TagState, TagUpdate
from dwh_core.vault import Hub, Link, Satellite, SatelliteState, VaultRows


class InMemoryDictionaries:
    def __init__(self, entries: Mapping[str, bytes] | None = None) -> None:
        self.entries: dict[str, bytes] = dict(entries or {})

    def fetch(self, ids: Collection[str]) -> Mapping[str, bytes]:
        return {key: self.entries[key] for key in ids if key in self.entries}


class InMemoryRawEventStore:
    def __init__(self) -> None:
        self.events: dict[int, RawEvent] = {}

    def save(self, events: Sequence[RawEvent]) -> None:
        for event in events:
            current = self.events.get(event.object_id)
            if current is None or event.version > current.version:
                self.events[event.object_id] = event


class _InMemoryVaultTransaction:
    def __init__(self, store: InMemoryVaultStore) -> None:
        self._store = store
        self._pending: list[tuple[VaultRows, Sequence[SatelliteState]]] = []

    def satellite_states(
        self, keys: Collection[tuple[str, uuid.UUID]]
    ) -> Mapping[tuple[str, uuid.UUID], SatelliteState]:
        states = self._store.states
        return {key: states[key] for key in keys if key in states}

    def save(self, rows: VaultRows, states: Sequence[SatelliteState]) -> None:
        self._pending.append((rows, states))

    def commit(self) -> None:
        store = self._store
        for rows, states in self._pending:
            for hub in rows.hubs:
                store.hubs[hub.name].setdefault(hub.pk, hub)
            for link in rows.links:
                store.links[link.name].setdefault(link.pk, link)
            for sat in rows.satellites:
                store.add_satellite(sat)
            store.states.update(((state.name, state.hub_pk), state) for state in states)


class InMemoryVaultStore:
    """Hubs, links, insert-only satellites and their states; a transaction that raises
    leaves them untouched."""

    def __init__(self) -> None:
        self.hubs: dict[str, dict[uuid.UUID, Hub]] = defaultdict(dict)
        self.links: dict[str, dict[uuid.UUID, Link]] = defaultdict(dict)
        self.satellites: dict[str, dict[uuid.UUID, list[Satellite]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.states: dict[tuple[str, uuid.UUID], SatelliteState] = {}

    @contextmanager
    def transaction(self) -> Iterator[_InMemoryVaultTransaction]:
        transaction = _InMemoryVaultTransaction(self)
        yield transaction
        transaction.commit()

    def add_satellite(self, row: Satellite) -> None:
        """One row per key and ``source_ts``, as the table's primary key: a row at the
        same ``source_ts`` (a version that won the tie-break) replaces the one there."""
        history = self.satellites[row.name][row.hub_pk]
        history[:] = [kept for kept in history if kept.source_ts != row.source_ts]
        history.append(row)

    def current(self, name: str, hub_pk: uuid.UUID) -> Satellite | None:
        """The satellite row with the greatest ``source_ts`` of a key."""
        history = self.satellites[name].get(hub_pk)
        return max(history, key=lambda row: row.source_ts) if history else None


@define
class _Marts:
    ledger: dict[uuid.UUID, Contribution] = field(factory=dict)
    products: dict[tuple[uuid.UUID, uuid.UUID], tuple[str, int]] = field(factory=dict)
    categories: dict[tuple[uuid.UUID, uuid.UUID], tuple[str, int]] = field(factory=dict)
    tag_states: dict[tuple[uuid.UUID, str], TagState] = field(factory=dict)
    tag_events: list[tuple[TagEvent, int]] = field(factory=list)  # with the ruleset version


class _InMemoryCounterTransaction:
    """Reads the committed marts; ``apply`` stages its changes until the commit."""

    def __init__(self, marts: _Marts, rules: RuleIndex) -> None:
        self._marts = marts
        self._staged = _Marts()
        self._rules = rules

    def tag_rules(self) -> RuleIndex:
        return self._rules

    def tag_states(
        self, keys: Collection[tuple[uuid.UUID, str]]
    ) -> Mapping[tuple[uuid.UUID, str], TagState]:
        return {key: self._marts.tag_states[key] for key in keys if key in self._marts.tag_states}

    def save_tags(self, update: TagUpdate, ruleset_version: int) -> None:
        self._staged.tag_states.update(((s.user_key, s.tag_id), s) for s in update.states)
        self._staged.tag_events.extend((event, ruleset_version) for event in update.events)

    def ledger(self, order_keys: Collection[uuid.UUID]) -> Mapping[uuid.UUID, Contribution]:
        return {key: self._marts.ledger[key] for key in order_keys if key in self._marts.ledger}

    def apply(self, update: CounterUpdate) -> None:
        for deltas, table, staged in (
            (update.products, self._marts.products, self._staged.products),
            (update.categories, self._marts.categories, self._staged.categories),
        ):
            for delta in deltas:
                key = (delta.user_key, delta.key)
                name, count = staged.get(key) or table.get(key, ("", 0))
                if count + delta.delta < 0:
                    raise ValueError(f"counter below zero for {delta}")
                staged[key] = (delta.name or name, count + delta.delta)
        self._staged.ledger.update((c.order_key, c) for c in update.contributions)

    def commit(self) -> None:
        self._marts.ledger.update(self._staged.ledger)
        self._marts.products.update(self._staged.products)
        self._marts.categories.update(self._staged.categories)
        self._marts.tag_states.update(self._staged.tag_states)
        self._marts.tag_events.extend(self._staged.tag_events)


class InMemoryCounterStore:
    """The marts, the ledger and the tags of ``rules``; a transaction that raises
    leaves them untouched."""

    def __init__(self, rules: RuleIndex | None = None) -> None:
        self._marts = _Marts()
        self.rules = rules or RuleIndex(())
        self._delivered = 0

    @contextmanager
    def transaction(self) -> Iterator[_InMemoryCounterTransaction]:
        transaction = _InMemoryCounterTransaction(self._marts, self.rules)
        yield transaction
        transaction.commit()

    def deliver(self, send: Callable[[Sequence[TagEvent]], None]) -> int:
        pending = [event for event, _ in self._marts.tag_events[self._delivered :]]
        if pending:
            send(pending)
            self._delivered += len(pending)
        return len(pending)

    def tag_members(self) -> dict[tuple[uuid.UUID, str], TagState]:
        """(user key, tag id) -> state, members only."""
        return {key: s for key, s in self._marts.tag_states.items() if s.is_member}

    def tag_events(self) -> list[TagEvent]:
        return [event for event, _ in self._marts.tag_events]

    def product_counts(self) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        """(user key, product key) -> order count, rows with 0 left out."""
        return {key: count for key, (_, count) in self._marts.products.items() if count}

    def category_counts(self) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        return {key: count for key, (_, count) in self._marts.categories.items() if count}

    def names(self) -> dict[uuid.UUID, str]:
        tables = (self._marts.products, self._marts.categories)
        return {key: name for table in tables for (_, key), (name, _) in table.items()}


class InMemoryTopics:
    """Topics as lists of messages (one partition each)."""

    def __init__(self) -> None:
        self.messages: dict[str, list[InMessage]] = defaultdict(list)

    def append(self, topic: str, value: bytes | None, key: bytes | None = None) -> InMessage:
        log = self.messages[topic]
        message = InMessage(value=value, topic=topic, partition=0, offset=len(log), key=key)
        log.append(message)
        return message


class InMemoryPublisher:
    def __init__(self, topics: InMemoryTopics, topic: str) -> None:
        self._topics = topics
        self._topic = topic

    def publish(self, messages: Sequence[OutMessage]) -> None:
        for message in messages:
            self._topics.append(self._topic, message.value, message.key)


class InMemoryDeadLetters:
    def __init__(self, topics: InMemoryTopics) -> None:
        self._topics = topics
        self.letters: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            self._topics.append(letter.topic, letter.message.value, letter.message.key)
            self.letters.append(letter)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.time = now

    def now(self) -> datetime:
        return self.time
