"""Small builders for test data in the exact wire formats of docs/CONTRACT.md §1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

BASE_TIME = datetime(2023, 4, 1, 18, 0, 0)


def ts(seconds: int) -> str:
    return (BASE_TIME + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def object_id_hex(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{24 - len(prefix)}x}"


def user(number: int) -> dict[str, Any]:
    return {
        "_id": object_id_hex("626a81ce", number),
        "name": f"Котова Ольга {number}",
        "login": f"kotova_{number}",
        "update_ts_utc": "2022-05-01 00:00:00",
    }


def restaurant(number: int, menu: list[tuple[str, str, int]]) -> dict[str, Any]:
    """``menu``: (name, category, price) per item; item ids derive from the numbers."""
    return {
        "_id": object_id_hex("ef8c42c1", number),
        "name": f"Кофейня №{number}",
        "menu": [
            {
                "_id": object_id_hex(f"a{number:02x}", index),
                "name": name,
                "price": price,
                "category": category,
            }
            for index, (name, category, price) in enumerate(menu)
        ],
        "update_ts_utc": "2022-05-01 00:00:00",
    }


STATUS_HISTORY = ["OPEN", "COOKING", "DELIVERING", "CLOSED"]


def order(
    object_id: int,
    user_id: str,
    restaurant_doc: dict[str, Any],
    item_indexes: list[int],
    final_status: str,
    update_seconds: int,
) -> dict[str, Any]:
    """An order message: items are menu indexes of the restaurant (repeats allowed)."""
    menu = restaurant_doc["menu"]
    items = [
        {"id": menu[i]["_id"], "name": menu[i]["name"], "price": menu[i]["price"], "quantity": 1}
        for i in item_indexes
    ]
    cost = sum(item["price"] for item in items)
    history = (
        [*STATUS_HISTORY[:3], final_status]
        if final_status in ("CLOSED", "CANCELLED")
        else (
            STATUS_HISTORY[: STATUS_HISTORY.index(final_status) + 1]
            if final_status in STATUS_HISTORY
            else [final_status]
        )
    )
    statuses = [
        {"status": status, "dttm": ts(update_seconds - 60 * (len(history) - 1 - n))}
        for n, status in enumerate(history)
    ]
    return {
        "object_id": object_id,
        "object_type": "order",
        "sent_dttm": ts(update_seconds + 5),
        "payload": {
            "restaurant": {"id": restaurant_doc["_id"]},
            "date": ts(0),
            "user": {"id": user_id},
            "order_items": items,
            "bonus_payment": 0,
            "cost": cost,
            "payment": cost,
            "bonus_grant": 0,
            "statuses": list(reversed(statuses)),
            "final_status": final_status,
            "update_ts": ts(update_seconds),
        },
    }


def to_bytes(document: dict[str, Any], ensure_ascii: bool = False) -> bytes:
    return json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8")


MENU_A = [
    ("Пицца Маргарита", "Пицца", 450),
    ("Салат «Цезарь»; с курицей", "Салаты", 320),
    ("Борщ", "Супы", 250),
    ('Пицца "Четыре сыра"', "Пицца", 520),
]
MENU_B = [
    ("Круассан", "Выпечка", 120),
    ("Латте", "Напитки", 180),
    ("Пицца Пепперони", "Пицца", 490),
]


def sample_dictionaries() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Three users and two restaurants that share a category (Пицца)."""
    return [user(n) for n in range(1, 4)], [restaurant(1, MENU_A), restaurant(2, MENU_B)]
