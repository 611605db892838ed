"""The built-in sample dictionaries and the simulated order feed follow docs/CONTRACT.md §1
exactly, are repeatable for a seed, and drive the pipeline to the oracle's marts."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_core.parsing import parse_order, parse_restaurant, parse_user
from dwh_workers.in_process import InMemoryPipeline
from dwh_workers.oracle import expected_marts
from dwh_workers.sample import (
    OrderGenerator,
    dictionary_entries,
    load_dictionaries_file,
    sample_dictionaries,
)

DICTIONARIES = sample_dictionaries()
FLOW = ["OPEN", "COOKING", "DELIVERING", "CLOSED"]
VALID_HISTORIES = [FLOW[:k] for k in range(1, 5)] + [[*FLOW[:k], "CANCELLED"] for k in range(1, 5)]
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def feed() -> list[bytes]:
    return list(OrderGenerator(DICTIONARIES).messages(5_000))


def documents(messages: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(message) for message in messages]


def versions_by_order(messages: list[bytes]) -> dict[int, list[bytes]]:
    """Per order id, its distinct messages in arrival order."""
    versions: dict[int, list[bytes]] = defaultdict(list)
    for message in messages:
        seen = versions[json.loads(message)["object_id"]]
        if message not in seen:
            seen.append(message)
    return versions


# --- dictionaries ---------------------------------------------------------------------


def test_every_dictionary_entry_parses_strictly_with_its_id_as_key() -> None:
    entries = dictionary_entries(DICTIONARIES)
    for user in DICTIONARIES.users:
        assert parse_user(entries[user["_id"]]).id == user["_id"]
    for restaurant in DICTIONARIES.restaurants:
        assert parse_restaurant(entries[restaurant["_id"]]).id == restaurant["_id"]
    assert len(entries) == len(DICTIONARIES.users) + len(DICTIONARIES.restaurants)


def test_the_sample_is_large_enough_and_covers_the_main_categories() -> None:
    categories = {item["category"] for r in DICTIONARIES.restaurants for item in r["menu"]}
    assert len(DICTIONARIES.users) >= 300
    assert len(DICTIONARIES.restaurants) >= 20
    assert {"Пицца", "Салаты", "Супы", "Выпечка", "Напитки"} <= categories
    assert all(8 <= len(r["menu"]) <= 25 for r in DICTIONARIES.restaurants)


def test_entries_have_exactly_the_redis_shapes_with_object_ids() -> None:
    for user in DICTIONARIES.users:
        assert list(user) == ["_id", "name", "login", "update_ts_utc"]
        assert OBJECT_ID.fullmatch(user["_id"])
        assert TIMESTAMP.fullmatch(user["update_ts_utc"])
    for restaurant in DICTIONARIES.restaurants:
        assert list(restaurant) == ["_id", "name", "menu", "update_ts_utc"]
        assert OBJECT_ID.fullmatch(restaurant["_id"])
        for item in restaurant["menu"]:
            assert list(item) == ["_id", "name", "price", "category"]
            assert OBJECT_ID.fullmatch(item["_id"])
            assert type(item["price"]) is int
            assert item["price"] > 0


def test_every_id_is_unique_across_users_restaurants_and_menu_items() -> None:
    ids = [u["_id"] for u in DICTIONARIES.users] + [
        entry["_id"] for r in DICTIONARIES.restaurants for entry in [r, *r["menu"]]
    ]
    assert len(ids) == len(set(ids))


def test_user_names_agree_in_gender_and_logins_are_unique_transliterations() -> None:
    for user in DICTIONARIES.users:
        surname, first_name, patronymic = user["name"].split(" ")
        if patronymic.endswith("на"):
            assert first_name.endswith(("а", "я", "ь"))
            assert not surname.endswith(("ов", "ев", "ёв", "ин", "ский", "ой"))
        else:
            assert patronymic.endswith("ич")
            assert not surname.endswith(("ова", "ева", "ёва", "ина", "ская", "ая"))
        assert re.fullmatch(r"[a-z]+_[a-z]{2,}\d*", user["login"])
    assert len({u["login"] for u in DICTIONARIES.users}) == len(DICTIONARIES.users)


def test_menus_have_names_with_quotes_semicolons_and_numbers() -> None:
    names = {item["name"] for r in DICTIONARIES.restaurants for item in r["menu"]}
    assert any('"' in name for name in names)
    assert any("«" in name for name in names)
    assert any(";" in name for name in names)
    assert any(re.search(r"\d", name) for name in names)


def test_the_same_seed_gives_the_same_dictionaries() -> None:
    assert sample_dictionaries(seed=3) == sample_dictionaries(seed=3)
    assert sample_dictionaries(seed=3) != sample_dictionaries(seed=4)


def test_a_dictionaries_file_loads_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "dictionaries.json"
    small = sample_dictionaries(users=5, restaurants=3)
    path.write_text(
        json.dumps({"users": small.users, "restaurants": small.restaurants}), encoding="utf-8"
    )
    assert load_dictionaries_file(path) == small


def test_a_bad_entry_in_a_dictionaries_file_is_named_with_the_file_and_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.json"
    small = sample_dictionaries(users=5, restaurants=3)
    small.restaurants[2]["menu"][0]["price"] = "175"
    path.write_text(json.dumps({"users": small.users, "restaurants": small.restaurants}))
    with pytest.raises(ValueError, match=r"bad\.json: restaurants\[2\]: .*price.*expected int"):
        load_dictionaries_file(path)


def test_a_dictionaries_file_without_a_section_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"users": []}))
    with pytest.raises(ValueError, match=r"partial\.json: 'restaurants'"):
        load_dictionaries_file(path)


# --- the order feed -------------------------------------------------------------------


def test_every_message_parses_with_the_strict_order_parser(feed: list[bytes]) -> None:
    for message in feed:
        assert parse_order(message).object_type == "order"


def test_messages_keep_the_contract_key_order(feed: list[bytes]) -> None:
    for document in documents(feed[:500]):
        assert list(document) == ["object_id", "object_type", "sent_dttm", "payload"]
        assert list(document["payload"]) == [
            *("restaurant", "date", "user", "order_items", "bonus_payment", "cost"),
            *("payment", "bonus_grant", "statuses", "final_status", "update_ts"),
        ]


def test_some_messages_escape_non_ascii_and_some_do_not(feed: list[bytes]) -> None:
    escaped = sum(message.isascii() for message in feed)
    assert 0.3 < escaped / len(feed) < 0.7


def test_n_orders_give_n_consecutive_order_ids(feed: list[bytes]) -> None:
    ids = {document["object_id"] for document in documents(feed)}
    assert len(ids) == 5_000
    assert max(ids) - min(ids) == 4_999
    assert 800_000 < min(ids) < 1_200_000


def test_order_items_are_distinct_items_of_the_restaurants_menu(feed: list[bytes]) -> None:
    menus = {
        r["_id"]: {item["_id"]: (item["name"], item["price"]) for item in r["menu"]}
        for r in DICTIONARIES.restaurants
    }
    users = {u["_id"] for u in DICTIONARIES.users}
    for message in feed:
        payload = parse_order(message).payload
        menu = menus[payload.restaurant.id]
        assert payload.user.id in users
        assert 1 <= len(payload.order_items) <= 5
        assert len({item.id for item in payload.order_items}) == len(payload.order_items)
        for item in payload.order_items:
            assert menu[item.id] == (item.name, item.price)
            assert 1 <= item.quantity <= 4


def test_money_adds_up(feed: list[bytes]) -> None:
    for message in feed:
        payload = parse_order(message).payload
        assert payload.cost == sum(item.price * item.quantity for item in payload.order_items)
        assert payload.payment == payload.cost - payload.bonus_payment
        assert 0 <= payload.bonus_payment <= payload.cost
        assert payload.bonus_grant >= 0


def test_statuses_are_newest_first_and_update_ts_is_the_newest(feed: list[bytes]) -> None:
    for message in feed:
        order = parse_order(message)
        payload = order.payload
        times = [change.dttm for change in payload.statuses]
        assert times == sorted(times, reverse=True)
        assert len(set(times)) == len(times)
        assert [change.status for change in reversed(payload.statuses)] in VALID_HISTORIES
        assert payload.update_ts == payload.statuses[0].dttm == payload.date
        assert payload.final_status == payload.statuses[0].status
        assert order.sent_dttm >= payload.update_ts


def test_the_configured_shares_roughly_hold(feed: list[bytes]) -> None:
    versions = versions_by_order(feed)
    finals = {
        object_id: json.loads(messages[0])["payload"]["final_status"]
        for object_id, messages in versions.items()
    }
    single = [object_id for object_id, messages in versions.items() if len(messages) == 1]
    cancelled = sum(finals[object_id] == "CANCELLED" for object_id in single)
    updated = len(versions) - len(single)
    replays = len(feed) - sum(len(messages) for messages in versions.values())
    assert cancelled / 5_000 == pytest.approx(0.1, abs=0.02)
    assert updated / 5_000 == pytest.approx(0.2, abs=0.02)
    assert replays / len(feed) == pytest.approx(0.05, abs=0.015)


def test_updated_orders_close_and_some_are_refunded_later(feed: list[bytes]) -> None:
    finals: dict[str, int] = defaultdict(int)
    for messages in versions_by_order(feed).values():
        if len(messages) > 1:
            newest = max(documents(messages), key=lambda d: d["payload"]["update_ts"])
            finals[newest["payload"]["final_status"]] += 1
            assert newest["payload"]["statuses"][-1]["status"] == "OPEN"
    assert set(finals) == {"CLOSED", "CANCELLED"}


def test_shares_are_configurable() -> None:
    generator = OrderGenerator(DICTIONARIES, cancelled_share=0.5, update_share=0, duplicate_share=0)
    messages = list(generator.messages(1_000))
    statuses = [document["payload"]["final_status"] for document in documents(messages)]
    assert len(messages) == 1_000
    assert set(statuses) == {"CLOSED", "CANCELLED"}
    assert statuses.count("CANCELLED") == pytest.approx(500, abs=60)


def test_some_stale_versions_arrive_after_their_newer_versions(feed: list[bytes]) -> None:
    newest: dict[int, str] = {}
    stale = 0
    for document in documents(feed):
        object_id, update_ts = document["object_id"], document["payload"]["update_ts"]
        if update_ts < newest.get(object_id, update_ts):
            stale += 1
        newest[object_id] = max(update_ts, newest.get(object_id, update_ts))
    assert 0 < stale < 0.1 * len(feed)


def test_replays_are_byte_for_byte_copies_sent_later(feed: list[bytes]) -> None:
    seen: set[bytes] = set()
    replays = 0
    for message in feed:
        replays += message in seen
        seen.add(message)
    assert replays > 0


def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs() -> None:
    first = list(OrderGenerator(DICTIONARIES, seed=5).messages(1_000))
    again = list(OrderGenerator(DICTIONARIES, seed=5).messages(1_000))
    other = list(OrderGenerator(DICTIONARIES, seed=6).messages(1_000))
    assert first == again
    assert first != other


def test_a_live_stream_after_a_backlog_carries_newer_orders() -> None:
    generator = OrderGenerator(DICTIONARIES, start=datetime(2023, 4, 1))
    backlog = documents(list(generator.messages(500)))
    live = documents(list(islice(generator.stream(), 200)))
    backlog_ids = {d["object_id"] for d in backlog}
    newest_backlog = max(d["payload"]["update_ts"] for d in backlog)
    assert all(d["object_id"] > max(backlog_ids) for d in live)
    assert all(d["payload"]["update_ts"] > newest_backlog for d in live)
    assert all(d["sent_dttm"] >= newest_backlog for d in live)


def test_the_pipeline_over_a_generated_feed_gives_the_oracles_marts() -> None:
    messages = list(OrderGenerator(DICTIONARIES, seed=11).messages(2_000))
    pipeline = InMemoryPipeline(
        InMemoryDictionaries(dictionary_entries(DICTIONARIES)), FixedClock(datetime(2023, 5, 1))
    )
    pipeline.feed(messages)
    pipeline.run()
    products, categories = expected_marts(messages, DICTIONARIES.restaurants)
    assert not pipeline.dead_letters.letters
    assert sum(products.values()) > 1_000
    assert pipeline.counters.product_counts() == products
    assert pipeline.counters.category_counts() == categories
