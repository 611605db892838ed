"""PostgreSQL, Redis and a Kafka broker of the chaos run's own, on free ports of
127.0.0.1, that it can restart at will.

Why not the shared stack's (``scripts/stack``): the stack is shared with whoever runs
tests on the machine at the same time, and restarting its services under them would
fail their tests; private instances are restarted as roughly as we like, and the shared
stack stays up and untouched whatever happens to the run. They use the same binaries
and Kafka jars as the stack. Each ``restart`` returns only once the service answers.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis
from confluent_kafka.admin import AdminClient

from bench.processes import REPO, free_port

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
_POLL_S = 0.1
PG_USER = PG_PASSWORD = "dwh"
PG_DB = "de"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``condition`` until it holds; :class:`TimeoutError` naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(_POLL_S)


def _log(folder: Path, name: str) -> int:
    return os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class PrivatePostgres:
    """A throwaway cluster: superuser ``dwh`` (password ``dwh``), database ``de``.
    As root it runs as the ``postgres`` OS user, as ``scripts/stack`` does."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._folder = folder
        self._data = folder / "data"
        self._bin = _pg_bin()
        folder.mkdir(parents=True)
        password = folder / "password"
        password.write_text(PG_PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(password, "postgres")
        self._as_owner(
            "initdb", "-D", str(self._data), "-U", PG_USER, f"--pwfile={password}", "-E", "UTF8",
            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '{HOST}'\nport = {self.port}\n"
                f"unix_socket_directories = '{folder}'\nfsync = on\n"
            )

    def env(self) -> dict[str, str]:
        return {
            "PG_WAREHOUSE_HOST": HOST,
            "PG_WAREHOUSE_PORT": str(self.port),
            "PG_WAREHOUSE_DBNAME": PG_DB,
            "PG_WAREHOUSE_USER": PG_USER,
            "PG_WAREHOUSE_PASSWORD": PG_PASSWORD,
        }

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._folder / "postgres.log"))
        wait_until(self.answers, "the private PostgreSQL to answer")

    def create_database(self) -> None:
        with self._connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {PG_DB}")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: every backend killed, WAL replayed at the next start."""
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def answers(self) -> bool:
        try:
            with self._connect("postgres") as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _connect(self, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=HOST, port=self.port, user=PG_USER, password=PG_PASSWORD, dbname=dbname,
            autocommit=True, connect_timeout=3,
        )  # fmt: skip

    def _pg_ctl(self, *args: str) -> None:
        self._as_owner("pg_ctl", "-D", str(self._data), *args)

    def _as_owner(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd="/")


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return found[-1].parent


class PrivateRedis:
    """``redis-server`` in the foreground, saving its data to a file when it stops
    (``save`` points set, as the stack's are), so a restart keeps the dictionaries."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._folder = folder
        folder.mkdir(parents=True)
        self._process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {"REDIS_HOST": HOST, "REDIS_PORT": str(self.port)}

    def start(self) -> None:
        log = _log(self._folder, "redis.log")
        try:
            self._process = subprocess.Popen(
                [
                    "redis-server", "--bind", HOST, "--port", str(self.port),
                    "--dir", str(self._folder), "--save", "3600 1", "--appendonly", "no",
                    "--daemonize", "no",
                ],
                stdout=log, stderr=subprocess.STDOUT, cwd=self._folder,
            )  # fmt: skip
        finally:
            os.close(log)
        wait_until(self.answers, "the private Redis to answer")

    def stop(self) -> None:
        """SIGTERM: Redis saves its data set and exits."""
        _terminate(self._process, signal.SIGTERM)

    def answers(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class PrivateKafka:
    """A single-node KRaft broker on the stack's Kafka jars (as tests/support/broker.py
    runs one, written again here: the benchmark does not import the tests)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._folder = folder
        folder.mkdir(parents=True)
        self._libs = _kafka_libs()
        self._config = folder / "server.properties"
        self._process: subprocess.Popen[bytes] | None = None
        controller = free_port()
        self._config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{HOST}:{controller}",
                    f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{controller}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={folder / 'data'}",
                    "num.partitions=3",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "",
                ]
            )
        )
        # Base64url may begin with "-", which the StorageTool would take for an option; like
        # Kafka's own Uuid.randomUuid(), draw again then.
        cluster = "-"
        while cluster.startswith("-"):
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self._config)),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"KAFKA_HOST": HOST, "KAFKA_PORT": str(self.port)}

    def start(self) -> None:
        log = _log(self._folder, "broker.log")
        try:
            self._process = subprocess.Popen(
                self._java(f"-Dkafka.logs.dir={self._folder}", "kafka.Kafka", str(self._config)),
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            os.close(log)
        wait_until(self.answers, "the private Kafka broker to answer")

    def stop(self) -> None:
        """SIGTERM: a controlled shutdown, as a rolling restart does."""
        _terminate(self._process, signal.SIGTERM)

    def answers(self) -> bool:
        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _java(self, *args: str) -> list[str]:
        return ["java", "-Xms128m", "-Xmx384m", "-XX:+UseG1GC", "-cp", f"{self._libs}/*", *args]


def _kafka_libs() -> Path:
    found = subprocess.run(
        [str(REPO / "scripts" / "stack"), "kafka-libs"],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return Path(found.stdout.strip())


def _terminate(process: subprocess.Popen[bytes] | None, signum: int, timeout: float = 60) -> None:
    """Signal the process and wait for it to exit (SIGKILL after ``timeout``)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
