"""What the layers need from the outside world. Adapters implement these structurally
(``typing.Protocol``, checked by mypy): real ones in ``dwh_adapters.kafka``,
``.redis``, ``.postgres``, in-memory ones in ``dwh_adapters.memory``.

Every method takes or returns a whole batch, so that an adapter can do one round trip
per table (or per key space) per batch. A method that fails for a transient reason
(a dependency is down) raises; the worker retries the whole batch, and every write here
is idempotent, so a retry or a replay changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from attrs import frozen

from dwh_core.counters import Contribution, CounterUpdate
from dwh_core.messages import DeadLetter, OutMessage
from dwh_core.tags import RuleIndex, TagEvent, TagState, TagUpdate
from dwh_core.vault import SatelliteState, VaultRows
from dwh_core.versions import Version


class DictionaryReader(Protocol):
    """Users and restaurants (docs/CONTRACT.md §1.2), one key space, values as stored."""

    def fetch(self, ids: Collection[str]) -> Mapping[str, bytes]:
        """The raw JSON value of each id that exists; absent ids are left out."""
        ...


@frozen
class RawEvent:
    """An input order message as it came, for ``stg.order_events``: ``message`` is its
    JSON text, unchanged, so the store keeps every value of its payload exactly (even
    fields the parser does not know, and numbers no Python float holds)."""

    object_id: int
    object_type: str
    sent_dttm: datetime
    version: Version
    message: str


class RawEventStore(Protocol):
    def save(self, events: Sequence[RawEvent]) -> None:
        """Keep one row per ``object_id``: its newest version
        (:class:`~dwh_core.versions.Version`, ties included)."""
        ...


class VaultTransaction(Protocol):
    def satellite_states(
        self, keys: Collection[tuple[str, uuid.UUID]]
    ) -> Mapping[tuple[str, uuid.UUID], SatelliteState]:
        """The stored states of these (satellite, hub key) pairs, locked until the
        transaction ends; pairs with no state yet are left out."""
        ...

    def save(self, rows: VaultRows, states: Sequence[SatelliteState]) -> None:
        """Hubs and links once per key (the first load wins); the satellite rows as
        given (already decided by :func:`~dwh_core.vault.satellite_changes`); the states
        replaced. Called once per transaction."""
        ...


class VaultStore(Protocol):
    def transaction(self) -> AbstractContextManager[VaultTransaction]:
        """A unit of work: committed when the block ends normally, else rolled back."""
        ...


class CounterTransaction(Protocol):
    def tag_rules(self) -> RuleIndex:
        """The tag rules in force; a rule change waits until this transaction ends (and
        this one waits for a rule change in flight). Read before the ledger."""
        ...

    def ledger(self, order_keys: Collection[uuid.UUID]) -> Mapping[uuid.UUID, Contribution]:
        """The ledger rows of these orders, locked until the transaction ends."""
        ...

    def apply(self, update: CounterUpdate) -> None:
        """Add the deltas to the counters and replace the ledger rows."""
        ...

    def tag_states(
        self, keys: Collection[tuple[uuid.UUID, str]]
    ) -> Mapping[tuple[uuid.UUID, str], TagState]:
        """The stored states of these (user, tag) pairs, locked until the transaction
        ends; pairs with no state yet are left out."""
        ...

    def save_tags(self, update: TagUpdate, ruleset_version: int) -> None:
        """Replace the states, the members they make, and record the transitions, in
        order, for delivery after the commit."""
        ...


class CounterStore(Protocol):
    def transaction(self) -> AbstractContextManager[CounterTransaction]:
        """A unit of work: committed when the block ends normally, else rolled back."""
        ...

    def deliver(self, send: Callable[[Sequence[TagEvent]], None]) -> int:
        """Send the recorded transitions not yet delivered, oldest first, with ``send``
        (which returns once they are delivered), and mark them; how many were sent."""
        ...


class Publisher(Protocol):
    def publish(self, messages: Sequence[OutMessage]) -> None:
        """Send to the next layer's topic and return once every message is delivered."""
        ...


class DeadLetterSink(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send to ``<source topic>-dlq`` and return once every letter is delivered."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, naive UTC."""
        ...
