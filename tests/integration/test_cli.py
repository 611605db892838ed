"""The ``dwh`` command against the real stack: one test (or a few) per subcommand, and
the quickstart end to end.

Tests use unique topics, consumer groups, users and categories, so they neither see nor
disturb each other's data; the warehouse tables are shared with other modules, which
empty them, so a test that reads the marts puts its own orders there first.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from dwh_adapters.kafka import (
    KafkaBatchConsumer,
    KafkaPublisher,
    KafkaSettings,
    consumer_group_lag,
    delete_topics,
    ensure_topics,
    topic_message_count,
    wait_for_broker,
)
from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.settings import connect
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_adapters.redis import RedisDictionaryReader, RedisDictionaryWriter
from dwh_core.messages import OutMessage
from dwh_core.parsing import parse_order
from dwh_workers import config
from dwh_workers.feed import Feed
from dwh_workers.in_process import Pipeline
from dwh_workers.sample import Dictionaries, dictionary_entries, sample_dictionaries
from dwh_workers.topology import Topology
from tests.support.builders import order, restaurant, to_bytes
from tests.support.cli import dwh, dwh_command
from tests.support.databases import fresh_database
from tests.support.processes import running, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEADLINE_S = 60.0


def unique(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:10]}"


def dwh_process(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dwh`` as a subprocess, with ``env`` added to the environment."""
    return dwh_command(*argv, env={**os.environ, **env})


@pytest.fixture(scope="module")
def services() -> config.Services:
    services = config.services()
    wait_for_broker(services.kafka, timeout=60)
    return services


@pytest.fixture
def new_topic(services: config.Services) -> Iterator[Callable[[int], str]]:
    """Makes unique topics with the given number of partitions; deletes them after."""
    made: list[str] = []

    def make(partitions: int) -> str:
        topic = unique("topic")
        ensure_topics(services.kafka, [topic], partitions=partitions)
        made.append(topic)
        return topic

    yield make
    delete_topics(services.kafka, made)


def read_values(kafka: KafkaSettings, topic: str) -> list[bytes]:
    """Every value in the topic, in offset order per partition (partitions in turn)."""
    expected = topic_message_count(kafka, topic)
    read: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + DEADLINE_S
    with KafkaBatchConsumer(kafka, unique("reader"), topic, 1000, 0.2) as consumer:
        while len(read) < expected:
            assert time.monotonic() < deadline, f"read {len(read)} of {expected} from {topic}"
            read += [(m.partition, m.offset, m.value or b"") for m in consumer.consume()]
    return [value for _, _, value in sorted(read)]


# --- migrate ------------------------------------------------------------------------------


def test_migrate_applies_nothing_the_second_time(capsys: pytest.CaptureFixture[str]) -> None:
    dwh(capsys, "migrate")

    code, out, _ = dwh(capsys, "migrate")

    assert code == 0
    assert out.strip() == "schema is up to date"


# --- dictionaries load ----------------------------------------------------------------------


def test_dictionaries_load_puts_the_sample_into_redis(
    capsys: pytest.CaptureFixture[str], services: config.Services
) -> None:
    code, out, _ = dwh(capsys, "dictionaries", "load")

    assert code == 0
    assert "loaded 400 users and 30 restaurants" in out
    expected = dictionary_entries(sample_dictionaries())
    with RedisDictionaryReader(services.redis) as reader:
        assert reader.fetch(list(expected)) == expected


def test_dictionaries_load_reads_a_file_and_stores_each_entry_under_its_id(
    capsys: pytest.CaptureFixture[str], services: config.Services, tmp_path: Path
) -> None:
    user_id, restaurant_id = uuid.uuid4().hex[:24], uuid.uuid4().hex[:24]
    user = {
        "_id": user_id,
        "name": "Тестова Анна",
        "login": "testova_a",
        "update_ts_utc": "2023-04-01 00:00:00",
    }
    place = {
        "_id": restaurant_id,
        "name": 'Кафе "Тест"; №1',
        "menu": [{"_id": uuid.uuid4().hex[:24], "name": "Суп", "price": 200, "category": "Супы"}],
        "update_ts_utc": "2023-04-01 00:00:00",
    }
    file = tmp_path / "dictionaries.json"
    document = {"users": [user], "restaurants": [place]}
    file.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")

    code, out, _ = dwh(capsys, "dictionaries", "load", "--file", str(file))

    assert code == 0
    assert f"loaded 1 users and 1 restaurants from {file}" in out
    with RedisDictionaryReader(services.redis) as reader:
        stored = reader.fetch([user_id, restaurant_id])
    assert json.loads(stored[user_id]) == user
    assert json.loads(stored[restaurant_id]) == place
    services.redis.client().delete(user_id, restaurant_id)


