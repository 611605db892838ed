"""The core's public surface is ``dwh_core.__all__``: the project's own adapters, workers
and benchmark use nothing else of it, and nothing in it is unused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dwh_core
from dwh_core import (
    CLOSED,
    MenuItem,
    Order,
    Restaurant,
    User,
    hash_key,
    parse_order,
    parse_restaurant,
    parse_user,
)
from tests.support.builders import order, sample_dictionaries, to_bytes

ROOT = Path(__file__).resolve().parents[3]
USERS = ("src/dwh_adapters", "src/dwh_workers", "bench")


def imported_from_core(*roots: str) -> dict[str, set[str]]:
    """Name -> files, for every ``from dwh_core[.module] import name`` under ``roots``."""
    names: dict[str, set[str]] = {}
    for root in roots:
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dwh_core"):
                    for alias in node.names:
                        names.setdefault(alias.name, set()).add(str(path.relative_to(ROOT)))
    return names


def test_the_project_uses_only_the_public_surface_of_the_core() -> None:
    private = {
        name: sorted(files)
        for name, files in imported_from_core(*USERS).items()
        if name not in dwh_core.__all__
    }
    assert private == {}, "add these to dwh_core.__all__ (and its docs) or stop using them"


def test_every_public_name_is_used_by_the_project_or_its_tests() -> None:
    used = imported_from_core(*USERS, "tests").keys()
    assert sorted(set(dwh_core.__all__) - set(used) - {"__version__"}) == []


def test_the_version_is_a_release_number_the_package_metadata_repeats() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", dwh_core.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'version = { attr = "dwh_core.__version__" }' in pyproject


def test_another_service_reads_the_feed_and_the_dictionaries_with_the_core_alone() -> None:
    users, restaurants = sample_dictionaries()
    user = parse_user(to_bytes(users[0]))
    restaurant = parse_restaurant(to_bytes(restaurants[0]))
    message = order(7, users[0]["_id"], restaurants[0], [0, 3], "CLOSED", 60)
    parsed = parse_order(to_bytes(message))

    assert isinstance(parsed, Order)
    assert isinstance(user, User)
    assert isinstance(restaurant, Restaurant)
    assert parsed.payload.final_status == CLOSED
    item = restaurant.menu_item(parsed.payload.order_items[0].id)
    assert isinstance(item, MenuItem)
    assert item.category == "Пицца"
    assert hash_key(parsed.payload.user.id) == hash_key(user.id)  # the warehouse's user key
