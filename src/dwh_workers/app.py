"""Start a worker of one layer: settings, logging, schema check, probes, signals, loop."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from threading import Event
from types import FrameType

from tenacity import (
    RetryCallState,
    RetryError,
)

from dwh_adapters.kafka.consumer import InstanceFenced
from dwh_adapters.postgres.migrations import SchemaOutdated, check_schema
from dwh_adapters.postgres.settings import connect
from dwh_core.tag_rules import RulesError
from dwh_workers import config
from dwh_workers.containers import CONTAINERS
from dwh_workers.errors import is_transient
from dwh_workers.observability import Metrics, configure_logging, serve
from dwh_workers.runner import Worker, backoff

log = logging.getLogger("dwh.worker")
EXIT_FENCED = 4


def _wait_for_schema(settings: config.Settings, metrics: Metrics, stopping: Event) -> None:
    """Wait (with back-off, until asked to stop) for PostgreSQL; fail at once if the
    schema is behind. Raises :class:`tenacity.RetryError` when stopped while waiting."""

    def check() -> None:
        with connect(settings.postgres) as connection:
            check_schema(connection)

    def warn(state: RetryCallState) -> None:
        metrics.tick()
        error = state.outcome.exception() if state.outcome else None
        metrics.reasons = {"postgres": f"{type(error).__name__}: {error}"}
        metrics.count(
            "dwh_dependency_errors_total", dependency="postgres", error=type(error).__name__
        )
        log.warning(
            "waiting for PostgreSQL",
            extra={"at": settings.postgres.describe(), "error": str(error)},
        )

    def retryable(exc: BaseException) -> bool:
        return is_transient(exc) and not isinstance(exc, SchemaOutdated)

    backoff(retryable, stopping, warn, max_backoff_s=15)(check)


GC_THRESHOLD = 200_000  # new objects between collections of the youngest generation


def tune_garbage_collector() -> None:
    """Collect cycles far less often than Python's default (after every 700 new
    objects). A batch allocates hundreds of thousands of small acyclic objects (tuples,
    uuids, rows) that reference counting frees on its own; with the default thresholds
    the cyclic collector scanned them over and over and took a third of the DDS worker's
    time (py-spy). What start-up built is frozen out of the collector's scans."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def main(layer: str) -> int:
    """Run the ``layer`` worker until SIGTERM or SIGINT; the exit status."""
    try:
        settings = config.load(layer)
    except config.ConfigError as exc:
        print(f"dwh-{layer}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.worker.log_format, settings.worker.log_level)
    if insecure := config.insecure_connections(settings):
        log.warning("connections without verified TLS to a remote host: %s", "; ".join(insecure))
    container = CONTAINERS[layer](settings=settings)
    metrics: Metrics = container.infrastructure.metrics()
    if settings.worker.http_port:
        serve(metrics, settings.worker.http_port)
    stopping = Event()
    workers: list[Worker] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("signal received; finishing the current batch", extra={"signal": signum})
        stopping.set()
        for worker in workers:
            worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _wait_for_schema(settings, metrics, stopping)
    except SchemaOutdated as exc:
        log.error(str(exc))
        return 3
    except RetryError:
        log.info("stopped while waiting for PostgreSQL")
        return 0
    log.info(
        "starting",
        extra={
            "layer": layer,
            "source": settings.worker.source_topic,
            "destination": settings.worker.destination_topic,
            "group": settings.worker.consumer_group,
            "instance_id": settings.worker.instance_id,
            "kafka": settings.kafka.describe(),
            "postgres": settings.postgres.describe(),
        },
    )
    try:
        worker: Worker = container.worker()
    except RulesError as exc:
        log.error("the tag rules file is not valid; fix it and start again:\n%s", exc)
        container.shutdown_resources()
        return 2
    workers.append(worker)
    tune_garbage_collector()
    if stopping.is_set():
        worker.stop()
    try:
        worker.run()
    except InstanceFenced as exc:
        log.error(
            "%s: another worker of this layer uses the same DWH_INSTANCE_ID; give every "
            "replica its own (exiting with status %d)",
            exc,
            EXIT_FENCED,
            extra={"instance_id": settings.worker.instance_id},
        )
        return EXIT_FENCED
    finally:
        container.shutdown_resources()
    return 0
