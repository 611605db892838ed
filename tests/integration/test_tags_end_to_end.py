"""User tags through the real workers (docs/TAGS.md): with the CDM and DDS workers killed
with SIGKILL mid-backlog and started again, ``cdm.user_tags`` and every transition in
``cdm.user_tag_events`` equal those of the in-process pipeline on the same feed; the
tags topic carries each of them, none lost and, per user and tag, none out of order
(replays dropped by ``(user_id, tag_id, sequence)``); and a recount from scratch finds
no difference.

The order feed goes through a topic of one partition, so that every layer sees each
user's versions in the order the feed sent them, as the in-process pipeline does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not re-exported in the stubs
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from dwh_adapters.kafka import KafkaBatchConsumer, ensure_topics
from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tag_store import tag_differences
from dwh_core.tag_rules import parse_rules
from dwh_core.tags import AppliedRule, RuleIndex, TagEvent
from dwh_workers.in_process import InMemoryPipeline
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import Topology
from tests.support.cli import dwh_command
from tests.support.databases import fresh_database
from tests.support.processes import (
    KAFKA,
    produce,
    provisioned,
    running,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
DICTIONARIES = sample_dictionaries(seed=21, users=30, restaurants=8)
ORDERS = 2400
RULES = """
[[tag]]
id = "pizza_fan"
name = "Любитель пиццы"
category = "Пицца"
at_least = 3

[[tag]]
id = "soup_fan"
name = "Любитель супов"
category = "Супы"
at_least = 4

