"""Running a worker: configuration errors, schema checks, probes and metrics, and
dependencies that go away and come back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dwh_adapters.kafka import KafkaSettings
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_workers.oracle import expected_marts
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology
from tests.support.broker import PrivateBroker, private_broker
from tests.support.databases import fresh_database
from tests.support.processes import (
    free_port,
    http_get,
    metric_total,
    produce,
    provisioned,
    running,
    wait_for,
)
from tests.support.proxy import CuttableProxy

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=12, users=80, restaurants=8)


def run_worker(layer: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"dwh_workers.{layer}"],
        env={**os.environ, "DWH_HTTP_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DWH_BATCH_SIZE": "many"}, "DWH_BATCH_SIZE='many' is not an integer"),
        ({"KAFKA_PORT": "99999"}, "KAFKA_PORT=99999 is out of range (1..65535)"),
        ({"PG_WAREHOUSE_SSLMODE": "sometimes"}, "PG_WAREHOUSE_SSLMODE='sometimes' must be one of"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_CONSUMER_USERNAME",
        ),
        ({"REDIS_SSL_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_SSL_CA_FILE='/nonexistent/ca.pem'"),
    ],
)
def test_an_invalid_setting_stops_the_worker_with_one_line_naming_it(
    env: dict[str, str], message: str
) -> None:
    result = run_worker("stg", **env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dwh-stg: configuration error: ")
    assert message in line


def test_a_worker_refuses_a_schema_that_is_behind_and_says_what_to_run() -> None:
    with fresh_database(BASE) as settings:
        with connect(settings, autocommit=True) as connection:
            connection.execute("DROP TABLE public.dwh_schema_migrations")
        result = run_worker("dds", PG_WAREHOUSE_DBNAME=settings.dbname, DWH_LOG_FORMAT="json")
    assert result.returncode == 3
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert last["level"] == "error"
    assert "run 'dwh migrate'" in last["msg"]


def test_a_malformed_rules_file_stops_the_cdm_worker_naming_each_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[tag]]\nid = "Pizza"\nname = "Пицца"\ncategory = "Пицца"\nat_least = -1\n',
        encoding="utf-8",
    )
    with fresh_database(BASE) as settings:
        result = run_worker(
            "cdm",
            PG_WAREHOUSE_DBNAME=settings.dbname,
            DWH_LOG_FORMAT="json",
            DWH_TAG_RULES=str(rules),
        )
    assert result.returncode == 2
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert last["level"] == "error"
    assert f"{rules}:2: tag #1: id" in last["msg"]
    assert f"{rules}:5: " in last["msg"] and "at_least" in last["msg"]


@pytest.fixture
def topology() -> Iterator[Topology]:
    with (
        fresh_database(BASE) as settings,
        provisioned(Topology(dbname=settings.dbname), dictionary_entries(DICTIONARIES)) as t,
    ):
        yield t


def test_postgresql_and_redis_going_away_and_coming_back_lose_nothing(topology: Topology) -> None:
    settings = PgSettings("127.0.0.1", 5432, topology.dbname or "", "dwh", "dwh")
    orders = list(OrderGenerator(DICTIONARIES, seed=31).messages(3000))
    products, categories = expected_marts(orders, DICTIONARIES.restaurants)
    ports = {layer: free_port() for layer in LAYER_NAMES}

    def marts_exact() -> bool:
        with PostgresMarts(settings) as marts:
            return marts.product_counts() == products and marts.category_counts() == categories

    with (
        CuttableProxy(("127.0.0.1", 5432)) as postgres,
        CuttableProxy(("127.0.0.1", 6379)) as redis,
    ):
        env = {"PG_WAREHOUSE_PORT": str(postgres.port), "REDIS_PORT": str(redis.port)}
        with running(topology, extra_env=env, http_ports=ports):
            wait_for(
                lambda: all(http_get(p, "/readyz")[0] == 200 for p in ports.values()),
                60,
                "every worker to be ready",
            )
            produce(topology.source, orders[:1000])
            wait_for(
                lambda: metric_total(ports["cdm"], "dwh_messages_in_total") > 0,
                60,
                "CDM to process its first batch",
            )

            postgres.cut()
            redis.cut()
            produce(topology.source, orders[1000:])
            wait_for(
                lambda: http_get(ports["stg"], "/readyz")[0] == 503,
                60,
                "STG to report not-ready while its dependencies are down",
            )
            assert http_get(ports["stg"], "/healthz")[0] == 200
            postgres.restore()
            redis.restore()

            wait_for(marts_exact, 180, "the marts to equal the oracle after the outage")
            assert metric_total(ports["stg"], "dwh_dependency_errors_total") > 0
            assert metric_total(ports["stg"], "dwh_messages_in_total") >= len(orders)
            assert metric_total(ports["stg"], "dwh_last_processed_timestamp_seconds") > 0
            stg_metrics = http_get(ports["stg"], "/metrics")[1]
            assert "dwh_batch_duration_seconds_bucket" in stg_metrics
            assert "dwh_consumer_lag{" in stg_metrics
            wait_for(lambda: http_get(ports["stg"], "/readyz")[0] == 200, 60, "STG ready again")


def test_a_worker_waiting_for_postgresql_is_alive_not_ready_and_stops_cleanly() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dwh_workers.cdm"],
        env={**os.environ, "PG_WAREHOUSE_PORT": "1", "DWH_HTTP_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, 30, "the worker to answer")
        assert http_get(port, "/readyz")[0] == 503
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert "waiting for PostgreSQL" in stderr


def test_the_kafka_broker_restarting_under_the_workers_loses_nothing(tmp_path: Path) -> None:
    orders = list(OrderGenerator(DICTIONARIES, seed=32).messages(3000))
    with fresh_database(BASE) as settings, private_broker(tmp_path) as broker:
        kafka = KafkaSettings(broker.bootstrap)
        entries = dictionary_entries(DICTIONARIES)
        with provisioned(Topology(dbname=settings.dbname), entries, kafka) as topology:
            run_through_a_broker_restart(topology, broker, kafka, settings, orders)


def run_through_a_broker_restart(
    topology: Topology,
    broker: PrivateBroker,
    kafka: KafkaSettings,
    settings: PgSettings,
    orders: list[bytes],
) -> None:
    products, categories = expected_marts(orders, DICTIONARIES.restaurants)

    def marts_exact() -> bool:
        with PostgresMarts(settings) as marts:
            return marts.product_counts() == products and marts.category_counts() == categories

    def rows(table: str) -> int:
        with PostgresMarts(settings) as marts:
            return marts.row_counts()[table]

    env = {"KAFKA_HOST": "127.0.0.1", "KAFKA_PORT": str(broker.port), "DWH_BATCH_SIZE": "200"}
    with running(topology, extra_env=env):
        produce(topology.source, orders[:1500], kafka=kafka)
        wait_for(lambda: rows("cdm.order_contributions") > 0, 120, "CDM to store orders")
        broker.stop()
        broker.start()
        produce(topology.source, orders[1500:], kafka=kafka)
        wait_for(marts_exact, 240, "the marts to equal the oracle after the broker restart")
