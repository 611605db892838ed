"""The chaos run's moving parts: the workers it kills and restarts, the feed it produces
while they run, and the watcher of how far each layer has committed, from which the
time to resume after every fault is read."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from attrs import define, field, frozen
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bench.kafka import producer
from bench.processes import Process, start
from dwh_adapters.kafka import KafkaSettings
from dwh_workers.topology import LAYER_NAMES, LAYERS

SAMPLE_S = 0.1
_REQUEST_S = 1.0  # short: a sample must not hang while the broker restarts


def source_topic(layer: str) -> str:
    return LAYERS[layer].source_topic


def group(layer: str) -> str:
    return LAYERS[layer].consumer_group


# --- the workers ---------------------------------------------------------------------------


# Idempotent and acknowledged by all replicas; the broker restart a run injects makes
# librdkafka log every refused connection, which only buries the run's own report.
_QUIET_ACKED = {"enable.idempotence": True, "acks": "all", "log_level": 2}


@define
class Workers:
    """One worker process per layer, with a stable identity per layer: a killed worker
    is started again at once with the same ``DWH_INSTANCE_ID`` (the consumer's
    ``group.instance.id``), as a Kubernetes pod is restarted under the same name."""

    env: Mapping[str, str]
    log_dir: Path
    run_id: str
    processes: dict[str, Process] = field(factory=dict)
    generation: dict[str, int] = field(factory=dict)
    crashes: list[str] = field(factory=list)

    def start(self, layer: str) -> None:
        self.generation[layer] = self.generation.get(layer, 0) + 1
        env = {**self.env, "DWH_INSTANCE_ID": f"chaos-{self.run_id}-{layer}"}
        name = f"{layer}-{self.generation[layer]}"
        self.processes[layer] = start(name, f"dwh_workers.{layer}", [], env, self.log_dir)

    def kill(self, layer: str) -> None:
        """SIGKILL, and wait until it is gone: nothing of it can commit afterwards."""
        process = self.processes[layer]
        process.popen.send_signal(signal.SIGKILL)
        code = process.popen.wait(timeout=30)
        if code != -signal.SIGKILL:
            self.crashes.append(f"{process.name} had exited with {code} before the kill")

    def restart_dead(self) -> None:
        """A worker that exited by itself is a finding; restart it as Kubernetes would."""
        for layer, process in list(self.processes.items()):
            if not process.alive():
                self.crashes.append(f"{process.name} exited with {process.popen.returncode}")
                self.start(layer)

    def stop(self) -> dict[str, int]:
        """SIGTERM to all at once; their exit statuses (0 expected)."""
        for process in self.processes.values():
            process.terminate()
        return {process.name: process.stop() for process in self.processes.values()}


# --- the feed -------------------------------------------------------------------------------


@frozen
class Delivered:
    partition: int
    offset: int


class Feed(threading.Thread):
    """Produces ``values`` into the source topic at an even pace over ``seconds``,
    idempotently (``acks=all``): the broker's restart delays messages, never drops or
    doubles them. Where each message marked in ``tracked`` landed is recorded, so its
    dead letter can be found by its source offset."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        values: Sequence[bytes | None],
        tracked: Sequence[bool],
        seconds: float,
    ) -> None:
        super().__init__(name="chaos-feed", daemon=True)
        self._producer = producer(kafka, **_QUIET_ACKED, **{"linger.ms": 20})
        self._topic = topic
        self._values = values
        self._tracked = tracked
        self._seconds = seconds
        self.delivered: dict[int, Delivered] = {}
        self.failures: list[str] = []
        self.sent = 0
        self.total = len(values)
        self.flushed = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        per_s = len(self._values) / max(self._seconds, 0.001)
        for index, value in enumerate(self._values):
            due = started + index / per_s
            if due > time.monotonic() and index % 50 == 0:
                time.sleep(due - time.monotonic())  # the pace of the feed, not a wait for anything
            self._produce(index, value)
            self.sent = index + 1
        left = self._producer.flush(300)
        if left:
            self.failures.append(f"{left} messages not acknowledged within 300 s")
        self.flushed.set()

    def _produce(self, index: int, value: bytes | None) -> None:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self.failures.append(str(error))
            elif self._tracked[index]:
                self.delivered[index] = Delivered(message.partition() or 0, message.offset() or 0)

        while True:
            try:
                self._producer.produce(self._topic, value, on_delivery=report)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)


def produce_now(kafka: KafkaSettings, topic: str, value: bytes) -> None:
    """One message, acknowledged before this returns (a probe)."""
    client = producer(kafka, **_QUIET_ACKED)
    client.produce(topic, value)
    if client.flush(120):
        raise RuntimeError(f"a probe to {topic} was not acknowledged within 120 s")