[[tag]]
id = "drinks_fan"
name = "Любитель напитков"
category = "Напитки"
at_least = 6
"""
Event = tuple[str, str, int, str, str, int]  # user, tag, sequence, event, at, order count


@pytest.fixture
def warehouse() -> Iterator[PgSettings]:
    with fresh_database(BASE) as settings:
        yield settings


@pytest.fixture
def topology(warehouse: PgSettings) -> Iterator[Topology]:
    topology = Topology(dbname=warehouse.dbname)
    ensure_topics(KAFKA, [topology.source], partitions=1)
    with provisioned(topology, dictionary_entries(DICTIONARIES)) as provisioned_topology:
        yield provisioned_topology


def expected(feed: list[bytes]) -> tuple[list[Event], set[tuple[str, str, int]]]:
    """The transitions and members of the in-process pipeline on the same feed."""
    pipeline = InMemoryPipeline(
        InMemoryDictionaries(dictionary_entries(DICTIONARIES)), FixedClock(datetime(2023, 4, 1))
    )
    pipeline.counters.rules = RuleIndex(
        (AppliedRule(rule) for rule in parse_rules(RULES).rules), version=1
    )
    pipeline.feed(feed)
    pipeline.run()
    members = {(s.user_id, s.tag_id, s.order_cnt) for s in pipeline.counters.tag_members().values()}
    return [_event(e) for e in pipeline.counters.tag_events()], members


def _event(event: TagEvent) -> Event:
    return (
        event.user_id,
        event.tag_id,
        event.sequence,
        event.event,
        event.at.isoformat(sep=" "),
        event.order_cnt,
    )


def stored(conn: psycopg.Connection) -> list[Event]:
    rows = conn.execute(
        "SELECT user_source_id, tag_id, sequence, event, at, order_cnt"
        " FROM cdm.user_tag_events ORDER BY event_id"
    ).fetchall()
    return [(u, t, q, e, a.isoformat(sep=" "), c) for u, t, q, e, a, c in rows]


def by_user_and_tag(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    grouped: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        grouped.setdefault((event[0], event[1]), []).append(event)
    return grouped


def count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def ledger_rows(conn: psycopg.Connection) -> int:
    return count(conn, "SELECT count(*) FROM cdm.order_contributions")


def waiting(conn: psycopg.Connection) -> int:
    return count(conn, "SELECT count(*) FROM cdm.user_tag_events WHERE NOT published")


def all_published(conn: psycopg.Connection) -> bool:
    return waiting(conn) == 0


def reached(conn: psycopg.Connection, rows: int) -> bool:
    return ledger_rows(conn) >= rows


def test_tags_are_exact_and_delivered_in_order_across_sigkills(
    warehouse: PgSettings, topology: Topology, tmp_path: Path
) -> None:
    feed = list(
        OrderGenerator(DICTIONARIES, seed=5, cancelled_share=0.1, update_share=0.5).messages(ORDERS)
    )
    want_events, want_members = expected(feed)
    assert len(want_events) > 40 and any(e[3] == "exited" for e in want_events)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    env = {"DWH_TAG_RULES": str(rules), "DWH_BATCH_SIZE": "200"}
    with connect(warehouse, autocommit=True) as conn:
        with running(topology, extra_env=env) as workers:
            produce(topology.source, feed)
            at_kills = []
            for kill_at in (ORDERS // 5, ORDERS // 3, ORDERS // 2):
                wait_for(partial(reached, conn, kill_at), 120, f"{kill_at} orders in CDM")
                workers["cdm"][0].kill()
                at_kills.append(ledger_rows(conn))
                if kill_at == ORDERS // 3:
                    workers["dds"][0].kill()
                    workers["dds"][0] = start_worker(topology, "dds", env)
                workers["cdm"][0] = start_worker(topology, "cdm", env)
            wait_for(lambda: len(stored(conn)) >= len(want_events), 180, "every transition")
            wait_for(
                partial(all_published, conn),
                60,
                "every transition published",
            )
        assert min(at_kills) < ledger_rows(conn), "a kill came before the backlog was done"
        # Each user's transitions in each tag, in order (users interleave differently:
        # the layers' topics have three partitions).
        assert by_user_and_tag(stored(conn)) == by_user_and_tag(want_events)
        members = set(
            conn.execute("SELECT user_source_id, tag_id, order_cnt FROM cdm.user_tags").fetchall()
        )
        assert members == want_members
        assert tag_differences(conn)[1] == []

    published: list[Event] = []
    with KafkaBatchConsumer(
        KAFKA, f"reader-{topology.suffix}", topology.tags_topic, 5000, 0.2
    ) as reader:
        deadline_events = {(e[0], e[1], e[2]) for e in want_events}
        seen: set[tuple[str, str, int]] = set()

        def read_more() -> bool:
            for message in reader.consume():
                value = orjson.loads(message.value or b"{}")
                assert message.key == value["user_id"].encode()
                event = (
                    value["user_id"],
                    value["tag_id"],
                    value["sequence"],
                    value["event"],
                    value["at"],
                )
                published.append((*event, 0))
                seen.add(event[:3])
            return seen >= deadline_events

        wait_for(read_more, 60, "every transition on the tags topic")
    # Per user and tag: every sequence number, in order once replays are dropped.
    for key, events in by_user_and_tag(published).items():
        first_seen: list[int] = []
        for event in events:
            if event[2] not in first_seen:
                first_seen.append(event[2])
        assert first_seen == list(range(1, len(first_seen) + 1)), key
    want = {(e[0], e[1], e[2], e[3], e[4]) for e in want_events}
    assert {e[:5] for e in published} == want


def test_a_rule_change_applied_while_the_workers_run_is_used_from_the_next_batch(
    warehouse: PgSettings, topology: Topology, tmp_path: Path
) -> None:
    feed = list(OrderGenerator(DICTIONARIES, seed=6, update_share=0.3).messages(ORDERS // 2))
    half = len(feed) // 2
    first = {orjson.loads(m)["object_id"] for m in feed[:half]}
    every = {orjson.loads(m)["object_id"] for m in feed}
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    env = {"DWH_TAG_RULES": str(rules)}
    with connect(warehouse, autocommit=True) as conn:
        with running(topology, extra_env=env):
            produce(topology.source, feed[:half])
            wait_for(partial(reached, conn, len(first)), 120, "the first half in CDM")
            changed = tmp_path / "changed.toml"
            changed.write_text(RULES.replace("at_least = 3", "at_least = 2"), encoding="utf-8")
            applied = dwh_command(
                "tags", "apply", "--rules", str(changed), "--topic", topology.tags_topic,
                env=topology.env("cdm"),
            )  # fmt: skip
            assert applied.returncode == 0, applied.stderr
            assert "applied ruleset version 2" in applied.stdout
            assert "changed   pizza_fan" in applied.stdout
            produce(topology.source, feed[half:])
            wait_for(partial(reached, conn, len(every)), 120, "the second half in CDM")
            # The worker's next batches used the new threshold: transitions of version
            # 2 dated by their orders (the rule change's own are dated now).
            by_orders = count(
                conn,
                "SELECT count(*) FROM cdm.user_tag_events WHERE ruleset_version = 2"
                " AND tag_id = 'pizza_fan' AND at < '2024-01-01'",
            )
            assert by_orders > 0
            wait_for(
                partial(all_published, conn),
                60,
                "every transition published",
            )
        assert tag_differences(conn)[1] == []
        members = conn.execute(
            "SELECT count(*) FROM cdm.user_tags m JOIN cdm.user_tag_counters c USING (user_id, tag_id)"
            " WHERE m.tag_id = 'pizza_fan' AND c.order_cnt < 2"
        ).fetchone()
        assert members == (0,)


def set_max_message_bytes(topic: str, limit: int) -> None:
    entry = ConfigEntry(
        "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": KAFKA.bootstrap_servers})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_a_tags_topic_that_cannot_take_the_events_delays_them_but_not_the_marts(
    warehouse: PgSettings, topology: Topology, tmp_path: Path
) -> None:
    feed = list(OrderGenerator(DICTIONARIES, seed=8).messages(ORDERS // 3))
    orders = {orjson.loads(m)["object_id"] for m in feed}
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    env = {"DWH_TAG_RULES": str(rules)}
    set_max_message_bytes(topology.tags_topic, 64)  # smaller than any event
    with connect(warehouse, autocommit=True) as conn:
        with running(topology, extra_env=env) as workers:
            produce(topology.source, feed)
            wait_for(partial(reached, conn, len(orders)), 120, "every order in CDM")
            assert waiting(conn) > 0, "the transitions wait in the warehouse"
            log = workers["cdm"][0].log_path
            wait_for(
                lambda: "tag transitions not delivered" in log.read_text(encoding="utf-8"),
                60,
                "the CDM worker to say the transitions wait",
            )
            set_max_message_bytes(topology.tags_topic, 1_048_588)
            wait_for(
                partial(all_published, conn),
                120,
                "the waiting transitions to be delivered once the topic takes them",
            )
        assert tag_differences(conn)[1] == []
