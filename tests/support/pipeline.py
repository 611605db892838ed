"""An in-memory pipeline loaded with the sample dictionaries of the builders."""

from __future__ import annotations

from typing import Any

from dwh_adapters.memory import FixedClock, InMemoryDictionaries
from dwh_workers.in_process import InMemoryPipeline
from tests.support.builders import BASE_TIME, sample_dictionaries, to_bytes


def dictionaries_of(
    users: list[dict[str, Any]], restaurants: list[dict[str, Any]]
) -> InMemoryDictionaries:
    return InMemoryDictionaries({doc["_id"]: to_bytes(doc) for doc in [*users, *restaurants]})


def sample_pipeline() -> tuple[InMemoryPipeline, list[dict[str, Any]], list[dict[str, Any]]]:
    users, restaurants = sample_dictionaries()
    return (
        InMemoryPipeline(dictionaries_of(users, restaurants), FixedClock(BASE_TIME)),
        users,
        restaurants,
    )
