"""The three layer services. Each takes a batch of incoming messages and does all of its
work per batch, through the ports; the worker commits the batch's offsets only after
``handle`` returns, so everything written here must be (and is) idempotent.

Every layer passes on *every* valid version it reads, even one it already has: if a
worker crashed after its database commit but before publishing, the replay must still
publish. The next layer's writes are idempotent and version-aware, so this is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from attrs import frozen

from dwh_core.counters import plan_update
from dwh_core.enrichment import Catalog, UnknownReference, enrich
from dwh_core.messages import DeadLetter, InMessage, OutMessage
from dwh_core.orders import EnrichedOrder, Order
from dwh_core.parsing import (
    InvalidMessage,
    encode,
    encode_json,
    parse_enriched_order,
    parse_order,
    parse_order_facts,
)
from dwh_core.ports import (
    Clock,
    CounterStore,
    DeadLetterSink,
    DictionaryReader,
    Publisher,
    RawEvent,
    RawEventStore,
    VaultStore,
)
from dwh_core.tags import TagEvent, fold_steps, tag_steps
from dwh_core.vault import VaultRows, order_facts, satellite_changes, vault_rows
from dwh_core.versions import content_hash

T = TypeVar("T")


@frozen
class BatchResult:
    """What a batch did: messages read, passed on (or applied), and dead-lettered."""

    received: int
    processed: int
    dead_lettered: int


def _parse_all(
    batch: Sequence[InMessage], parse: Callable[[bytes], T], stage: str
) -> tuple[list[tuple[InMessage, T]], list[DeadLetter]]:
    parsed: list[tuple[InMessage, T]] = []
    letters: list[DeadLetter] = []
    for message in batch:
        if message.value is None:
            letters.append(DeadLetter(message, stage, "empty message (no value)"))
            continue
        try:
            parsed.append((message, parse(message.value)))
        except InvalidMessage as exc:
            letters.append(DeadLetter(message, stage, str(exc)))
    return parsed, letters


def _raw_event(order: Order, enriched: EnrichedOrder, raw: bytes) -> RawEvent:
    return RawEvent(
        object_id=order.object_id,
        object_type=order.object_type,
        sent_dttm=order.sent_dttm,
        version=enriched.version,
        message=raw.decode("utf-8"),
    )


class StgService:
    """Orders from the feed: parse strictly, enrich from the dictionaries, keep the
    newest version of each as it came, pass the enriched order on to DDS."""

    stage = "stg"

    def __init__(
        self,
        dictionaries: DictionaryReader,
        events: RawEventStore,
        publisher: Publisher,
        dead_letters: DeadLetterSink,
    ) -> None:
        self._dictionaries = dictionaries
        self._events = events
        self._publisher = publisher
        self._dead_letters = dead_letters

    def handle(self, batch: Sequence[InMessage]) -> BatchResult:
        parsed, letters = _parse_all(batch, parse_order, self.stage)
        wanted = {ref for _, order in parsed for ref in _references(order)}
        catalog = Catalog(self._dictionaries.fetch(wanted))
        events: list[RawEvent] = []
        out: list[OutMessage] = []
        for message, order in parsed:
            raw = message.value or b""  # never empty: _parse_all dead-letters those
            try:
                enriched = enrich(order, catalog, content_hash(raw))
            except UnknownReference as exc:
                letters.append(DeadLetter(message, self.stage, str(exc)))
                continue
            events.append(_raw_event(order, enriched, raw))
            out.append(OutMessage(order.payload.user.id.encode(), encode(enriched)))
        if events:
            self._events.save(events)
            self._publisher.publish(out)
        if letters:
            self._dead_letters.send(letters)
        return BatchResult(len(batch), len(out), len(letters))


def _references(order: Order) -> tuple[str, str]:
    return order.payload.user.id, order.payload.restaurant.id


class DdsService:
    """Enriched orders into the Data Vault; what the marts need on to CDM."""

    stage = "dds"

    def __init__(
        self,
        vault: VaultStore,
        publisher: Publisher,
        dead_letters: DeadLetterSink,
        clock: Clock,
        record_source: str,
    ) -> None:
        self._vault = vault
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._clock = clock
        self._record_source = record_source

    def handle(self, batch: Sequence[InMessage]) -> BatchResult:
        parsed, letters = _parse_all(batch, parse_enriched_order, self.stage)
        if parsed:
            load_dt = self._clock.now()
            orders = [order for _, order in parsed]
            rows = vault_rows(orders, load_dt, self._record_source)
            with self._vault.transaction() as transaction:
                states = transaction.satellite_states(
                    {(row.name, row.hub_pk) for row in rows.satellites}
                )
                changes = satellite_changes(rows.satellites, states)
                transaction.save(VaultRows(rows.hubs, rows.links, changes.rows), changes.states)
            self._publisher.publish(
                [
                    OutMessage(order.payload.user.id.encode(), encode(order_facts(order)))
                    for order in orders
                ]
            )
        if letters:
            self._dead_letters.send(letters)
        return BatchResult(len(batch), len(parsed), len(letters))


class CdmService:
    """Order facts into the two marts, exactly (see :mod:`dwh_core.counters`), and the
    user tags with them, in the same transaction (:mod:`dwh_core.tags`). The transitions
    wait in the store until :meth:`deliver_tag_events` sends them to the tags topic
    (``tag_events``): the worker calls it after every batch, so a tags topic that cannot
    take them delays the app's events, never the marts."""

    stage = "cdm"

    def __init__(
        self,
        counters: CounterStore,
        dead_letters: DeadLetterSink,
        tag_events: Publisher,
        published: Callable[[Sequence[TagEvent]], object] | None = None,
    ) -> None:
        """``published`` is told of every transition once it is delivered (metrics)."""
        self._counters = counters
        self._dead_letters = dead_letters
        self._tag_events = tag_events
        self._published = published
        # Transitions may wait from before a crash, so the first batch delivers.
        self._undelivered = True

    def handle(self, batch: Sequence[InMessage]) -> BatchResult:
        parsed, letters = _parse_all(batch, parse_order_facts, self.stage)
        if parsed:
            versions = [facts for _, facts in parsed]
            with self._counters.transaction() as transaction:
                rules = transaction.tag_rules()
                ledger = transaction.ledger({facts.order_key for facts in versions})
                update = plan_update(ledger, versions)
                transaction.apply(update)
                steps = tag_steps(rules, ledger, versions, update.contributions)
                if steps:
                    states = transaction.tag_states({(s.user_key, s.tag_id) for s in steps})
                    tags = fold_steps(steps, states, rules)
                    transaction.save_tags(tags, rules.version)
                    self._undelivered |= bool(tags.events)
        if letters:
            self._dead_letters.send(letters)
        return BatchResult(len(batch), len(parsed), len(letters))

    def deliver_tag_events(self, force: bool = False) -> int:
        """Publish the recorded transitions not yet delivered, keyed by user, in the
        order they were recorded (so each user's transitions in a tag stay in order);
        the number published. Without ``force`` it asks the store only when this
        service recorded some, or has not asked since it started."""
        if not (self._undelivered or force):
            return 0
        sent = self._counters.deliver(self._publish_tag_events)
        self._undelivered = False
        return sent

    def _publish_tag_events(self, events: Sequence[TagEvent]) -> None:
        self._tag_events.publish(
            [OutMessage(event.user_id.encode(), encode_json(event.message())) for event in events]
        )
        if self._published is not None:
            self._published(events)