# --- orders generate ------------------------------------------------------------------------


def test_orders_generate_produces_strictly_parseable_orders_of_the_feed(
    capsys: pytest.CaptureFixture[str], services: config.Services, new_topic: Callable[[int], str]
) -> None:
    topic = new_topic(3)

    code, out, _ = dwh(capsys, "orders", "generate", "-n", "300", "--topic", topic, "--seed", "11")

    assert code == 0
    values = read_values(services.kafka, topic)
    assert f"produced {len(values):,} messages to {topic}" in out
    orders = [parse_order(value) for value in values]
    assert len({o.object_id for o in orders}) == 300
    assert len(values) >= 300


def test_orders_generate_with_a_seed_is_byte_for_byte_repeatable(
    capsys: pytest.CaptureFixture[str], services: config.Services, new_topic: Callable[[int], str]
) -> None:
    first, second = new_topic(1), new_topic(1)

    for topic in (first, second):
        dwh(capsys, "orders", "generate", "-n", "200", "--topic", topic, "--seed", "5")

    values = read_values(services.kafka, first)
    assert values == read_values(services.kafka, second)
    feed = Feed(
        orders=200,
        seed=5,
        dictionary_seed=7,
        cancelled_share=0.1,
        update_share=0.2,
        duplicate_share=0.05,
    )
    assert values == list(feed.messages())


def test_a_live_feed_after_a_backlog_sends_rate_times_duration_messages_of_new_orders(
    capsys: pytest.CaptureFixture[str], services: config.Services, new_topic: Callable[[int], str]
) -> None:
    backlog, live = new_topic(1), new_topic(1)
    dwh(capsys, "orders", "generate", "-n", "100", "--topic", backlog)

    started = time.monotonic()
    code, out, _ = dwh(
        capsys,
        "orders",
        "generate",
        "--rate",
        "40",
        "--duration",
        "0.5",
        "--after",
        "100",
        "--topic",
        live,
    )

    assert code == 0
    assert time.monotonic() - started >= 0.4
    assert "produced 20 messages" in out
    backlog_ids = {parse_order(value).object_id for value in read_values(services.kafka, backlog)}
    live_ids = {parse_order(value).object_id for value in read_values(services.kafka, live)}
    assert min(live_ids) > max(backlog_ids)


# --- status ---------------------------------------------------------------------------------


def test_status_shows_the_three_layers_and_the_rows_of_every_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = dwh(capsys, "status")

    assert code == 0
    layers = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line[:4] in {"stg ", "dds ", "cdm "}
    }
    assert set(layers) == {"stg", "dds", "cdm"}
    assert [layers[name][-1] for name in ("stg", "dds", "cdm")] == [
        "stg-service",
        "dds-service",
        "cdm-service",
    ]
    assert all(layers[name][2] in {"ready", "not", "down"} for name in layers)
    for table in (
        "stg.order_events",
        "dds.h_order",
        "dds.s_order_status",
        "cdm.user_product_counters",
    ):
        assert re.search(rf"^{re.escape(table)}\s+[\d,]+$", out, re.MULTILINE), table


# --- marts ----------------------------------------------------------------------------------


def put_through_the_layers(
    services: config.Services, dictionaries: Dictionaries, messages: list[bytes]
) -> None:
    """Run the three layer services over the messages, on the PostgreSQL stores."""
    postgres = services.postgres
    with (
        PostgresRawEventStore(postgres) as events,
        PostgresVaultStore(postgres) as vault,
        PostgresCounterStore(postgres) as counters,
    ):
        dictionary = InMemoryDictionaries(dictionary_entries(dictionaries))
        pipeline = Pipeline(dictionary, events, vault, counters, FixedClock(datetime(2023, 4, 2)))
        pipeline.feed(messages)
        pipeline.run(iter([len(messages) or 1] * 3))
    assert not pipeline.dead_letters.letters


def new_user(login: str) -> dict[str, Any]:
    return {
        "_id": uuid.uuid4().hex[:24],
        "name": f"Проверкина Ольга ({login})",
        "login": login,
        "update_ts_utc": "2023-04-01 00:00:00",
    }


