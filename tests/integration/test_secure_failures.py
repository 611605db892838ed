"""The mistakes people make on a first connection to production services, each against
the secure stack: a wrong password, a missing or wrong CA, a plaintext client on a TLS
port, the wrong SCRAM mechanism, a host name the certificate does not hold. Each is one
line naming the service and the cause: ``dwh`` exits 1 with it, and a worker reports not
ready with it on /readyz and in its log. No password shows anywhere, right or wrong: not in
an output, a log line, a readiness answer or a metric."""

from __future__ import annotations

import json
import secrets as random_secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from attrs import frozen

from dwh_adapters.kafka import delete_topics, ensure_topics
from dwh_adapters.postgres.settings import PgSettings
from dwh_workers import config
from dwh_workers.topology import Topology
from tests.support.cli import dwh_command
from tests.support.databases import fresh_database
from tests.support.processes import WorkerProcess, free_port, http_get, start_worker, wait_for
from tests.support.secure import process_env, secrets, secure_env

pytestmark = pytest.mark.integration

WRONG_PASSWORD = random_secrets.token_hex(16)
OTHER_CA = "OTHER_CA"  # stands for the path of a CA that signed nothing of the stack's
DEADLINE_S = 60.0


@frozen
class Mistake:
    overrides: dict[str, str]  # "" unsets a variable
    dependency: str  # the worker's name of the service: kafka, redis, postgres
    service: str  # how dwh names it
    cause: str  # what the line must say
    argv: tuple[str, ...]  # a dwh command that needs the service


KAFKA_COMMAND = ("status", "--ports", "")
REDIS_COMMAND = ("dictionaries", "load", "--users", "1", "--restaurants", "1")
PG_COMMAND = ("migrate",)
PLAINTEXT_KAFKA = {
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_CONSUMER_USERNAME": "",
    "KAFKA_CONSUMER_PASSWORD": "",
    "KAFKA_SSL_CA_LOCATION": "",
}