# --- the watcher ----------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Samples every layer's committed offsets (summed over partitions) about every
    :data:`SAMPLE_S`; a sample that fails (the broker is restarting) is skipped. It reads
    the groups' offsets without joining them, so it disturbs no worker."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self._consumers = {
            layer: Consumer(
                {
                    **kafka.client_config(),
                    "group.id": group(layer),
                    "enable.auto.commit": False,
                    "log_level": 0,
                }
            )
            for layer in LAYER_NAMES
        }
        self._partitions: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._samples: dict[str, list[tuple[float, int]]] = {layer: [] for layer in LAYER_NAMES}
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(SAMPLE_S):
            for layer in LAYER_NAMES:
                value = self.committed(layer)
                if value is not None:
                    with self._lock:
                        self._samples[layer].append((time.monotonic(), value))

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)
        for consumer in self._consumers.values():
            consumer.close()

    def committed(self, layer: str) -> int | None:
        """Messages of the layer's input its group has committed; ``None`` when the
        broker does not answer now."""
        consumer, topic = self._consumers[layer], source_topic(layer)
        try:
            asked = [TopicPartition(topic, p) for p in self._partitions_of(layer)]
            done = consumer.committed(asked, timeout=_REQUEST_S)
        except KafkaException:
            return None
        if any(tp.error is not None for tp in done):
            return None
        return sum(max(tp.offset, 0) for tp in done)

    def total(self, layer: str) -> int | None:
        """Messages in the layer's input topic; ``None`` when the broker does not answer."""
        consumer, topic = self._consumers[layer], source_topic(layer)
        try:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_REQUEST_S)[1]
                for p in self._partitions_of(layer)
            )
        except KafkaException:
            return None

    def committed_now(self, layer: str, timeout: float = 60) -> int:
        """The committed count, asked until the broker answers."""
        deadline = time.monotonic() + timeout
        while (value := self.committed(layer)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the committed offsets of {layer}: no answer in {timeout} s")
            time.sleep(SAMPLE_S)
        return value

    def moved_at(self, layer: str, above: int, after: float) -> float | None:
        """When a sample taken after ``after`` first showed more than ``above``."""
        with self._lock:
            samples = list(self._samples[layer])
        return next((t for t, value in samples if t >= after and value > above), None)

    def _partitions_of(self, layer: str) -> list[int]:
        if layer not in self._partitions:
            topic = source_topic(layer)
            metadata = self._consumers[layer].list_topics(topic, timeout=_REQUEST_S)
            partitions = sorted(metadata.topics[topic].partitions)
            if not partitions:  # not known yet: ask again next time, never cache "none"
                return []
            self._partitions[layer] = partitions
        return self._partitions[layer]


# --- one fault ------------------------------------------------------------------------------


@frozen
class Fault:
    """What to do (``kind``: ``kill-stg`` and the like, ``postgres``, ``redis``,
    ``kafka``) and which layers must process again before it counts as resumed."""

    kind: str
    layers: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.kind.startswith("kill-"):
            return f"SIGKILL {self.kind.removeprefix('kill-')} worker"
        return {"postgres": "PostgreSQL restart", "redis": "Redis restart"}.get(
            self.kind, "Kafka broker restart"
        )


# Redis: STG's enrichment
AFFECTED = {"postgres": LAYER_NAMES, "kafka": LAYER_NAMES, "redis": ("stg",)}


def schedule(kills: int, restarts: int, seed: int) -> list[Fault]:
    """``kills`` SIGKILLs spread over the layers (each layer once before any twice) and
    ``restarts`` of each service, in a seeded random order."""
    rng = random.Random(seed)
    layers = [LAYER_NAMES[i % len(LAYER_NAMES)] for i in range(kills)]
    faults = [Fault(f"kill-{layer}", (layer,)) for layer in layers]
    faults += [Fault(kind, AFFECTED[kind]) for kind in AFFECTED for _ in range(restarts)]
    rng.shuffle(faults)
    return faults


@frozen
class Outcome:
    """One injected fault: seconds from the fault until every affected layer committed
    again (``None``: not within the deadline), and the outage as seen from outside."""

    kind: str
    label: str
    at_s: float
    outage_s: float
    resume_s: float | None
    per_layer_s: dict[str, float | None]


def inject(
    fault: Fault,
    act: Callable[[], None],
    watcher: Watcher,
    probe: Callable[[], None],
    started: float,
    deadline_s: float,
) -> Outcome:
    """Do the fault (``act`` returns once it is over from outside: the worker running
    again, the service answering again); then send a probe, so every layer has work,
    and wait until each affected layer's committed count moves past where it stood when
    the fault was over. Resume times run from the start of the fault."""
    began = time.monotonic()
    act()
    back = time.monotonic()
    reference = {layer: watcher.committed_now(layer) for layer in fault.layers}
    probe()
    until = time.monotonic() + deadline_s
    moved: dict[str, float | None] = dict.fromkeys(fault.layers)
    while any(at is None for at in moved.values()) and time.monotonic() < until:
        for layer in fault.layers:
            if moved[layer] is None:
                moved[layer] = watcher.moved_at(layer, reference[layer], back)
        time.sleep(SAMPLE_S)
    per_layer = {layer: None if at is None else round(at - began, 2) for layer, at in moved.items()}
    times = [value for value in per_layer.values() if value is not None]
    resumed = max(times) if len(times) == len(per_layer) else None
    return Outcome(
        fault.kind,
        fault.label,
        round(began - started, 1),
        round(back - began, 2),
        resumed,
        per_layer,
    )


def worker_env(private: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any connection setting of its own, then the
    private services' settings, JSON logs, no HTTP port, and ``extra``."""
    prefixes = ("KAFKA_", "REDIS_", "PG_WAREHOUSE_", "DWH_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    return {**env, **private, "DWH_LOG_FORMAT": "json", "DWH_HTTP_PORT": "0", **extra}