def new_order_id() -> int:
    return random.randrange(1_500_000_000, 2_100_000_000)


@pytest.fixture
def user_with_orders(services: config.Services) -> tuple[dict[str, Any], str]:
    """A new user with three CLOSED orders and one CANCELLED in the marts, at a new
    restaurant whose menu has a category of its own; (the user, the category)."""
    suffix = uuid.uuid4().hex[:8]
    category = f"Проверочные-{suffix}"
    user = new_user(f"proverkina_{suffix}")
    place = restaurant(
        random.randrange(1, 2**31),
        [
            ("Суп «Проверочный»", category, 300),
            ('Пирог "Контрольный"', category, 200),
            ("Чай", "Напитки", 90),
        ],
    )
    messages = [
        to_bytes(order(new_order_id(), user["_id"], place, items, status, 600))
        for items, status in (
            ([0, 2], "CLOSED"),
            ([0], "CLOSED"),
            ([1, 0], "CLOSED"),
            ([1], "CANCELLED"),
        )
    ]
    put_through_the_layers(services, Dictionaries(users=[user], restaurants=[place]), messages)
    return user, category


def test_marts_of_a_user_by_login_show_names_and_counts(
    capsys: pytest.CaptureFixture[str], user_with_orders: tuple[dict[str, Any], str]
) -> None:
    user, category = user_with_orders

    code, out, _ = dwh(capsys, "marts", "--user", user["login"])

    assert code == 0
    assert out.splitlines() == [
        f"user {user['name']} ({user['login']}, {user['_id']})",
        "  products:",
        "        3  Суп «Проверочный»",
        '        1  Пирог "Контрольный"',
        "        1  Чай",
        "  categories:",
        f"        3  {category}",
        "        1  Напитки",
    ]
    assert not UUID.search(out)


def test_marts_of_a_user_by_id_are_the_same_as_by_login(
    capsys: pytest.CaptureFixture[str], user_with_orders: tuple[dict[str, Any], str]
) -> None:
    user, _ = user_with_orders

    by_id = dwh(capsys, "marts", "--user", user["_id"], "--top", "2")
    by_login = dwh(capsys, "marts", "--user", user["login"], "--top", "2")

    assert by_id == by_login
    assert by_id[1].count("\n    ") == 4


def test_marts_of_a_category_rank_its_users_by_name(
    capsys: pytest.CaptureFixture[str], user_with_orders: tuple[dict[str, Any], str]
) -> None:
    user, category = user_with_orders

    code, out, _ = dwh(capsys, "marts", "--category", category)

    assert code == 0
    assert out.splitlines() == [
        f"top users of {category}:",
        f"      3  {user['name']} ({user['login']})",
    ]


def test_marts_of_an_unknown_user_is_an_error_of_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = dwh(capsys, "marts", "--user", "nobody_at_all_" + uuid.uuid4().hex[:6])

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "no user with the id or login" in err


def test_marts_totals_count_orders_and_counters(
    capsys: pytest.CaptureFixture[str], user_with_orders: tuple[dict[str, Any], str]
) -> None:
    code, out, _ = dwh(capsys, "marts", "--totals", "--json")

    assert code == 0
    totals = json.loads(out)
    assert totals["orders"] >= 4
    assert totals["counted_orders"] >= 3
    assert totals["category_count_sum"] >= 4


# --- dead letters and redrive ----------------------------------------------------------------


@pytest.fixture
def topology(services: config.Services) -> Iterator[Topology]:
    topology = Topology()
    ensure_topics(services.kafka, topology.all_topics(), partitions=1)
    yield topology
    delete_topics(services.kafka, topology.all_topics())


