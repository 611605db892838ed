"""The worker's side of a topic: batches in, offsets committed once a batch is durable."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dwh_adapters.kafka import trouble
from dwh_adapters.kafka._clients import (
    NO_OFFSET,
    committed,
    is_fatal,
    log,
    new_consumer,
    next_offsets,
)
from dwh_adapters.kafka.settings import GroupMembership, KafkaSettings
from dwh_adapters.kafka.trouble import KafkaUnreachable
from dwh_adapters.lifecycle import Closeable
from dwh_core.messages import InMessage

# The commit failed because this member no longer owns the partitions (a rebalance
# happened behind its back): the new owner gets the messages again from the last commit.
_REVOKED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError._ASSIGNMENT_LOST,
    }
)
_ERROR_LOG_INTERVAL_S = 60.0
# librdkafka's own text for FENCED_INSTANCE_ID: a fatal error reaches the application as
# _FATAL, and only its text says which error it was.
_FENCED_TEXT = KafkaError(KafkaError.FENCED_INSTANCE_ID).str()
LEAVE_WAIT_S = 5.0
PROBE_TIMEOUT_S = 2.0


class InstanceFenced(Exception):
    """Another consumer joined the group with this one's ``group.instance.id`` and the
    broker fenced this one out. Not a passing failure: a new client with the same id
    would fence the other one in turn, and the two would take turns for ever."""


class KafkaBatchConsumer(Closeable):
    """Reads one topic in batches as a member of a consumer group; commits a batch's
    offsets only when the worker says so, that is, once the batch is durable downstream.

    Created lazily: no network until the first :meth:`consume`. Offsets are never
    committed automatically, and a group with no commit starts at the earliest offset.

    Rebalances need no special handling. The worker runs consume -> handle -> commit in
    one thread, and librdkafka runs the rebalance callbacks only inside ``consume``; so
    when partitions are revoked no batch is in flight: every batch consumed before has
    been committed (or abandoned uncommitted, and will be redelivered). The callbacks
    only record the assignment. If the group rebalances in the background while a batch
    is being handled (the handling outlasted ``max.poll.interval.ms``, or the session
    expired), the commit is refused; it is logged and dropped, the new owner of those
    partitions reads the batch again from the last commit, and every layer is idempotent.

    With an instance id in ``membership`` it is a static member (see
    :class:`GroupMembership`): killed, and started again with the same id, it gets its
    partitions back at once. :meth:`close` still leaves the group, as a static member
    does not by itself, so that a stopped worker's partitions move on at once and an
    empty group can be reset or deleted.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topic: str,
        batch_size: int,
        batch_wait_s: float,
        membership: GroupMembership | None = None,
    ) -> None:
        self._settings = settings
        self._membership = membership or GroupMembership()
        self._group_id = group_id
        self._topic = topic
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._consumer: Consumer | None = None
        self._assignment: set[int] = set()
        self._positions: dict[int, int] = {}
        self._last_error: tuple[str, float] = ("", 0.0)
        self._fatal: KafkaError | None = None

    @property
    def assignment(self) -> frozenset[int]:
        """The partitions of the topic this member owns now."""
        return frozenset(self._assignment)

    def consume(self) -> list[InMessage]:
        """Up to ``batch_size`` messages, waiting at most ``batch_wait_s`` for them.

        A fatal client error raises (the client is dropped, the next call starts a new
        one), :class:`InstanceFenced` when it was the fencing of this static member; any
        other error is logged and skipped, librdkafka recovers from it."""
        raw = self._client().consume(num_messages=self._batch_size, timeout=self._batch_wait_s)
        batch: list[InMessage] = []
        for message in raw:
            error = message.error()
            if error is None:
                batch.append(self._in_message(message))
            elif is_fatal(error):
                raise self._fail(error)
            else:
                self._log_error(error)
        if self._fatal is not None:  # a commit saw it, and no consume has reported it
            raise self._fail(self._fatal)
        self._positions.update((message.partition, message.offset + 1) for message in batch)
        return batch

    def check(self) -> None:
        """Raise :class:`KafkaException` unless a broker answers a metadata request for
        the topic within ``PROBE_TIMEOUT_S``: the client's own retries hide an outage
        from :meth:`consume`, which just returns nothing. When the client learned why it
        cannot connect, :class:`KafkaUnreachable` says so."""
        try:
            self._client().list_topics(self._topic, timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            why = trouble.cause(self._settings)
            if why is None:
                raise
            raise KafkaUnreachable(f"{self._settings.describe()}: {why}") from exc
        trouble.forget(self._settings)  # a later failure is explained by its own cause

    def commit(self, messages: Sequence[InMessage]) -> None:
        """Commit, synchronously, the offset after the last of these messages in each of
        their partitions. A commit refused because a rebalance took the partitions away
        is logged and dropped (see the class docstring); other failures raise."""
        offsets = next_offsets((m.topic, m.partition, m.offset) for m in messages)
        if not offsets:
            return
        if self._consumer is None:  # closed, or dropped after a fatal error: not a member now
            log.warning("commit dropped: the consumer is closed", extra={"topic": self._topic})
            return
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if is_fatal(exc.args[0]):
                # The next consume() reports it (its own error event first, if it says
                # more). The batch is replayed by the new owner.
                self._fatal = exc.args[0]
                log.warning("commit dropped: the consumer failed", extra={"error": str(exc)})
                return
            self._revoked_or_raise(exc.args[0], exc)
            return
        for partition in result:
            if partition.error is not None:
                self._revoked_or_raise(partition.error, KafkaException(partition.error))
                return

    def lag(self) -> dict[int, int]:
        """Messages not yet consumed in each owned partition whose end is known: the high
        watermark of the last fetch minus the position. No broker round trip, except one
        for the committed offsets of partitions assigned but not yet read from."""
        consumer = self._consumer
        if consumer is None:
            return {}
        unread = [p for p in self._assignment if p not in self._positions]
        if unread:
            # A metric between batches: one attempt, never a wait for the coordinator.
            self._positions.update(committed(consumer, self._topic, unread, wait_s=0))
        lags: dict[int, int] = {}
        for partition in sorted(self._assignment):
            tp = TopicPartition(self._topic, partition)
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            position = self._positions.get(partition, NO_OFFSET)
            start = position if position >= 0 else low
            if high >= 0 and start >= 0:
                lags[partition] = max(high - start, 0)
        return lags

    def close(self) -> None:
        """Leave the group and release the client. Commits nothing new: the worker has
        committed every batch that is durable, and one it has not must be redelivered.
        Idempotent; a later :meth:`consume` would join the group again."""
        self._discard(leave=True)

    def _client(self) -> Consumer:
        if self._consumer is None:
            overrides = self._membership.client_config()
            consumer = new_consumer(self._settings, self._group_id, overrides)
            consumer.subscribe(
                [self._topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            self._consumer = consumer
        return self._consumer

    def _discard(self, leave: bool = False) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            if leave and self._fatal is None:
                self._leave(consumer)
            consumer.close()
        self._assignment.clear()
        self._positions.clear()
        self._fatal = None

    def _leave(self, consumer: Consumer) -> None:
        """Unsubscribe and serve the revocation, so that ``close()`` then sends the
        LeaveGroup a static member skips otherwise (measured: without this the member
        stays in the group until its session expires). Messages served meanwhile are
        dropped uncommitted: whoever gets the partitions reads them again."""
        deadline = time.monotonic() + LEAVE_WAIT_S
        try:
            consumer.unsubscribe()
            while consumer.assignment() and time.monotonic() < deadline:
                consumer.consume(num_messages=self._batch_size, timeout=0.05)
        except KafkaException as exc:
            log.warning("could not leave the group cleanly", extra={"error": str(exc)})

    def _fail(self, error: KafkaError) -> Exception:
        """Drop the client after a fatal error; the exception to raise."""
        self._discard()
        if error.code() == KafkaError.FENCED_INSTANCE_ID or _FENCED_TEXT in str(error):
            return InstanceFenced(
                f"fenced out of group {self._group_id}: another consumer joined it with "
                f"group.instance.id {self._membership.instance_id!r}"
            )
        return KafkaException(error)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = {tp.partition for tp in partitions}
        self._assignment |= assigned
        for partition in assigned:
            self._positions.pop(partition, None)
        log.info(
            "partitions assigned",
            extra={"topic": self._topic, "partitions": sorted(self._assignment)},
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        self._assignment -= revoked
        for partition in revoked:
            self._positions.pop(partition, None)
        log.info("partitions revoked", extra={"topic": self._topic, "revoked": sorted(revoked)})

    def _in_message(self, message: Message) -> InMessage:
        return InMessage(
            value=message.value(),
            topic=message.topic() or self._topic,
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
        )

    def _revoked_or_raise(self, error: KafkaError, exc: KafkaException) -> None:
        if error.code() not in _REVOKED:
            raise exc
        log.warning(
            "commit dropped: the partitions were revoked; the new owner reads them again",
            extra={"topic": self._topic, "error": str(error)},
        )

    def _log_error(self, error: KafkaError) -> None:
        text, logged_at = self._last_error
        now = time.monotonic()
        if str(error) != text or now - logged_at >= _ERROR_LOG_INTERVAL_S:
            self._last_error = (str(error), now)
            log.warning(
                "consumer error, skipped", extra={"topic": self._topic, "error": str(error)}
            )
