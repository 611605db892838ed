"""The worker loop on fakes: commit after handling, retry what is transient, isolate and
dead-letter the one message that can never succeed, stop cleanly."""

from __future__ import annotations

from collections.abc import Sequence

from dwh_adapters.memory import InMemoryDeadLetters, InMemoryTopics
from dwh_core.layers import BatchResult
from dwh_core.messages import InMessage
from dwh_workers.errors import is_transient
from dwh_workers.observability import Metrics
from dwh_workers.runner import Worker


class ScriptedConsumer:
    """Hands out the given batches, then asks the worker to stop."""

    def __init__(self, batches: list[list[InMessage]]) -> None:
        self.batches = batches
        self.committed: list[int] = []
        self.closed = False
        self.worker: Worker | None = None

    def consume(self) -> list[InMessage]:
        if not self.batches:
            assert self.worker is not None
            self.worker.stop()
            return []
        return self.batches.pop(0)

    def commit(self, messages: Sequence[InMessage]) -> None:
        self.committed.extend(message.offset for message in messages)

    def lag(self) -> dict[int, int]:
        return {0: len(self.batches)}

    def close(self) -> None:
        self.closed = True


class FlakyService:
    """Fails transiently ``outages`` times, and for good on any batch holding b"poison"."""

    stage = "stg"

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.handled: list[bytes | None] = []

    def handle(self, batch: Sequence[InMessage]) -> BatchResult:
        if self.outages:
            self.outages -= 1
            raise ConnectionError("warehouse is restarting")
        if any(message.value == b"poison" for message in batch):
            raise ValueError("value out of range")
        self.handled.extend(message.value for message in batch)
        return BatchResult(len(batch), len(batch), 0)


def messages(*values: bytes) -> list[InMessage]:
    return [InMessage(value, "orders", 0, offset) for offset, value in enumerate(values)]


def run(consumer: ScriptedConsumer, service: FlakyService) -> tuple[Metrics, InMemoryDeadLetters]:
    metrics = Metrics("stg")
    dead = InMemoryDeadLetters(InMemoryTopics())
    worker = Worker(consumer, service, dead, metrics, is_transient, max_backoff_s=0.001)
    consumer.worker = worker
    worker.run()
    return metrics, dead


def test_a_batch_is_committed_after_it_is_handled_and_the_consumer_closed() -> None:
    consumer = ScriptedConsumer([messages(b"a", b"b")])
    service = FlakyService()
    run(consumer, service)
    assert service.handled == [b"a", b"b"]
    assert consumer.committed == [0, 1]
    assert consumer.closed


def test_a_transient_failure_is_retried_until_the_batch_succeeds() -> None:
    consumer = ScriptedConsumer([messages(b"a", b"b")])
    service = FlakyService(outages=3)
    metrics, dead = run(consumer, service)
    assert service.handled == [b"a", b"b"]
    assert consumer.committed == [0, 1]
    assert dead.letters == []
    assert "dwh_dependency_errors_total" in metrics.render()


def test_the_message_that_can_never_succeed_is_isolated_and_dead_lettered() -> None:
    batch = messages(b"a", b"b", b"poison", b"c", b"d")
    consumer = ScriptedConsumer([batch])
    service = FlakyService()
    _, dead = run(consumer, service)
    assert sorted(v for v in service.handled if v) == [b"a", b"b", b"c", b"d"]
    [letter] = dead.letters
    assert letter.message.value == b"poison"
    assert letter.reason == "cannot be processed: ValueError: value out of range"
    assert consumer.committed == [0, 1, 2, 3, 4]


def test_metrics_render_the_prometheus_text_format() -> None:
    consumer = ScriptedConsumer([messages(b"a"), messages(b"b", b"c")])
    metrics, _ = run(consumer, FlakyService())
    text = metrics.render()
    assert 'dwh_messages_in_total{layer="stg"} 3' in text
    assert 'dwh_batches_total{layer="stg"} 2' in text
    assert 'dwh_batch_duration_seconds_count{layer="stg"} 2' in text
    assert 'dwh_batch_duration_seconds_bucket{layer="stg",le="+Inf"} 2' in text
    assert "# TYPE dwh_messages_in_total counter" in text