def test_dead_letters_are_listed_with_reasons_and_a_redrive_brings_the_order_to_the_marts(
    capsys: pytest.CaptureFixture[str], services: config.Services, topology: Topology
) -> None:
    dwh(capsys, "dictionaries", "load")
    place = sample_dictionaries().restaurants[0]
    user = new_user(f"pozdnyakova_{topology.suffix}")
    order_message = to_bytes(order(new_order_id(), user["_id"], place, [0, 1], "CLOSED", 600))
    dlq = f"{topology.source}-dlq"
    with KafkaPublisher(services.kafka, topology.source) as publisher:
        publisher.publish([OutMessage(None, b"{not json"), OutMessage(None, order_message)])

    with running(topology):
        wait_for(
            lambda: topic_message_count(services.kafka, dlq) == 2, DEADLINE_S, "two dead letters"
        )

        code, out, _ = dwh(capsys, "dead-letters", "list", "--topic", dlq)
        assert code == 0
        assert "2 dead letter(s)" in out
        assert f"unknown user {user['_id']}" in out
        assert f"from={topology.source}:0:0" in out
        assert out.count("stage=stg") == 2

        with RedisDictionaryWriter(services.redis) as writer:
            writer.put_many(dictionary_entries(Dictionaries(users=[user], restaurants=[])))
        code, out, _ = dwh(
            capsys, "dead-letters", "redrive", "--topic", dlq, "--reason", "unknown user"
        )
        assert code == 0
        assert "re-drove 1 dead letter(s)" in out
        assert "1 left" in out

        with PostgresMarts(services.postgres) as marts:
            wait_for(
                lambda: bool(marts.user_products(user["_id"])), DEADLINE_S, "the order in the marts"
            )

    code, out, _ = dwh(capsys, "marts", "--user", user["login"])
    assert code == 0
    for item in place["menu"][:2]:
        assert f"1  {item['name']}" in out
    code, out, _ = dwh(capsys, "dead-letters", "list", "--topic", dlq)
    assert "1 dead letter(s)" in out
    services.redis.client().delete(user["_id"])


# --- replay ---------------------------------------------------------------------------------


def test_replay_moves_a_stopped_group_back_to_the_beginning(
    capsys: pytest.CaptureFixture[str], services: config.Services, new_topic: Callable[[int], str]
) -> None:
    topic, group = new_topic(3), unique("group")
    dwh(capsys, "orders", "generate", "-n", "50", "--topic", topic)
    messages = topic_message_count(services.kafka, topic)
    with KafkaBatchConsumer(services.kafka, group, topic, 1000, 0.2) as consumer:
        read = 0
        while read < messages:
            batch = consumer.consume()
            consumer.commit(batch)
            read += len(batch)
    assert sum(consumer_group_lag(services.kafka, group, topic).values()) == 0

    code, out, _ = dwh(capsys, "replay", "--layer", "stg", "--group", group, "--topic", topic)

    assert code == 0
    assert (
        f"{group}: back to the beginning of {topic} (3 partition(s), {messages:,} messages" in out
    )
    assert sum(consumer_group_lag(services.kafka, group, topic).values()) == messages


def test_replay_refuses_while_a_worker_is_in_the_group(
    capsys: pytest.CaptureFixture[str], services: config.Services, new_topic: Callable[[int], str]
) -> None:
    topic, group = new_topic(1), unique("group")
    with KafkaBatchConsumer(services.kafka, group, topic, 100, 0.2) as member:
        wait_for(
            lambda: bool(member.consume() or member.assignment), DEADLINE_S, "joining the group"
        )

        code, _, err = dwh(capsys, "replay", "--layer", "dds", "--group", group, "--topic", topic)

    assert code == 1
    assert err.strip() == (
        f"dwh replay: error: workers are running in {group} (1 member(s)): "
        "stop them first (scripts/pipeline stop)"
    )


# --- demo -----------------------------------------------------------------------------------


def test_demo_in_memory_runs_the_pipeline_with_no_dead_letters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = dwh(capsys, "demo", "--in-memory", "-n", "500")

    assert code == 0
    assert "in-memory pipeline: 500 orders" in out
    assert "dead letters: 0" in out


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["migrate"], {"PG_WAREHOUSE_PORT": "1"}, "PostgreSQL at postgresql://"),
        (["marts", "--totals"], {"PG_WAREHOUSE_PORT": "1"}, "PostgreSQL at postgresql://"),
        (["dictionaries", "load"], {"REDIS_PORT": "1"}, "Redis at 127.0.0.1:1"),
        (["status"], {"KAFKA_HOST": "127.0.0.1", "KAFKA_PORT": "1"}, "Kafka at 127.0.0.1:1"),
        (
            ["orders", "generate", "-n", "1"],
            {"KAFKA_HOST": "127.0.0.1", "KAFKA_PORT": "1"},
            "Kafka at 127.0.0.1:1",
        ),
        (["migrate"], {"PG_WAREHOUSE_PORT": "many"}, "PG_WAREHOUSE_PORT='many' is not an integer"),
    ],
    ids=[
        "migrate-pg",
        "marts-pg",
        "dictionaries-redis",
        "status-kafka",
        "orders-kafka",
        "bad-setting",
    ],
)
def test_an_unreachable_service_is_one_line_naming_it_and_no_traceback(
    argv: list[str], env: dict[str, str], names: str
) -> None:
    started = time.monotonic()

    result = dwh_process(*argv, **env)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"dwh {' '.join(argv[:2]) if argv[0] in {'dictionaries', 'orders'} else argv[0]}: error: "
    )
    assert names in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15