MISTAKES = {
    "kafka-wrong-password": Mistake(
        {"KAFKA_CONSUMER_PASSWORD": WRONG_PASSWORD},
        "kafka",
        "Kafka at 127.0.0.1:9094",
        "authentication failed: the broker refused user 'dwh' with SCRAM-SHA-512",
        KAFKA_COMMAND,
    ),
    "kafka-no-ca": Mistake(
        {"KAFKA_SSL_CA_LOCATION": ""},
        "kafka",
        "Kafka at 127.0.0.1:9094",
        "TLS certificate could not be verified with the system's CAs "
        "(KAFKA_SSL_CA_LOCATION is not set)",
        KAFKA_COMMAND,
    ),
    "kafka-wrong-ca": Mistake(
        {"KAFKA_SSL_CA_LOCATION": OTHER_CA},
        "kafka",
        "Kafka at 127.0.0.1:9094",
        "TLS certificate could not be verified with the CA in KAFKA_SSL_CA_LOCATION=",
        KAFKA_COMMAND,
    ),
    "kafka-plaintext-on-tls": Mistake(
        PLAINTEXT_KAFKA,
        "kafka",
        "Kafka at 127.0.0.1:9094 PLAINTEXT",
        "the broker closed the connection at once: the port probably expects TLS",
        KAFKA_COMMAND,
    ),
    "kafka-scram-sha-256": Mistake(
        {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
        "kafka",
        "Kafka at 127.0.0.1:9094",
        "the broker does not accept SASL mechanism SCRAM-SHA-256 (it accepts SCRAM-SHA-512)",
        KAFKA_COMMAND,
    ),
    "redis-wrong-password": Mistake(
        {"REDIS_PASSWORD": WRONG_PASSWORD},
        "redis",
        "Redis at 127.0.0.1:6380",
        "authentication failed: the server refused REDIS_PASSWORD",
        REDIS_COMMAND,
    ),
    "redis-no-password": Mistake(
        {"REDIS_PASSWORD": ""},
        "redis",
        "Redis at 127.0.0.1:6380",
        "the server requires a password: set REDIS_PASSWORD",
        REDIS_COMMAND,
    ),
    "redis-wrong-ca": Mistake(
        {"REDIS_SSL_CA_FILE": OTHER_CA},
        "redis",
        "Redis at 127.0.0.1:6380",
        "TLS certificate could not be verified with the CA in REDIS_SSL_CA_FILE=",
        REDIS_COMMAND,
    ),
    "redis-plaintext-on-tls": Mistake(
        {"REDIS_SSL": "false", "REDIS_SSL_CA_FILE": ""},
        "redis",
        "Redis at 127.0.0.1:6380 plain",
        "the server closed the connection at once: the port probably expects TLS",
        REDIS_COMMAND,
    ),
    "postgres-host-not-in-certificate": Mistake(
        {"PG_WAREHOUSE_HOST": "127.0.0.2"},
        "postgres",
        "PostgreSQL at postgresql://dwh@127.0.0.2:5433/de?sslmode=verify-full",
        'server certificate for "localhost" (and 1 other name) does not match host name '
        '"127.0.0.2"',
        PG_COMMAND,
    ),
    "postgres-wrong-password": Mistake(
        {"PG_WAREHOUSE_PASSWORD": WRONG_PASSWORD},
        "postgres",
        "PostgreSQL at postgresql://dwh@127.0.0.1:5433/de",
        'password authentication failed for user "dwh"',
        PG_COMMAND,
    ),
    "postgres-wrong-ca": Mistake(
        {"PG_WAREHOUSE_SSLROOTCERT": OTHER_CA},
        "postgres",
        "PostgreSQL at postgresql://dwh@127.0.0.1:5433/de",
        "certificate verify failed",
        PG_COMMAND,
    ),
    "postgres-plaintext-on-tls": Mistake(
        {"PG_WAREHOUSE_SSLMODE": "disable", "PG_WAREHOUSE_SSLROOTCERT": ""},
        "postgres",
        "PostgreSQL at postgresql://dwh@127.0.0.1:5433/de?sslmode=disable",
        "pg_hba.conf rejects connection",
        PG_COMMAND,
    ),
}


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    return secure_env()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA certificate that signed none of the stack's."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.crt"),
         "-subj", "/CN=a CA of somebody else"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder / "ca.crt"


def mistaken(settings: dict[str, str], mistake: Mistake, other_ca: Path) -> dict[str, str]:
    """The settings with the mistake made; a variable set to "" is left out."""
    changed = {**settings, **mistake.overrides}
    return {
        name: str(other_ca) if value == OTHER_CA else value
        for name, value in changed.items()
        if value != ""
    }


def assert_no_secret(text: str, settings: dict[str, str]) -> None:
    for secret in [*secrets(settings), WRONG_PASSWORD]:
        assert secret not in text, "a password was printed"


@pytest.mark.parametrize("name", MISTAKES)
def test_dwh_says_in_one_line_which_service_refused_and_why(
    name: str, settings: dict[str, str], other_ca: Path
) -> None:
    mistake = MISTAKES[name]

    result = dwh_command(*mistake.argv, env=process_env(mistaken(settings, mistake, other_ca)))

    assert result.returncode == 1
    line = result.stderr
    assert line.count("\n") == 1, line
    assert line.startswith(f"dwh {mistake.argv[0]}"), line
    assert mistake.service in line, line
    assert mistake.cause in line, line
    assert "Traceback" not in line
    assert_no_secret(result.stdout + result.stderr, settings)


@frozen
class Started:
    worker: WorkerProcess
    port: int


@pytest.fixture(scope="module")
def warehouse(settings: dict[str, str]) -> Iterator[PgSettings]:
    with fresh_database(config.services(settings).postgres) as database:
        yield database


@pytest.fixture(scope="module")
def workers(
    settings: dict[str, str], other_ca: Path, warehouse: PgSettings
) -> Iterator[dict[str, Started]]:
    """A STG worker per mistake, all started at once (each waits seconds for its
    verdict), on a migrated database of their own; stopped with SIGTERM at the end, each
    must exit 0."""
    topology = Topology(dbname=warehouse.dbname)
    kafka = config.services(settings).kafka
    ensure_topics(kafka, topology.all_topics(), partitions=1)
    started: dict[str, Started] = {}
    try:
        for name, mistake in MISTAKES.items():
            port = free_port()
            base = process_env(mistaken(settings, mistake, other_ca))
            extra = {"DWH_HTTP_PORT": str(port), "DWH_INSTANCE_ID": f"{name}-{topology.suffix}"}
            started[name] = Started(start_worker(topology, "stg", extra, base_env=base), port)
        yield started
    finally:
        codes = {name: s.worker.terminate() for name, s in started.items()}
        delete_topics(kafka, topology.all_topics())
    assert all(code == 0 for code in codes.values()), codes


@pytest.mark.parametrize("name", MISTAKES)
def test_a_worker_is_not_ready_and_says_which_service_refused_and_why(
    name: str, workers: dict[str, Started], settings: dict[str, str]
) -> None:
    mistake, started = MISTAKES[name], workers[name]
    answer: list[str] = []

    def says_why() -> bool:
        code = started.worker.process.poll()
        assert code is None, f"the worker exited with {code}: {started.worker.log_path}"
        status, body = http_get(started.port, "/readyz")
        answer[:] = [f"{status} {body}"]
        return status == 503 and mistake.cause in body

    wait_for(says_why, DEADLINE_S, f"/readyz to name the cause (last: {answer})", 0.5)

    status_line, *reasons = answer[0].splitlines()
    assert status_line == "503 not ready"
    assert len(reasons) == 1 and reasons[0].startswith(f"{mistake.dependency}: "), reasons
    log = started.worker.log_path.read_text()
    warnings = [
        " ".join(map(str, record.values()))
        for record in map(json.loads, log.splitlines())
        if record["level"] == "warning"
    ]
    assert any(mistake.cause in warning for warning in warnings), warnings
    assert "Traceback" not in log
    metrics = http_get(started.port, "/metrics")[1]
    assert f'dependency="{mistake.dependency}"' in metrics
    assert_no_secret(log + answer[0] + metrics, settings)
