"""Start a worker of one layer: settings, logging, schema check, probes, signals, loop."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from tenacity import Retrying, retry_if_exception, wait_exponential

from dwh_adapters.postgres.migrations import SchemaOutdated, check_schema
from dwh_adapters.postgres.settings import connect
from dwh_workers import config
from dwh_workers.containers import CONTAINERS
from dwh_workers.errors import is_transient
from dwh_workers.observability import configure_logging, serve

log = logging.getLogger("dwh.worker")


def _wait_for_schema(settings: config.Settings) -> None:
    """Wait (with back-off) for PostgreSQL; fail at once if the schema is behind."""

    def check() -> None:
        with connect(settings.postgres) as connection:
            check_schema(connection)

    def warn(state: object) -> None:
        log.warning("waiting for PostgreSQL", extra={"at": settings.postgres.describe()})

    Retrying(
        retry=retry_if_exception(
            lambda exc: is_transient(exc) and not isinstance(exc, SchemaOutdated)
        ),
        wait=wait_exponential(multiplier=0.5, max=15),
        before_sleep=warn,
        reraise=True,
    )(check)


def main(layer: str) -> int:
    """Run the ``layer`` worker until SIGTERM or SIGINT; the exit status."""
    try:
        settings = config.load(layer)
    except config.ConfigError as exc:
        print(f"dwh-{layer}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.worker.log_format, settings.worker.log_level)
    try:
        _wait_for_schema(settings)
    except SchemaOutdated as exc:
        log.error(str(exc))
        return 3
    container = CONTAINERS[layer](settings=settings)
    worker = container.worker()
    metrics = container.infrastructure.metrics()  # type: ignore[attr-defined]
    if settings.worker.http_port:
        serve(metrics, settings.worker.http_port)

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("signal received; finishing the current batch", extra={"signal": signum})
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "starting",
        extra={
            "layer": layer,
            "source": settings.worker.source_topic,
            "destination": settings.worker.destination_topic,
            "group": settings.worker.consumer_group,
            "kafka": settings.kafka.describe(),
            "postgres": settings.postgres.describe(),
        },
    )
    try:
        worker.run()
    finally:
        container.shutdown_resources()
    return 0
