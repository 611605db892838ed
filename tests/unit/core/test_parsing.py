from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from dwh_core.hashing import hash_key
from dwh_core.orders import KeyName, OrderFacts, OrderId
from dwh_core.parsing import (
    InvalidMessage,
    encode,
    parse_enriched_order,
    parse_order,
    parse_order_facts,
    parse_restaurant,
    parse_user,
)

CONTRACT_EXAMPLE = """{"object_id": 1371198, "object_type": "order", "sent_dttm": "2023-04-08 20:27:36",
 "payload": {"restaurant": {"id": "ef8c42c19b7518a9aebec106"}, "date": "2023-04-01 20:45:43",
  "user": {"id": "626a81ce9a8cd1920641e29c"},
  "order_items": [{"id": "aeca4d08abab78869c20128c", "name": "Рис с лимоном", "price": 175, "quantity": 5}],
  "bonus_payment": 0, "cost": 875, "payment": 875, "bonus_grant": 0,
  "statuses": [{"status": "CLOSED", "dttm": "2023-04-01 20:45:43"}, {"status": "DELIVERING", "dttm": "2023-04-01 20:12:14"},
               {"status": "COOKING", "dttm": "2023-04-01 19:14:45"}, {"status": "OPEN", "dttm": "2023-04-01 18:55:52"}],
  "final_status": "CLOSED", "update_ts": "2023-04-01 20:45:43"}}"""


def example() -> dict:  # type: ignore[type-arg]
    return json.loads(CONTRACT_EXAMPLE)  # type: ignore[no-any-return]


def rejection(document: object) -> str:
    with pytest.raises(InvalidMessage) as caught:
        parse_order(json.dumps(document).encode())
    return str(caught.value)


def test_parses_the_contract_example() -> None:
    order = parse_order(CONTRACT_EXAMPLE.encode())
    assert order.object_id == 1371198
    assert order.sent_dttm == datetime(2023, 4, 8, 20, 27, 36)
    assert order.payload.order_items[0].name == "Рис с лимоном"
    assert order.payload.order_items[0].price == 175
    assert [s.status for s in order.payload.statuses] == ["CLOSED", "DELIVERING", "COOKING", "OPEN"]
    assert order.payload.update_ts == datetime(2023, 4, 1, 20, 45, 43)


def test_escaped_and_unescaped_cyrillic_parse_the_same() -> None:
    document = example()
    document["payload"]["order_items"][0]["name"] = 'Салат "Цезарь"; с курицей'
    escaped = parse_order(json.dumps(document, ensure_ascii=True).encode())
    raw = parse_order(json.dumps(document, ensure_ascii=False).encode())
    assert escaped == raw
    assert raw.payload.order_items[0].name == 'Салат "Цезарь"; с курицей'


def test_unknown_extra_fields_are_tolerated() -> None:
    document = example()
    document["payload"]["courier"] = {"id": "x"}
    document["schema_version"] = 2
    assert parse_order(json.dumps(document).encode()).object_id == 1371198


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("175", "$.payload.order_items[0].price: expected int, got string"),
        (1.5, "$.payload.order_items[0].price: expected int, got float"),
        (True, "$.payload.order_items[0].price: expected int, got bool"),
        (None, "$.payload.order_items[0].price: expected int, got null"),
    ],
)
def test_a_price_of_the_wrong_type_is_rejected_not_coerced(value: object, reason: str) -> None:
    document = example()
    document["payload"]["order_items"][0]["price"] = value
    assert rejection(document) == reason


def test_a_missing_field_is_rejected_with_its_path() -> None:
    document = example()
    del document["payload"]["update_ts"]
    assert rejection(document) == "$.payload.update_ts: required field missing"


def test_every_bad_path_is_named() -> None:
    document = example()
    document["object_id"] = "1371198"
    document["payload"]["statuses"] = "CLOSED"
    reason = rejection(document)
    assert "$.object_id: expected int, got string" in reason
    assert "$.payload.statuses: expected array, got string" in reason


def test_a_bad_timestamp_is_rejected() -> None:
    document = example()
    document["payload"]["update_ts"] = "yesterday"
    assert rejection(document) == (
        "$.payload.update_ts: expected timestamp 'YYYY-MM-DD HH:MM:SS', got 'yesterday'"
    )


def test_an_object_of_another_type_is_not_an_order() -> None:
    document = example()
    document["object_type"] = "payment"
    assert rejection(document) == "$.object_type: expected 'order', got 'payment'"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON: invalid literal: line 1 column 1 (char 0)"),
        (b"\xff\xfe{", "not UTF-8: byte 0 (b'\\xff') invalid start byte"),
        (b"[1, 2]", "$: expected object, got array"),
        (b'"order"', "$: expected object, got string"),
        (b'{"object_id": 1, "payload": []}', "$.object_type: required field missing"),
    ],
)
def test_what_is_not_a_json_object_is_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_order(data)
    assert str(caught.value).startswith(reason)


