"""Catch-up: a backlog is in the source topic, the three layers start, and the clock
runs until the marts hold the oracle's counts. The same measurement serves the workers
and the naive baseline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

from attrs import frozen

from bench.console import say
from bench.kafka import CommittedOffsets
from bench.marts import Marts, read_totals
from bench.processes import Process
from bench.tables import Connection
from dwh_adapters.kafka import KafkaSettings
from dwh_workers.topology import LAYER_NAMES

POLL_S = 0.1
MARTS_GRACE_S = 10.0  # after every layer committed all: the marts must be right by then


@frozen
class Pipeline:
    """Where one pipeline reads and writes: per layer its input topic and group, the
    schema of its marts, and the users whose counters are the run's."""

    topics: Mapping[str, str]
    groups: Mapping[str, str]
    marts_schema: str
    users: tuple[uuid.UUID, ...]


@frozen
class LayerTiming:
    """``done_s``: seconds from the start of the processes until the layer's group had
    committed every message of its input, its upstream being done. ``orders_per_s`` is
    the backlog's orders over ``done_s``, so it includes the layers before."""

    messages: int
    first_commit_s: float
    done_s: float
    orders_per_s: float
    messages_per_s: float


@frozen
class CatchUp:
    """``seconds``: from the start of the processes until the marts held the final,
    correct counts (compared with the oracle); ``exact``: they equal the oracle's.
    The totals are (product counters, their sum, category counters, their sum) of the
    run's users, as the oracle expects them and as found at the end."""

    orders: int
    messages: int
    seconds: float
    orders_per_s: float
    messages_per_s: float
    exact: bool
    differing_counters: int
    expected_totals: tuple[int, int, int, int]
    found_totals: tuple[int, int, int, int]
    layers: dict[str, LayerTiming]
    timeline: list[dict[str, float]]


def measure(
    label: str,
    kafka: KafkaSettings,
    conn: Connection,
    pipeline: Pipeline,
    orders: int,
    expected: Marts,
    start: Callable[[], Mapping[str, Process]],
    deadline_s: float,
) -> CatchUp:
    """Start the processes (the backlog is already in the source topic) and time them."""
    offsets = CommittedOffsets(
        kafka, {layer: (pipeline.topics[layer], pipeline.groups[layer]) for layer in LAYER_NAMES}
    )
    try:
        return _Clock(label, conn, pipeline, orders, expected, offsets).run(start, deadline_s)
    finally:
        offsets.close()


class _Clock:
    def __init__(
        self,
        label: str,
        conn: Connection,
        pipeline: Pipeline,
        orders: int,
        expected: Marts,
        offsets: CommittedOffsets,
    ) -> None:
        self._label = label
        self._conn = conn
        self._pipeline = pipeline
        self._orders = orders
        self._expected = expected
        self._offsets = offsets
        self._first: dict[str, float] = {}
        self._done: dict[str, float] = {}
        self._totals: dict[str, int] = {}
        self._marts_at: float | None = None
        self._timeline: list[dict[str, float]] = []
        self._next_report = 0.0

    def run(self, start: Callable[[], Mapping[str, Process]], deadline_s: float) -> CatchUp:
        started = time.monotonic()
        processes = start()
        while True:
            now = time.monotonic() - started
            self._check_alive(processes)
            self._observe(now)
            if len(self._done) == len(LAYER_NAMES) and (
                self._marts_at is not None or now > max(self._done.values()) + MARTS_GRACE_S
            ):
                break
            if now > deadline_s:
                raise TimeoutError(f"{self._label}: not caught up after {deadline_s:.0f} s")
            time.sleep(POLL_S)
        return self._result()

    def _check_alive(self, processes: Mapping[str, Process]) -> None:
        for name, process in processes.items():
            if not process.alive():
                raise RuntimeError(
                    f"{name} exited with {process.popen.returncode}; its log: {process.log_path}"
                )

    def _observe(self, now: float) -> None:
        progress = self._offsets.read()
        upstream_done = True  # the backlog was complete before the start
        for layer in LAYER_NAMES:
            committed, total = progress[layer]
            if committed and layer not in self._first:
                self._first[layer] = now
            if layer not in self._done and upstream_done and committed >= total:
                self._done[layer] = now
                self._totals[layer] = total
                say(f"{self._label}: {layer} done at {now:.1f} s ({total:,} messages)")
            upstream_done = layer in self._done
        if self._marts_at is None and "dds" in self._done and self._marts_complete():
            self._marts_at = now
            say(f"{self._label}: the marts hold the oracle's totals at {now:.1f} s")
        if not self._timeline or now - self._timeline[-1]["t"] >= 1.0:
            self._timeline.append(
                {"t": round(now, 2), **{layer: progress[layer][0] for layer in LAYER_NAMES}}
            )
        if now >= self._next_report:
            self._next_report = now + (1.0 if now < 10 else 5.0)
            say(
                f"{self._label}: {now:5.1f} s  "
                + "  ".join(
                    f"{layer} {progress[layer][0]:,}/{progress[layer][1]:,}"
                    for layer in LAYER_NAMES
                )
            )

    def _marts_complete(self) -> bool:
        totals = read_totals(self._conn, self._pipeline.marts_schema, self._pipeline.users)
        return totals == self._expected.totals

    def _result(self) -> CatchUp:
        actual = Marts.read(self._conn, self._pipeline.marts_schema, self._pipeline.users)
        differing = actual.differences(self._expected)
        if differing:
            say(
                f"{self._label}: {differing:,} counters differ from the oracle; totals expected "
                f"{self._expected.totals}, found {actual.totals} (lower: did another session "
                "empty the shared tables meanwhile? the tests do)"
            )
        seconds = self._marts_at if self._marts_at is not None else max(self._done.values())
        messages = self._totals["stg"]
        return CatchUp(
            orders=self._orders,
            messages=messages,
            seconds=round(seconds, 3),
            orders_per_s=round(self._orders / seconds, 1),
            messages_per_s=round(messages / seconds, 1),
            exact=differing == 0 and self._marts_at is not None,
            differing_counters=differing,
            expected_totals=self._expected.totals,
            found_totals=actual.totals,
            layers={
                layer: LayerTiming(
                    messages=self._totals[layer],
                    first_commit_s=round(self._first.get(layer, self._done[layer]), 3),
                    done_s=round(self._done[layer], 3),
                    orders_per_s=round(self._orders / self._done[layer], 1),
                    messages_per_s=round(self._totals[layer] / self._done[layer], 1),
                )
                for layer in LAYER_NAMES
            },
            timeline=self._timeline,
        )
