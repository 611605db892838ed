"""The whole pipeline on the secure stack (``scripts/stack up --secure``: Kafka SASL_SSL
with SCRAM-SHA-512, Redis with TLS and a password, PostgreSQL with TLS verify-full and
scram-sha-256), every process given nothing but the environment the Helm chart renders
for it (its ConfigMap, its Secret, its CA files mounted): the three workers as their
Deployments, and the ``dwh`` commands (migrate, dictionaries, status, marts, dead
letters, re-drive, replay) as the migration Job. The marts are exact, and no secret
shows in any output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dwh_adapters.kafka import KafkaSettings, consumer_group_lag, delete_topics, ensure_topics
from dwh_adapters.kafka import topic_message_count as message_count
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings
from dwh_workers import config
from dwh_workers.oracle import expected_marts
from dwh_workers.sample import OrderGenerator, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology
from tests.support.cli import dwh_command
from tests.support.databases import fresh_database
from tests.support.processes import produce, running, wait_for
from tests.support.secure import chart_envs, process_env, secrets, secure_env

pytestmark = pytest.mark.integration

SEED, USERS, RESTAURANTS = 31, 40, 6
DICTIONARIES = sample_dictionaries(seed=SEED, users=USERS, restaurants=RESTAURANTS)
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    return secure_env()


@pytest.fixture
def warehouse(settings: dict[str, str]) -> Iterator[PgSettings]:
    """A fresh database on the TLS-only server, created as the application user; empty:
    ``dwh migrate`` makes its schema."""
    with fresh_database(config.services(settings).postgres, migrated=False) as database:
        yield database


@pytest.fixture
def topology(settings: dict[str, str], warehouse: PgSettings) -> Iterator[Topology]:
    kafka = config.services(settings).kafka
    topology = Topology(dbname=warehouse.dbname)
    ensure_topics(kafka, topology.all_topics(), partitions=3)
    yield topology
    delete_topics(kafka, topology.all_topics())


class Outputs:
    """Every output of the test's processes, to search for secrets at the end."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def dwh(self, env: dict[str, str], *argv: str) -> str:
        """``dwh argv`` must exit 0; its standard output."""
        result = dwh_command(*argv, env=env)
        self.texts += [result.stdout, result.stderr]
        assert result.returncode == 0, f"dwh {' '.join(argv)}: {result.stderr}"
        return result.stdout


def user_of(message: bytes) -> str:
    return str(json.loads(message)["payload"]["user"]["id"])


def caught_up(kafka: KafkaSettings, topology: Topology, layer: str) -> bool:
    lag = consumer_group_lag(kafka, topology.group(layer), topology.topic(layer))
    return sum(lag.values()) == 0


def totals(products: dict[Any, int], categories: dict[Any, int]) -> dict[str, int]:
    return {
        "product_counters": len(products),
        "product_count_sum": sum(products.values()),
        "category_counters": len(categories),
        "category_count_sum": sum(categories.values()),
    }


def test_the_pipeline_on_tls_and_scram_is_exact_with_nothing_but_the_production_settings(
    settings: dict[str, str], warehouse: PgSettings, topology: Topology, tmp_path: Path
) -> None:
    kafka = config.services(settings).kafka
    rendered = chart_envs(settings, warehouse.dbname)
    # The chart's values reach the same services, the same way, as the stack's settings.
    assert config.services(rendered["migrate"]) == config.services(
        {**settings, "PG_WAREHOUSE_DBNAME": warehouse.dbname}
    )
    env = process_env(rendered["migrate"])
    workers_env = {layer: process_env(rendered[layer]) for layer in LAYER_NAMES}
    outputs = Outputs()
    good = list(OrderGenerator(DICTIONARIES, seed=5, update_share=0.3).messages(400))
    missing = DICTIONARIES.users[0]  # the user who orders most; loaded only later
    late = [message for message in good if user_of(message) == missing["_id"]]
    assert late, "the feed has orders of the user loaded late"
    first_load = tmp_path / "dictionaries.json"
    first_load.write_text(
        json.dumps({"users": DICTIONARIES.users[1:], "restaurants": DICTIONARIES.restaurants})
    )
    dlq = f"{topology.source}-dlq"
    expected_products, expected_categories = expected_marts(good, DICTIONARIES.restaurants)

    redis = config.services(settings).redis.client()
    redis.delete(missing["_id"])  # left by an earlier run
    assert "applied 0001_initial" in outputs.dwh(env, "migrate")
    outputs.dwh(env, "dictionaries", "load", "--file", str(first_load))
    produce(topology.source, [*good[:200], b"{not json", *good[200:]], kafka=kafka)

    with running(topology, base_env=workers_env) as workers:
        wait_for(lambda: message_count(kafka, dlq) == len(late) + 1, DEADLINE_S, "the dead letters")
        listed = outputs.dwh(env, "dead-letters", "list", "--topic", dlq)
        assert f"{len(late) + 1} dead letter(s)" in listed
        assert f"unknown user {missing['_id']}" in listed
        assert "not JSON" in listed

        status = outputs.dwh(env, "status", "--ports", "")
        assert "stg.order_events" in status

        outputs.dwh(env, "dictionaries", "load", "--seed", str(SEED), "--users", str(USERS),
                    "--restaurants", str(RESTAURANTS))  # fmt: skip
        redriven = outputs.dwh(
            env, "dead-letters", "redrive", "--topic", dlq, "--reason", "unknown user"
        )
        assert f"re-drove {len(late)} dead letter(s)" in redriven
        assert "1 left" in redriven

        with PostgresMarts(warehouse) as marts:
            wait_for(
                lambda: (
                    marts.product_counts() == expected_products
                    and marts.category_counts() == expected_categories
                ),
                DEADLINE_S,
                "the marts to equal the oracle",
                0.5,
            )
        logs = [w.log_path for ws in workers.values() for w in ws]

    shown = json.loads(outputs.dwh(env, "marts", "--totals", "--json"))
    assert {key: shown[key] for key in totals({}, {})} == totals(
        expected_products, expected_categories
    )
    assert missing["login"] in outputs.dwh(env, "marts", "--user", missing["login"])

    # A replay of every layer from the beginning changes nothing.
    for layer in LAYER_NAMES:
        replayed = outputs.dwh(
            env, "replay", "--layer", layer, "--group", topology.group(layer),
            "--topic", topology.topic(layer),
        )  # fmt: skip
        assert "back to the beginning" in replayed
        # the group really went back: all of its topic is to be read again
        assert not caught_up(kafka, topology, layer), f"{layer}: the replay moved nothing"
    with running(topology, base_env=workers_env) as workers:
        for layer in LAYER_NAMES:  # in order: a layer's output is complete once it caught up
            wait_for(partial(caught_up, kafka, topology, layer), DEADLINE_S, f"{layer} replayed")
        logs += [w.log_path for ws in workers.values() for w in ws]
    with PostgresMarts(warehouse) as marts:
        assert marts.product_counts() == expected_products
        assert marts.category_counts() == expected_categories

    texts = outputs.texts + [path.read_text(errors="replace") for path in logs]
    assert all(texts[-len(logs):]), "every worker logged"  # fmt: skip
    for secret in secrets(settings):
        assert not any(secret in text for text in texts), "a password was printed"
