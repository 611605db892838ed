"""Hostile input through the three real workers (docs/CONTRACT.md §5, §7): a few thousand
messages, mostly valid orders (duplicates, replays, stale and tied versions) and several
hundred fuzzed ones, over dictionaries with broken entries in Redis. The marts, and the
newest version STG keeps of each order, are exactly the oracle's; the dead-letter topic
of the feed holds exactly the messages the oracle rejects, by their original bytes, and
the other layers' dead-letter topics nothing.

Everything is drawn from one seed with the plain mutation functions of
:mod:`tests.support.fuzz`, so a failure is the same on the next run.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dwh_adapters.kafka import consumer_group_lag, read_dead_letters
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.redis import RedisDictionaryReader
from dwh_workers import oracle
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology
from tests.support.databases import fresh_database
from tests.support.fuzz import dumps, extend_order, mutate_entry, mutate_order, tied_version
from tests.support.processes import KAFKA, REDIS, produce, provisioned, running, wait_for

pytestmark = pytest.mark.integration

BASE = PgSettings("127.0.0.1", 5432, "de", "dwh", "dwh")
SEED = 41  # no other test's dictionaries use it: the broken entries are ours alone
DICTIONARIES = sample_dictionaries(seed=SEED, users=60, restaurants=8)
ORDERS = 1400  # about 2,000 messages with later versions and replays
TIES = 60
HOSTILE = 500
EXTENDED = 100  # one hostile extra field each: mostly still valid
REPLAYS = 100
BROKEN_USERS = 5
BROKEN_RESTAURANTS = 1


def references() -> list[str]:
    restaurants = DICTIONARIES.restaurants
    return sorted(
        {doc["_id"] for doc in (*DICTIONARIES.users, *restaurants)}
        | {item["_id"] for r in restaurants for item in r["menu"]}
    )


def fuzzed_entries(rng: random.Random) -> dict[str, bytes]:
    """The dictionaries with a few entries mutated (broken, or oddly still valid)."""
    entries = dictionary_entries(DICTIONARIES)
    chosen = [
        *rng.sample(DICTIONARIES.users, BROKEN_USERS),
        *rng.sample(DICTIONARIES.restaurants, BROKEN_RESTAURANTS),
    ]
    for document in chosen:
        entries[document["_id"]] = mutate_entry(rng, document, references())
    return entries


def fuzzed_feed(rng: random.Random) -> list[bytes]:
    """Valid orders with their later versions, stale versions and replays (the feed
    simulator), versions tied on update_ts, mutated orders, and replays of any of them,
    in a random order."""
    good = list(OrderGenerator(DICTIONARIES, seed=SEED, update_share=0.3).messages(ORDERS))
    documents = [json.loads(message) for message in good]
    tied = [
        dumps(tied_version(rng, doc), rng.random() < 0.5) for doc in rng.sample(documents, TIES)
    ]
    hostile = [mutate_order(rng, rng.choice(documents), references()) for _ in range(HOSTILE)]
    hostile += [extend_order(rng, rng.choice(documents), references()) for _ in range(EXTENDED)]
    messages = good + tied + hostile + spelled_nuls(rng.sample(documents, 3))
    messages += rng.sample(messages, REPLAYS)
    rng.shuffle(messages)
    return messages


def spelled_nuls(documents: list[dict[str, Any]]) -> list[bytes]:
    """Valid orders whose text spells a NUL's escape (a backslash, then "u0000") without
    holding one: rare for the fuzzer to hit, so always there."""
    return [dumps({**doc, "comment": "C:\\u0000"}) for doc in documents]


def redis_view(messages: list[bytes]) -> oracle.Dictionaries:
    """What Redis holds for every id the orders name: the oracle judges by the same
    entries the workers read (the key space is shared with other tests)."""
    ids: set[str] = set()
    for raw in messages:
        try:
            payload = oracle.order_document(raw)["payload"]
        except oracle.Rejected:
            continue
        ids.update((payload["user"]["id"], payload["restaurant"]["id"]))
    with RedisDictionaryReader(REDIS) as reader:
        return oracle.Dictionaries(reader.fetch(ids))


@pytest.fixture
def warehouse() -> Iterator[PgSettings]:
    with fresh_database(BASE) as settings:
        yield settings


def caught_up(topology: Topology) -> bool:
    """Every layer has committed everything on its topic. Checked in the order of the
    pipeline, so a layer is only seen idle after the one before it has published all."""
    return all(
        not any(consumer_group_lag(KAFKA, topology.group(layer), topology.topic(layer)).values())
        for layer in LAYER_NAMES
    )


def stored_versions(postgres: PgSettings) -> dict[int, dict[str, Any]]:
    """The fields of the contract of each order's payload as STG keeps it."""
    with connect(postgres) as connection:
        rows = connection.execute("SELECT object_id, payload FROM stg.order_events").fetchall()
    return {object_id: known_fields(payload) for object_id, payload in rows}


def known_fields(payload: dict[str, Any]) -> dict[str, Any]:
    # jsonb normalises numbers of extra fields (-0.0, 1e20); the contract's fields are
    # strings and integers, kept exactly.
    return {name: payload[name] for name in oracle.ORDER["payload"]}


def dead_letters(topic: str) -> list[tuple[bytes, str]]:
    """(value, reason) of each letter; an empty value and no value are one thing to
    Kafka's clients."""
    return [(letter.value or b"", letter.reason) for letter in read_dead_letters(KAFKA, topic)]


def unexplained(
    letters: list[tuple[bytes, str]], expected: list[tuple[bytes, str]]
) -> list[tuple[bytes, str]]:
    """The letters (value, reason) of ``letters`` that ``expected`` does not account for,
    counting duplicates, each shortened to recognise it (some are 10 KB)."""
    extra = Counter(value for value, _ in letters) - Counter(value for value, _ in expected)
    reasons = dict(letters)
    return sorted((value[:300], reasons[value]) for value in extra.elements())


@pytest.mark.timeout(240)
def test_fuzzed_feed_gives_exact_marts_and_dead_letters_exactly_the_bad_messages(
    warehouse: PgSettings,
) -> None:
    rng = random.Random(SEED)
    entries = fuzzed_entries(rng)
    messages = fuzzed_feed(rng)
    with provisioned(Topology(dbname=warehouse.dbname), entries) as topology:
        verdict = oracle.judge(messages, redis_view(messages))
        assert len(verdict.rejected) >= HOSTILE // 2, "the fuzzing lost its teeth"
        assert len(verdict.accepted) >= ORDERS, "the valid orders are the bulk"
        produce(topology.source, messages)
        with running(topology):
            wait_for(lambda: caught_up(topology), 120, "every layer to catch up", 1.0)

        letters = dead_letters(f"{topology.source}-dlq")
        later = [dead_letters(f"{topology.topic(layer)}-dlq") for layer in ("dds", "cdm")]

    expected = [(raw or b"", reason) for raw, reason in verdict.rejected]
    assert unexplained(letters, expected) == [], "dead-lettered, but valid"
    assert unexplained(expected, letters) == [], "invalid, but not dead-lettered"
    assert later == [[], []]

    products, categories = verdict.marts()
    with PostgresMarts(warehouse) as marts:
        assert marts.product_counts() == products
        assert marts.category_counts() == categories
    newest = {order: known_fields(m.document["payload"]) for order, m in verdict.newest().items()}
    assert stored_versions(warehouse) == newest
