"""The default user-tag rules shipped with the workers (src/dwh_workers/tag_rules.toml):
they parse, every name in them is in the sample catalogue, and a typical sample run
gives some of them members."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

from dwh_core.tag_rules import RuleFile, check_names, parse_rules
from dwh_workers.sample.catalogue import CATALOGUE
from dwh_workers.sample.dictionaries import sample_dictionaries
from dwh_workers.sample.orders import OrderGenerator

CATEGORIES = tuple(CATALOGUE)
DISHES = tuple(name for dishes in CATALOGUE.values() for name, _ in dishes)


def default_rules() -> RuleFile:
    """The packaged file, read the way an installed package reads it."""
    resource = resources.files("dwh_workers") / "tag_rules.toml"
    return parse_rules(resource.read_text(encoding="utf-8"), "dwh_workers/tag_rules.toml")


def test_the_default_rules_parse_and_start_with_pizza_lover() -> None:
    rules = default_rules().rules
    pizza = rules[0]
    assert (pizza.tag_id, pizza.name, pizza.target, pizza.target_name) == (
        "pizza_lover",
        "Любитель пиццы",
        "category",
        "Пицца",
    )
    assert (pizza.at_least, pizza.within_days) == (10, None)
    assert len(rules) >= 6


def test_every_name_in_the_default_rules_is_in_the_sample_catalogue() -> None:
    assert check_names(default_rules(), CATEGORIES, DISHES) == []


def test_the_default_rules_cover_categories_products_and_a_window() -> None:
    rules = default_rules().rules
    assert len({rule.target_name for rule in rules if rule.target == "category"}) >= 3
    assert any(rule.target == "product" for rule in rules)
    assert any(rule.within_days is not None for rule in rules)
    assert all(rule.target_name in CATEGORIES + DISHES for rule in rules)  # exact spelling


def test_a_typical_sample_run_gives_some_default_tags_members() -> None:
    """3000 orders of the sample feed, counted as the marts count them (the newest
    version of each order, CLOSED only); the sample feed spans hours, so a window of
    days holds every order when measured from the end of the feed."""
    dictionaries = sample_dictionaries()
    category_of = {
        item["name"]: item["category"]
        for restaurant in dictionaries.restaurants
        for item in restaurant["menu"]
    }
    newest: dict[int, dict] = {}  # type: ignore[type-arg]
    for message in OrderGenerator(dictionaries, seed=1).messages(3000):
        document = json.loads(message)
        payload = document["payload"]
        known = newest.get(document["object_id"])
        if known is None or known["update_ts"] < payload["update_ts"]:
            newest[document["object_id"]] = payload
    counts: Counter[tuple[str, str, str]] = Counter()  # (target, name, user): orders
    for payload in newest.values():
        if payload["final_status"] == "CLOSED":
            user = payload["user"]["id"]
            names = {item["name"].upper() for item in payload["order_items"]}
            categories = {category_of[item["name"]].upper() for item in payload["order_items"]}
            counts.update(("product", name, user) for name in names)
            counts.update(("category", name, user) for name in categories)

    members = {
        rule.tag_id: sum(
            1
            for (target, name, _), count in counts.items()
            if (target, name) == (rule.target, rule.target_name.upper()) and count >= rule.at_least
        )
        for rule in default_rules().rules
    }
    assert members["pizza_lover"] >= 1
    assert sum(1 for count in members.values() if count > 0) >= 5, members
