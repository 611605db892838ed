"""The marts as CONTRACT.md §4 defines them, computed directly from the order messages.

Written independently of the pipeline: plain dicts, no vault, no ledger.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

from dwh_core.hashing import hash_key


def newest_versions(messages: list[bytes]) -> dict[int, dict[str, Any]]:
    """Per order id, the version with the greatest update_ts (valid orders only)."""
    newest: dict[int, dict[str, Any]] = {}
    for raw in messages:
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(document, dict) or document.get("object_type") != "order":
            continue
        order_id = document["object_id"]
        seen = newest.get(order_id)
        if seen is None or document["payload"]["update_ts"] > seen["payload"]["update_ts"]:
            newest[order_id] = document
    return newest


def expected_marts(
    messages: list[bytes], restaurants: list[dict[str, Any]]
) -> tuple[Counter[tuple[uuid.UUID, uuid.UUID]], Counter[tuple[uuid.UUID, uuid.UUID]]]:
    """(user key, product key) -> count and (user key, category key) -> count."""
    category_of = {
        (r["_id"], item["_id"]): item["category"] for r in restaurants for item in r["menu"]
    }
    products: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    categories: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    for document in newest_versions(messages).values():
        payload = document["payload"]
        if payload["final_status"] != "CLOSED":
            continue
        user_key = hash_key(payload["user"]["id"])
        restaurant_id = payload["restaurant"]["id"]
        item_ids = {item["id"] for item in payload["order_items"]}
        for product_id in item_ids:
            products[(user_key, hash_key(product_id))] += 1
        for category in {category_of[(restaurant_id, item_id)] for item_id in item_ids}:
            categories[(user_key, hash_key(category))] += 1
    return products, categories
