"""The worker loop: consume a batch, handle it, commit it; never lose, never block.

* The order of durability: the layer service writes the batch to PostgreSQL and waits
  for the delivery of what it publishes; only then are the batch's offsets committed. A
  crash anywhere replays the batch, and every write is idempotent.
* A transient failure (a dependency that is down) is retried with exponential back-off,
  forever, while the worker reports not-ready; the batch is never skipped.
* A failure that is not transient is isolated by splitting the batch in halves until
  the one message that cannot succeed is found; it goes to the dead-letter topic with
  the error as its reason, and the rest goes on.
* ``stop()`` only sets a flag (safe from a signal handler): the current batch finishes,
  or, if it is waiting to retry, is abandoned uncommitted (it will be replayed), and the
  loop ends.
* Readiness tells the truth while idle too. A worker with nothing to read never touches
  PostgreSQL or Redis, and the Kafka client hides an unreachable broker behind empty
  batches; so when a consume returns nothing, at most every ``PROBE_INTERVAL_S``, the
  worker runs its probes (``SELECT 1``, ``PING``, a metadata request). A failing probe
  makes it not-ready and counts in ``dwh_dependency_errors_total`` until a probe, or a
  batch handled and committed (which went through every dependency), succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Protocol, TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_when_event_set,
    wait_exponential,
)

from dwh_core.layers import BatchResult
from dwh_core.messages import DeadLetter, InMessage, bounded_reason
from dwh_core.ports import DeadLetterSink
from dwh_workers.errors import dependency_of
from dwh_workers.observability import Metrics

log = logging.getLogger("dwh.worker")
T = TypeVar("T")
LAG_INTERVAL_S = 5.0
PROBE_INTERVAL_S = 3.0


class BatchConsumer(Protocol):
    def consume(self) -> list[InMessage]: ...

    def commit(self, messages: Sequence[InMessage]) -> None: ...

    def lag(self) -> dict[int, int]: ...

    def close(self) -> None: ...


class LayerService(Protocol):
    stage: str

    def handle(self, batch: Sequence[InMessage]) -> BatchResult: ...


class Abandoned(Exception):
    """The worker is stopping while a batch waits to be retried."""


def backoff(
    is_transient: Callable[[BaseException], bool],
    stopping: threading.Event,
    before_sleep: Callable[[RetryCallState], None],
    max_backoff_s: float,
) -> Retrying:
    """Retry what fails transiently with exponential back-off, until ``stopping`` is set
    (then :class:`tenacity.RetryError`); a stop request cuts a pause short."""

    def pause(seconds: float) -> None:
        stopping.wait(seconds)

    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.2, max=max_backoff_s),
        stop=stop_when_event_set(stopping),
        sleep=pause,
        before_sleep=before_sleep,
    )


class Worker:
    def __init__(
        self,
        consumer: BatchConsumer,
        service: LayerService,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        is_transient: Callable[[BaseException], bool],
        max_backoff_s: float = 30.0,
        probes: Mapping[str, Callable[[], object]] | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        upkeep: Callable[[], object] | None = None,
    ) -> None:
        """``probes``: a check per dependency (``postgres``, ``redis``, ``kafka``) that
        raises when it is unreachable; run while idle, every ``probe_interval_s``.
        ``upkeep``: the layer's periodic work (it keeps its own pace), called after
        every batch and every empty poll; retried like a batch when it fails
        transiently, logged and counted when it fails otherwise."""
        self._consumer = consumer
        self._service = service
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._is_transient = is_transient
        self._max_backoff_s = max_backoff_s
        self._probes = dict(probes or {})
        self._probe_interval_s = probe_interval_s
        self._upkeep = upkeep
        self._stopping = threading.Event()
        self._last_lag = 0.0
        self._last_probe = float("-inf")
        self._unreachable: dict[str, str] = {}  # dependency -> why, as last logged

    def stop(self) -> None:
        """Ask the loop to end after the current batch. Idempotent; signal-safe."""
        self._stopping.set()

    def run(self) -> None:
        log.info("worker started", extra={"stage": self._service.stage})
        try:
            self._keep_up()  # before the first batch: the layer's start-up work
            while not self._stopping.is_set():
                self._metrics.tick()
                batch = self._retry(self._consumer.consume)
                if batch:
                    self._process(batch)
                    self._retry(partial(self._consumer.commit, batch))
                    self._metrics.gauge("dwh_last_processed_timestamp_seconds", time.time())
                    self._reachable(set(self._unreachable))
                else:
                    self._probe()
                self._keep_up()
                self._report_lag()
        except Abandoned:
            log.info("stopping: the batch in flight was abandoned uncommitted; it will be replayed")
        finally:
            self._metrics.ready = False
            self._consumer.close()
            log.info("worker stopped", extra={"stage": self._service.stage})

    def _process(self, batch: Sequence[InMessage]) -> None:
        started = time.perf_counter()
        try:
            result = self._retry(partial(self._service.handle, batch))
        except Abandoned:
            raise
        except Exception as exc:
            self._isolate(batch, exc)
            return
        self._metrics.observe_batch(time.perf_counter() - started)
        self._metrics.count("dwh_batches_total")
        self._metrics.count("dwh_messages_in_total", result.received)
        self._metrics.count("dwh_messages_out_total", result.processed)
        self._metrics.count("dwh_dead_letters_total", result.dead_lettered)

    def _keep_up(self) -> None:
        if self._upkeep is None:
            return
        try:
            self._retry(self._upkeep)
        except Abandoned:
            raise
        except Exception as exc:
            self._metrics.count("dwh_upkeep_failures_total", error=type(exc).__name__)
            log.error(
                "periodic work failed; trying again later",
                extra={"error": bounded_reason(f"{type(exc).__name__}: {exc}")},
            )

    def _isolate(self, batch: Sequence[InMessage], exc: Exception) -> None:
        self._metrics.count("dwh_batch_failures_total", error=type(exc).__name__)
        if len(batch) == 1:
            [message] = batch
            letter = DeadLetter(
                message, self._service.stage, f"cannot be processed: {type(exc).__name__}: {exc}"
            )
            log.error(
                "message dead-lettered after a permanent failure",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "reason": letter.reason,
                },
            )
            self._retry(partial(self._dead_letters.send, [letter]))
            self._metrics.count("dwh_messages_in_total")
            self._metrics.count("dwh_dead_letters_total")
            return
        log.warning(
            "batch failed permanently; isolating the message that fails",
            extra={"size": len(batch), "error": bounded_reason(f"{type(exc).__name__}: {exc}")},
        )
        middle = len(batch) // 2
        self._process(batch[:middle])
        self._process(batch[middle:])

    def _retry(self, action: Callable[[], T]) -> T:
        retrying = backoff(self._is_transient, self._stopping, self._not_ready, self._max_backoff_s)
        try:
            value = retrying(action)
        except RetryError:
            raise Abandoned from None
        self._readiness(self._unreachable)
        return value

    def _probe(self) -> None:
        """Run every probe if ``probe_interval_s`` has passed since the last round."""
        now = time.monotonic()
        if not self._probes or now - self._last_probe < self._probe_interval_s:
            return
        self._last_probe = now
        passed: set[str] = set()
        for name, check in self._probes.items():
            try:
                check()
            except Exception as exc:
                self._unreachable_now(name, exc)
            else:
                passed.add(name)
        self._reachable(passed)

    def _unreachable_now(self, name: str, exc: Exception) -> None:
        self._metrics.count(
            "dwh_dependency_errors_total", dependency=name, error=type(exc).__name__
        )
        why = f"{type(exc).__name__}: {exc}"
        if self._unreachable.get(name) != why:  # logged once, and again when it says more
            log.warning(
                "a dependency is unreachable; not ready until it answers",
                extra={"dependency": name, "error": why},
            )
        self._unreachable[name] = why
        self._readiness(self._unreachable)

    def _reachable(self, names: set[str]) -> None:
        for name in sorted(names & self._unreachable.keys()):
            log.info("a dependency answers again", extra={"dependency": name})
            del self._unreachable[name]
        self._readiness(self._unreachable)

    def _readiness(self, failing: Mapping[str, str]) -> None:
        """Ready unless a dependency fails; ``/readyz`` says which and why."""
        self._metrics.reasons = dict(failing)
        self._metrics.ready = not failing

    def _not_ready(self, state: RetryCallState) -> None:
        self._metrics.tick()
        error = state.outcome.exception() if state.outcome else None
        dependency = dependency_of(error) if error else "other"
        why = f"{type(error).__name__}: {error}"
        self._readiness({**self._unreachable, dependency: why})
        self._metrics.count(
            "dwh_dependency_errors_total", dependency=dependency, error=type(error).__name__
        )
        log.warning(
            "a dependency failed; retrying",
            extra={
                "attempt": state.attempt_number,
                "error": why,
                "retry_in_s": round(state.upcoming_sleep, 2),
            },
        )

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S:
            return
        self._last_lag = now
        try:
            lags = self._consumer.lag()
        except Exception as exc:
            log.debug("lag unavailable", extra={"error": str(exc)})
            return
        for partition, lag in lags.items():
            self._metrics.gauge("dwh_consumer_lag", lag, partition=str(partition))
