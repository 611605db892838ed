"""Workers as real subprocesses over unique topics and groups, for end-to-end tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from attrs import define

from dwh_adapters.kafka import KafkaPublisher, KafkaSettings, delete_topics, ensure_topics
from dwh_adapters.redis import RedisDictionaryWriter, RedisSettings
from dwh_core.messages import OutMessage
from dwh_workers.topology import LAYER_NAMES, Topology

KAFKA = KafkaSettings("127.0.0.1:9092")
REDIS = RedisSettings("127.0.0.1", 6379)
LOG_DIR = Path(__file__).resolve().parents[2] / ".stack" / "test-logs"
# What the tests' workers run with unless told otherwise: no fixed HTTP port (several run
# at once), logs a test can parse, and batches handed on sooner than the product's 200 ms.
TEST_WORKER_ENV = {"DWH_HTTP_PORT": "0", "DWH_LOG_FORMAT": "json", "DWH_BATCH_WAIT_MS": "100"}


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def provisioned(
    topology: Topology, dictionary_entries: Mapping[str, bytes], kafka: KafkaSettings = KAFKA
) -> Iterator[Topology]:
    """The topology's topics (3 partitions each) created and the dictionaries in Redis;
    the topics deleted at the end."""
    ensure_topics(kafka, topology.all_topics(), partitions=3)
    with RedisDictionaryWriter(REDIS) as writer:
        writer.put_many(dictionary_entries)
    try:
        yield topology
    finally:
        delete_topics(kafka, topology.all_topics())


def produce(
    topic: str, values: list[bytes], chunk: int = 5000, kafka: KafkaSettings = KAFKA
) -> None:
    """Send the values to the topic with no key, as the order feed does."""
    with KafkaPublisher(kafka, topic) as publisher:
        for start in range(0, len(values), chunk):
            publisher.publish([OutMessage(None, value) for value in values[start : start + chunk]])


@define
class WorkerProcess:
    layer: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_worker(
    topology: Topology,
    layer: str,
    extra_env: Mapping[str, str] | None = None,
    replica: int = 0,
    base_env: Mapping[str, str] | None = None,
) -> WorkerProcess:
    """A worker of ``layer`` as replica number ``replica`` (its ``DWH_INSTANCE_ID``,
    unless ``extra_env`` names one), in ``base_env`` (this process's environment by
    default)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{topology.suffix}-{layer}-{uuid.uuid4().hex[:6]}.log"
    env = {
        **TEST_WORKER_ENV,
        "DWH_INSTANCE_ID": topology.instance_id(layer, replica),
        **(extra_env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"dwh_workers.{layer}"],
            env=topology.env(layer, base_env, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(layer, process, log_path)


@contextmanager
def running(
    topology: Topology,
    replicas: int = 1,
    extra_env: Mapping[str, str] | None = None,
    http_ports: Mapping[str, int] | None = None,
    base_env: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[dict[str, list[WorkerProcess]]]:
    """All three layers' workers, ``replicas`` of each (serving HTTP on ``http_ports``
    per layer, if given, for one replica), in ``base_env`` of their layer if given (else
    this process's environment); terminated (SIGTERM) at the end, and each must exit 0."""

    def env(layer: str) -> dict[str, str]:
        port = (http_ports or {}).get(layer)
        return {**(extra_env or {}), **({"DWH_HTTP_PORT": str(port)} if port else {})}

    workers = {
        layer: [
            start_worker(topology, layer, env(layer), replica, (base_env or {}).get(layer))
            for replica in range(replicas)
        ]
        for layer in LAYER_NAMES
    }
    try:
        yield workers
    finally:
        codes = {w.log_path.name: w.terminate() for ws in workers.values() for w in ws}
        failed = {name: code for name, code in codes.items() if code != 0}
        assert not failed, f"workers exited with {failed}; logs in {LOG_DIR}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, str]:
    """The status and body a worker's HTTP server answers; status 0 when none answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def metric_total(port: int, name: str, **labels: str) -> float:
    """The sum of the worker's series of metric ``name`` that carry ``labels``."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in http_get(port, "/metrics")[1].splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(label in series for label in wanted):
            total += float(value)
    return total
