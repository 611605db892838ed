"""``dwh demo --in-memory``: the whole pipeline in one process on the in-memory adapters,
for a first look where no services can be installed."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import datetime

from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_core.hashing import hash_key
from dwh_workers.in_process import InMemoryPipeline
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import ORDERS_TOPIC


def run_in_memory(orders: int, seed: int, users_shown: int = 3) -> str:
    """Generate ``orders`` orders, run STG -> DDS -> CDM in memory; a readable summary."""
    dictionaries = sample_dictionaries()
    pipeline = InMemoryPipeline(
        InMemoryDictionaries(dictionary_entries(dictionaries)), FixedClock(datetime(2023, 4, 1))
    )
    started = time.perf_counter()
    pipeline.feed(OrderGenerator(dictionaries, seed=seed).messages(orders))
    results = pipeline.run()
    elapsed = time.perf_counter() - started
    messages = len(pipeline.topics.messages[ORDERS_TOPIC])
    lines = [
        f"in-memory pipeline: {orders:,} orders ({messages:,} messages with updates and "
        f"duplicates) through STG -> DDS -> CDM in {elapsed:.2f}s, {len(results)} batches",
        f"orders kept in STG: {len(pipeline.events.events):,}; "
        f"dead letters: {len(pipeline.dead_letters.letters)}",
    ]
    names = pipeline.counters.names()
    per_user: dict[uuid.UUID, list[tuple[int, str]]] = defaultdict(list)
    for (user_key, product_key), count in pipeline.counters.product_counts().items():
        per_user[user_key].append((count, names.get(product_key, "?")))
    user_names = {hash_key(user["_id"]): user["name"] for user in dictionaries.users}
    busiest = sorted(per_user, key=lambda key: -sum(c for c, _ in per_user[key]))[:users_shown]
    for user_key in busiest:
        top = ", ".join(
            f"{name} ×{count}"
            for count, name in sorted(per_user[user_key], key=lambda p: (-p[0], p[1]))[:3]
        )
        lines.append(f"  {user_names.get(user_key, user_key)}: {top}")
    return "\n".join(lines)