def test_debug_shows_the_traceback() -> None:
    result = dwh_process("migrate", "--debug", PG_WAREHOUSE_PORT="1")

    assert result.returncode == 1
    assert "Traceback" in result.stderr


# --- the quickstart -------------------------------------------------------------------------


def user_blocks(summary: str) -> dict[str, str]:
    """The users' marts in a summary, by login: each block from ``user ...`` to a blank line."""
    blocks = [block for block in summary.split("\n\n") if block.startswith("user ")]
    return {re.match(r"user .* \((\S+), ", block)[1]: block.rstrip("\n") for block in blocks}  # type: ignore[index]


def quickstart() -> str:
    result = subprocess.run(
        [
            str(ROOT / "scripts" / "quickstart"),
            "--orders",
            "2000",
            "--live-seconds",
            "3",
            "--rate",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_quickstart_runs_to_the_end_its_summary_matches_the_marts_and_a_rerun_adds_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        first = quickstart()
        second = quickstart()
        blocks = user_blocks(second)
        shown = {
            login: dwh(capsys, "marts", "--user", login, "--top", "5")[1].rstrip("\n")
            for login in blocks
        }
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "pipeline"), "stop"],
            check=True,
            timeout=120,
            capture_output=True,
        )

    for output in (first, second):
        assert "backlog of 2000 orders: produced in" in output
        assert "scripts/pipeline stop && scripts/stack down" in output
        assert re.search(r"^dead letters: stg \d+, dds \d+, cdm \d+", output, re.MULTILINE)
    assert "compared with before this run: unchanged" in second
    assert len(blocks) == 3
    assert shown == blocks
    assert (
        subprocess.run(
            [str(ROOT / "scripts" / "pipeline"), "status"], check=False, capture_output=True
        ).returncode
        == 1
    )


# --- marts verify and rebuild ------------------------------------------------------------