def test_a_nested_object_of_the_wrong_type_is_rejected() -> None:
    document = example()
    document["payload"]["user"] = "626a81ce9a8cd1920641e29c"
    assert rejection(document) == "$.payload.user: expected object, got string"


def test_dictionary_entries_use_underscore_id() -> None:
    user = parse_user(
        '{"_id": "u1", "name": "Котова Ольга", "login": "kotova", '
        '"update_ts_utc": "2022-05-01 00:00:00"}'.encode()
    )
    assert (user.id, user.login) == ("u1", "kotova")
    restaurant = parse_restaurant(
        '{"_id": "r1", "name": "Кофейня №1", "update_ts_utc": "2022-05-01 00:00:00", '
        '"menu": [{"_id": "m1", "name": "Латте", "price": 180, "category": "Напитки"}]}'.encode()
    )
    assert restaurant.menu_item("m1") is not None
    assert restaurant.menu_item("m2") is None


def test_a_dictionary_entry_without_underscore_id_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match=r"^\$: required field '_id' missing"):
        parse_user(
            b'{"id": "u1", "name": "n", "login": "l", "update_ts_utc": "2022-05-01 00:00:00"}'
        )


ENRICHED = (
    '{"object_id": 322519, "object_type": "order", "payload": {"id": 322519,'
    ' "date": "2022-11-19 16:06:36", "cost": 300, "payment": 300, "status": "CLOSED",'
    ' "update_ts": "2022-11-19 16:06:36",'
    ' "restaurant": {"id": "626a81cfefa404208fe9abae", "name": "Кофейня №1"},'
    ' "user": {"id": "626a81ce9a8cd1920641e296", "name": "Котова Ольга Вениаминовна",'
    ' "login": "kotova_ov"}, "products": [{"id": "6276e8cd0cf48b4cded00878", "price": 180,'
    ' "quantity": 1, "name": "РОЛЛ С ТОФУ И ВЯЛЕНЫМИ ТОМАТАМИ", "category": "Выпечка"}],'
    ' "content_hash": "0123456789abcdef0123456789abcdef"}}'
).encode()


def test_an_enriched_order_round_trips_through_its_wire_format() -> None:
    data = ENRICHED
    order = parse_enriched_order(data)
    assert json.loads(encode(order)) == json.loads(data)


def test_an_enriched_order_of_an_older_producer_has_no_content_hash() -> None:
    document = json.loads(encode(parse_enriched_order(ENRICHED)))
    del document["payload"]["content_hash"]
    assert parse_enriched_order(json.dumps(document).encode()).payload.content_hash == ""


def test_a_nul_character_is_rejected_because_the_warehouse_cannot_store_it() -> None:
    for where in ("order_items", "note"):
        document = example()
        if where == "note":
            document["payload"]["note"] = "\x00"
        else:
            document["payload"]["order_items"][0]["name"] = "Рис\x00"
        assert rejection(document) == "$: a NUL character (\\u0000) is not allowed in text"


def test_order_facts_are_written_with_uuids_in_their_canonical_text_form() -> None:
    facts = OrderFacts(
        order_key=hash_key(7),
        order_id=OrderId(7),
        user_key=uuid.UUID(int=1),
        user_id="626a81ce9a8cd1920641e296",
        update_ts=datetime(2023, 4, 1, 20, 45, 43, 120),
        status="CLOSED",
        products=[KeyName(hash_key("p"), "Пицца")],
        categories=[KeyName(hash_key("Выпечка"), "Выпечка")],
    )
    data = encode(facts)
    document = json.loads(data)
    assert document["user_key"] == "00000000-0000-0000-0000-000000000001"
    assert document["products"][0]["key"] == str(hash_key("p"))
    assert document["update_ts"] == "2023-04-01 20:45:43.000120"
    assert parse_order_facts(data) == facts


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a": "\xff\xfe"}', "not UTF-8: byte 7 (b'\\xff') invalid start byte"),
        (b'{"a": "\xc0\xaf"}', "not UTF-8: byte 7 (b'\\xc0') invalid start byte"),
        (b"{not json", "not JSON: unexpected character: line 1 column 2 (char 1)"),
    ],
)
def test_bytes_that_are_not_utf8_are_told_apart_from_bytes_that_are_not_json(
    data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_order(data)
    assert str(caught.value) == reason
