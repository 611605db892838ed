"""Bad input reaches the dead-letter port with its reason, one short line whatever the
input quoted; the rest of the batch goes on."""

from __future__ import annotations

import json

from dwh_core.messages import (
    MAX_REASON,
    DeadLetter,
    InMessage,
    bounded_reason,
    dead_letter_topic,
    shorten,
    source_of_dead_letters,
)
from tests.support.builders import order, to_bytes
from tests.support.pipeline import sample_pipeline


def test_each_kind_of_bad_message_is_dead_lettered_with_its_reason_and_the_rest_flows() -> None:
    pipeline, users, restaurants = sample_pipeline()
    good = order(1, users[0]["_id"], restaurants[0], [0, 1], "CLOSED", 100)
    wrong_type = order(2, users[0]["_id"], restaurants[0], [0], "CLOSED", 100)
    wrong_type["payload"]["cost"] = "450"
    other_object = {
        **order(3, users[0]["_id"], restaurants[0], [0], "CLOSED", 100),
        "object_type": "payment",
    }
    unknown_user = order(4, "ffffffffffffffffffffffff", restaurants[0], [0], "CLOSED", 100)
    unknown_restaurant = order(5, users[0]["_id"], restaurants[0], [0], "CLOSED", 100)
    unknown_restaurant["payload"]["restaurant"]["id"] = "eeeeeeeeeeeeeeeeeeeeeeee"
    unknown_item = order(6, users[0]["_id"], restaurants[0], [0], "CLOSED", 100)
    unknown_item["payload"]["order_items"][0]["id"] = "dddddddddddddddddddddddd"
    pipeline.feed(
        [
            b"{not json",
            to_bytes(wrong_type),
            to_bytes(good),
            to_bytes(other_object),
            None,
            to_bytes(unknown_user),
            to_bytes(unknown_restaurant),
            to_bytes(unknown_item),
        ]
    )

    pipeline.run()

    reasons = {letter.message.offset: letter.reason for letter in pipeline.dead_letters.letters}
    assert reasons[0].startswith("not JSON: ")
    assert reasons[1] == "$.payload.cost: expected int, got string"
    assert reasons[3] == "$.object_type: expected 'order', got 'payment'"
    assert reasons[4] == "empty message (no value)"
    assert reasons[5] == "unknown user ffffffffffffffffffffffff: not in the dictionaries"
    assert reasons[6] == "unknown restaurant eeeeeeeeeeeeeeeeeeeeeeee: not in the dictionaries"
    assert reasons[7] == (
        f"unknown menu item dddddddddddddddddddddddd in restaurant {restaurants[0]['_id']}"
    )
    assert 2 not in reasons
    assert {letter.stage for letter in pipeline.dead_letters.letters} == {"stg"}
    dead = pipeline.topics.messages["order-service_orders-dlq"]
    assert [m.value for m in dead] == [
        pipeline.topics.messages["order-service_orders"][o].value for o in sorted(reasons)
    ]
    assert list(pipeline.events.events) == [1]
    assert sum(pipeline.counters.product_counts().values()) == 2


def test_an_unreadable_dictionary_entry_is_a_reason_not_a_crash() -> None:
    pipeline, users, restaurants = sample_pipeline()
    pipeline.dictionaries.entries[users[1]["_id"]] = json.dumps({"_id": users[1]["_id"]}).encode()
    pipeline.feed(
        [
            to_bytes(order(1, users[1]["_id"], restaurants[0], [0], "CLOSED", 1)),
            to_bytes(order(2, users[0]["_id"], restaurants[0], [0], "CLOSED", 1)),
        ]
    )

    pipeline.run()

    [letter] = pipeline.dead_letters.letters
    assert letter.reason.startswith(f"user {users[1]['_id']}: unreadable dictionary entry: $.name")
    assert list(pipeline.events.events) == [2]


def test_a_malformed_message_between_layers_is_dead_lettered_by_that_layer() -> None:
    pipeline, _users, _restaurants = sample_pipeline()
    pipeline.topics.append("stg-service-orders", b'{"object_id": 1}', b"k")
    pipeline.topics.append("dds-service-orders", b"[]", b"k")

    pipeline.run()

    stages = {(letter.stage, letter.topic) for letter in pipeline.dead_letters.letters}
    assert stages == {("dds", "stg-service-orders-dlq"), ("cdm", "dds-service-orders-dlq")}


# --- bounded reasons ----------------------------------------------------------------------


def test_shorten_quotes_a_short_value_whole_and_a_long_one_by_its_start_and_length() -> None:
    assert shorten("CLOSED") == "'CLOSED'"
    assert shorten(12345, limit=10) == "12345"

    quoted = shorten("x" * 5_000_000, limit=20)

    assert quoted == "'" + "x" * 19 + "… (5,000,002 characters)"


def test_a_reason_is_one_line_of_at_most_max_reason_characters_naming_the_whole_length() -> None:
    message = InMessage(b"{}", "orders", 0, 1)
    huge = "$.payload.user.name: " + "слишком длинное имя\n" * 300_000

    letter = DeadLetter(message, "stg", huge)

    assert len(letter.reason) <= MAX_REASON
    assert "\n" not in letter.reason
    assert letter.reason.startswith("$.payload.user.name: слишком длинное имя слишком")
    assert letter.reason.endswith(f"… ({len(huge):,} characters)")
    assert DeadLetter(message, "stg", "two\n  lines").reason == "two lines"


def test_a_reason_of_whitespace_runs_longer_than_the_bound_is_still_bounded() -> None:
    reason = bounded_reason("a" + " " * 10_000 + "b" * 10_000)

    assert len(reason) <= MAX_REASON
    assert reason.startswith("a ")


def test_whatever_a_huge_bad_value_makes_the_parser_say_the_dead_letter_stays_short() -> None:
    pipeline, users, restaurants = sample_pipeline()
    bad_type = order(1, users[0]["_id"], restaurants[0], [0], "CLOSED", 100)
    bad_type["object_type"] = "z" * 3_000_000
    bad_time = order(2, users[0]["_id"], restaurants[0], [0], "CLOSED", 100)
    bad_time["payload"]["date"] = "9" * 3_000_000
    pipeline.feed([to_bytes(bad_type), to_bytes(bad_time)])

    pipeline.run()

    reasons = [letter.reason for letter in pipeline.dead_letters.letters]
    assert len(reasons) == 2
    assert all(len(reason) <= MAX_REASON for reason in reasons)
    assert reasons[0].startswith("$.object_type")
    assert reasons[1].startswith("$.payload.date")


def test_the_source_of_a_dead_letter_topic_is_its_name_without_the_suffix() -> None:
    assert source_of_dead_letters(dead_letter_topic("stg-service-orders")) == "stg-service-orders"
    assert source_of_dead_letters("stg-service-orders") is None
    assert source_of_dead_letters("-dlq") is None
    assert source_of_dead_letters("orders-dlq-x") is None
