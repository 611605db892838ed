"""A Kafka broker of a test's own (the same Apache Kafka jars as the local stack), that
the test can stop and start again, to make the broker go away under running workers."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.support.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateBroker:
    def __init__(self, libs: Path, folder: Path) -> None:
        self.port = _free_port()
        self._libs = libs
        self._folder = folder
        self._config = folder / "server.properties"
        self._process: subprocess.Popen[bytes] | None = None
        controller = _free_port()
        self._config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={folder / 'data'}",
                    "num.partitions=3",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        # Base64url may begin with "-", which the StorageTool would take for an option; like
        # Kafka's own Uuid.randomUuid(), draw again then.
        cluster = "-"
        while cluster.startswith("-"):
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self._config))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self, *args: str) -> list[str]:
        return ["java", "-Xmx256m", "-cp", f"{self._libs}/*", *args]

    def _java(self, *args: str) -> None:
        subprocess.run(self._command(*args), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        log = (self._folder / "broker.log").open("ab")
        self._process = subprocess.Popen(
            self._command(f"-Dkafka.logs.dir={self._folder}", "kafka.Kafka", str(self._config)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, 90, f"the private broker on {self.bootstrap} to answer", 0.5)

    def answers(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:
            return False
        return True

    def stop(self) -> None:
        """Stop as a restarting broker does (SIGTERM, a clean shutdown)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=60)


@contextmanager
def private_broker(folder: Path) -> Iterator[PrivateBroker]:
    libs = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "kafka-libs"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    ).stdout.strip()
    broker = PrivateBroker(Path(libs), folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