def test_marts_verify_exits_0_then_1_on_a_tampered_counter_until_a_rebuild_repairs_it(
    capsys: pytest.CaptureFixture[str],
    services: config.Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A database of its own: verify and rebuild look at the whole warehouse.
    with fresh_database(services.postgres) as database:
        monkeypatch.setenv("PG_WAREHOUSE_DBNAME", database.dbname)
        user = new_user("sverkina")
        place = restaurant(7, [("Суп", "Супы", 300), ("Чай", "Напитки", 90)])
        order_id = new_order_id()
        messages = [
            to_bytes(order(order_id, user["_id"], place, [0, 1], "CLOSED", 600)),
            to_bytes(order(order_id + 1, user["_id"], place, [0], "CLOSED", 600)),
            to_bytes(order(order_id + 2, user["_id"], place, [1], "CLOSED", 600)),
            to_bytes(order(order_id + 2, user["_id"], place, [1], "CANCELLED", 660)),
        ]
        put_through_the_layers(
            attrs.evolve(services, postgres=database),
            Dictionaries(users=[user], restaurants=[place]),
            messages,
        )

        code, out, _ = dwh(capsys, "marts", "verify")

        assert (code, out) == (
            0,
            "marts verified: 2 product rows, 2 category rows, 3 orders: no differences\n",
        )

        with connect(database, autocommit=True) as conn:
            conn.execute(
                "UPDATE cdm.user_product_counters SET order_cnt = 5 WHERE product_name = 'Суп'"
            )
        code, out, _ = dwh(capsys, "marts", "verify")

        assert code == 1
        assert out.splitlines()[:2] == [
            "cdm.user_product_counters: 1 of 2 rows differ",
            f"  count    user {user['_id']}  Суп ({place['menu'][0]['_id']}): "
            "stored 5, recomputed 2",
        ]
        assert "cdm.user_category_counters: no differences (2 rows)" in out
        assert "cdm.order_contributions: no differences (3 orders)" in out

        code, out, _ = dwh(capsys, "marts", "rebuild")

        assert code == 0
        assert out.splitlines()[:3] == [
            "rewrote the marts from the vault: 1 rows written",
            "  cdm.order_contributions: 0 inserted, 0 updated, 0 deleted (orders not in the vault)",
            "  cdm.user_product_counters: 0 inserted, 1 updated, 0 set to 0",
        ]
        assert dwh(capsys, "marts", "verify")[0] == 0
        assert dwh(capsys, "marts", "rebuild")[1] == (
            "the marts already equal their recomputation from the vault: nothing rewritten\n"
            "tags counted afresh from the ledger: 0 transitions\n"
        )
        code, out, _ = dwh(capsys, "marts", "--user", user["login"])
        assert code == 0
        assert "        2  Суп" in out


# --- tags ----------------------------------------------------------------------------------

TAG_RULES = """
[[tag]]
id = "soup_fan"
name = "Любитель супов"
category = "Супы"
at_least = {soups}

[[tag]]
id = "tea_fan"
name = "Любитель чая"
product = "чай"
at_least = 1
"""


def test_tags_are_checked_planned_applied_listed_shown_per_user_and_verified(
    capsys: pytest.CaptureFixture[str],
    services: config.Services,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(TAG_RULES.format(soups=0), encoding="utf-8")
    code, _, err = dwh(capsys, "tags", "check", "--rules", str(rules))
    assert code == 1
    assert f"{rules}:6: tag 'soup_fan': at_least must be a whole number" in err

    topic = f"tags-{uuid.uuid4().hex[:8]}"
    ensure_topics(services.kafka, [topic], partitions=1)
    with fresh_database(services.postgres) as database:
        monkeypatch.setenv("PG_WAREHOUSE_DBNAME", database.dbname)
        rules.write_text(TAG_RULES.format(soups=2), encoding="utf-8")
        code, out, _ = dwh(capsys, "tags", "apply", "--rules", str(rules), "--topic", topic)
        assert (code, out.splitlines()[0]) == (0, "applied ruleset version 1")

        user = new_user("supova")
        place = restaurant(8, [("Суп", "Супы", 300), ("Чай", "Напитки", 90)])
        first = new_order_id()
        put_through_the_layers(
            attrs.evolve(services, postgres=database),
            Dictionaries(users=[user], restaurants=[place]),
            [
                to_bytes(order(first, user["_id"], place, [0, 1], "CLOSED", 600)),
                to_bytes(order(first + 1, user["_id"], place, [0], "CLOSED", 600)),
                to_bytes(order(first + 1, user["_id"], place, [0], "CANCELLED", 660)),
                to_bytes(order(first + 2, user["_id"], place, [0], "CLOSED", 700)),
            ],
        )

        code, out, _ = dwh(capsys, "tags")
        assert code == 0
        assert re.search(r"soup_fan +1 members  «Любитель супов»: category 'Супы' >= 2", out)
        assert re.search(r"tea_fan +1 members", out)
        code, out, _ = dwh(capsys, "tags", "--user", "supova")
        assert code == 0
        assert re.search(r"soup_fan +2 of 2 +member since 2023-04-01", out)
        assert dwh(capsys, "tags", "verify")[0] == 0

        rules.write_text(TAG_RULES.format(soups=3), encoding="utf-8")
        code, out, _ = dwh(capsys, "tags", "plan", "--rules", str(rules))
        assert code == 0
        assert re.search(r"changed +soup_fan +0 would enter, 1 would exit", out)
        assert re.search(r"unchanged +tea_fan", out)
        code, out, _ = dwh(capsys, "tags", "apply", "--rules", str(rules), "--topic", topic)
        assert code == 0
        assert re.search(r"changed +soup_fan +0 entered, 1 exited", out)
        assert f"1 transitions published to {topic}" in out
        code, out, _ = dwh(capsys, "tags", "apply", "--rules", str(rules), "--topic", topic)
        assert "nothing to change" in out

        with connect(database, autocommit=True) as conn:
            conn.execute("UPDATE cdm.user_tag_counters SET order_cnt = 7 WHERE tag_id = 'tea_fan'")
        code, out, _ = dwh(capsys, "tags", "verify")
        assert code == 1
        assert "tea_fan: orders counted: expected 1, found 7" in out
    delete_topics(services.kafka, [topic])
