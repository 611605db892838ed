"""The worker loop on fakes: commit after handling, retry what is transient, isolate and
dead-letter the one message that can never succeed, stop cleanly."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException

from dwh_adapters.kafka import DeliveryFailed
from dwh_adapters.kafka.consumer import InstanceFenced
from dwh_adapters.memory import InMemoryDeadLetters, InMemoryTopics
from dwh_core.layers import BatchResult
from dwh_core.messages import InMessage
from dwh_workers.errors import dependency_of, is_transient
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


class ReasonsSeen(FlakyService):
    """Records what /readyz would list at each attempt of a batch."""

    def __init__(self, metrics: Metrics, outages: int) -> None:
        super().__init__(outages)
        self.metrics = metrics
        self.reasons: list[dict[str, str]] = []

    def handle(self, batch: Sequence[InMessage]) -> BatchResult:
        self.reasons.append(self.metrics.reasons)
        return super().handle(batch)


def test_a_failing_batch_makes_the_worker_not_ready_naming_why_until_it_succeeds() -> None:
    metrics = Metrics("stg")
    service = ReasonsSeen(metrics, outages=2)
    consumer = ScriptedConsumer([messages(b"a")])
    worker = Worker(consumer, service, InMemoryDeadLetters(InMemoryTopics()), metrics,
                    is_transient, max_backoff_s=0.001)  # fmt: skip
    consumer.worker = worker
    worker.run()
    restarting = {"other": "ConnectionError: warehouse is restarting"}
    assert service.reasons == [{}, restarting, restarting]
    assert metrics.reasons == {}


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


class IdleConsumer(ScriptedConsumer):
    """Returns nothing (an idle topic) for ``rounds`` calls, recording readiness at each."""

    def __init__(self, metrics: Metrics, rounds: int, batches: list[list[InMessage]]) -> None:
        super().__init__(batches)
        self.metrics = metrics
        self.rounds = rounds
        self.readiness: list[bool] = []
        self.reasons: list[dict[str, str]] = []

    def consume(self) -> list[InMessage]:
        self.readiness.append(self.metrics.ready)
        self.reasons.append(self.metrics.reasons)
        if self.rounds:
            self.rounds -= 1
            return []
        return super().consume()


class Probe:
    """A dependency check that fails while ``down``."""

    def __init__(self, down: list[bool]) -> None:
        self.down = down

    def __call__(self) -> None:
        if self.down.pop(0):
            raise ConnectionRefusedError("connection refused")


def idle_run(
    probe: Probe, rounds: int, batches: list[list[InMessage]]
) -> tuple[Metrics, IdleConsumer]:
    metrics = Metrics("stg")
    consumer = IdleConsumer(metrics, rounds, batches)
    dead = InMemoryDeadLetters(InMemoryTopics())
    worker = Worker(
        consumer, FlakyService(), dead, metrics, is_transient, 0.001, {"postgres": probe}, 0
    )
    consumer.worker = worker
    worker.run()
    return metrics, consumer


def test_an_idle_worker_is_not_ready_while_a_probe_fails_and_ready_once_it_passes() -> None:
    metrics, consumer = idle_run(Probe([False, True, True, False]), rounds=4, batches=[])
    # readiness seen by each consume: after the 1st probe passed, the 2nd and 3rd failed...
    assert consumer.readiness[1:] == [True, False, False, True]
    refused = {"postgres": "ConnectionRefusedError: connection refused"}
    assert consumer.reasons[1:] == [{}, refused, refused, {}]  # what /readyz lists
    text = metrics.render()
    assert (
        'dwh_dependency_errors_total{dependency="postgres",error="ConnectionRefusedError"' in text
    )
    assert text.count("ConnectionRefusedError") == 1  # one series, counted twice
    assert 'error="ConnectionRefusedError",layer="stg"} 2' in text


def test_a_batch_handled_and_committed_makes_a_worker_ready_again_without_a_probe() -> None:
    _, consumer = idle_run(Probe([True]), rounds=1, batches=[messages(b"a")])
    assert consumer.readiness == [False, False, True]
    assert consumer.committed == [0]


def test_a_failure_that_is_not_transient_ends_the_loop_without_a_retry() -> None:
    class Fenced(Exception):
        pass

    class FencedConsumer(ScriptedConsumer):
        calls = 0

        def consume(self) -> list[InMessage]:
            self.calls += 1
            raise Fenced("another consumer has this instance id")

    consumer = FencedConsumer([])
    metrics = Metrics("stg")
    dead = InMemoryDeadLetters(InMemoryTopics())

    def transient(exc: BaseException) -> bool:
        return not isinstance(exc, Fenced)

    worker = Worker(consumer, FlakyService(), dead, metrics, transient, max_backoff_s=0.001)
    with pytest.raises(Fenced):
        worker.run()
    assert consumer.calls == 1
    assert consumer.closed
    assert not metrics.ready


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (psycopg.OperationalError("gone"), "postgres"),
        (redis.ConnectionError("gone"), "redis"),
        (KafkaException(KafkaError(KafkaError._TRANSPORT)), "kafka"),
        (DeliveryFailed("not delivered"), "kafka"),
        (OSError("disk"), "other"),
    ],
)
def test_a_dependency_error_is_labelled_with_the_dependency(
    error: BaseException, dependency: str
) -> None:
    assert dependency_of(error) == dependency


def test_the_fenced_consumer_is_not_retried_but_a_dependency_error_is() -> None:
    assert not is_transient(InstanceFenced("fenced"))
    assert is_transient(KafkaException(KafkaError(KafkaError._TRANSPORT)))
