"""The tag rules of docs/CONTRACT.md §8 on their own: steps of a batch taken version by
version, thresholds crossed both ways, windows, and rule changes counted afresh."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from dwh_core import (
    AppliedRule,
    Contribution,
    KeyName,
    OrderFacts,
    RuleIndex,
    TagRule,
    TagState,
    count_matches,
    fold_steps,
    hash_key,
    plan_update,
    recount,
    rule_change,
    tag_steps,
    transitions_by_tag,
    window_start_at,
    window_steps,
)
from dwh_core.orders import OrderId

T0 = datetime(2023, 4, 1, 12, 0)
PIZZA = KeyName(hash_key("Пицца"), "Пицца")
MARGHERITA = KeyName(hash_key("p-1"), "Пицца «Маргарита»")
LOVER = TagRule("pizza_lover", "Любитель пиццы", "category", "ПИЦЦА", 2)
MARGHERITA_FAN = TagRule("margherita", "Маргарита", "product", " пицца «маргарита»", 1)


def facts(
    order_id: int, status: str, minute: int, user: str = "u1", days_ago: int = 0
) -> OrderFacts:
    return OrderFacts(
        order_key=hash_key(str(order_id)),
        order_id=OrderId(order_id),
        user_key=hash_key(user),
        user_id=user,
        update_ts=T0 + timedelta(minutes=minute),
        status=status,
        products=[MARGHERITA],
        categories=[PIZZA],
        content_hash=f"{order_id}-{status}-{minute}",
        date=T0 - timedelta(days=days_ago),
    )


def index(*rules: TagRule, clock: datetime = T0) -> RuleIndex:
    return RuleIndex(AppliedRule(rule, window_start_at(rule, clock)) for rule in rules)


FEED = [
    facts(1, "CLOSED", 1),
    facts(2, "CLOSED", 2),
    facts(2, "CANCELLED", 3),  # a refund: below the threshold again
    facts(2, "CLOSED", 2),  # stale
    facts(3, "CLOSED", 4),
]


def test_names_match_as_the_keys_do_trimmed_and_case_insensitive() -> None:
    rules = index(LOVER, MARGHERITA_FAN)
    update = fold_steps(tag_steps(rules, {}, FEED), {}, rules)
    assert [(e.tag_id, e.event, e.sequence, e.order_cnt) for e in update.events] == [
        ("margherita", "entered", 1, 1),
        ("pizza_lover", "entered", 1, 2),
        ("pizza_lover", "exited", 2, 1),
        ("pizza_lover", "entered", 3, 2),
    ]
    assert {(s.tag_id, s.order_cnt, s.is_member) for s in update.states} == {
        ("pizza_lover", 2, True),
        ("margherita", 2, True),
    }


def test_batches_and_replays_give_the_same_transitions() -> None:
    rules = index(LOVER)
    whole = fold_steps(tag_steps(rules, {}, FEED), {}, rules)
    ledger: dict[uuid.UUID, Contribution] = {}
    states: dict[tuple[uuid.UUID, str], TagState] = {}
    events = []
    for version in [*FEED, *FEED]:  # one by one, then everything again
        steps = tag_steps(rules, ledger, [version])
        update = fold_steps(steps, states, rules)
        states.update(((s.user_key, s.tag_id), s) for s in update.states)
        events += update.events
        ledger.update((c.order_key, c) for c in plan_update(ledger, [version]).contributions)
    assert events == whole.events


def test_a_window_counts_recent_orders_and_a_sweep_ages_them_out() -> None:
    rule = TagRule("recent", "Недавно", "category", "Пицца", 2, within_days=30)
    rules = index(rule)
    feed = [facts(1, "CLOSED", 1, days_ago=40), facts(2, "CLOSED", 2, days_ago=10)]
    feed.append(facts(3, "CLOSED", 3, days_ago=5))
    update = fold_steps(tag_steps(rules, {}, feed), {}, rules)
    assert [e.event for e in update.events] == ["entered"]
    ledger = plan_update({}, feed).contributions
    applied = rules.rules["recent"]
    assert window_steps(applied, T0 - timedelta(days=15), ledger) == []
    steps = window_steps(applied, T0 - timedelta(days=9), ledger)
    assert [(s.delta, s.at) for s in steps] == [(-1, T0 + timedelta(days=20))]
    states = {(s.user_key, s.tag_id): s for s in update.states}
    assert [e.event for e in fold_steps(steps, states, rules).events] == ["exited"]


def test_a_rule_change_counts_afresh_and_removed_tags_let_their_members_go() -> None:
    current = index(LOVER, MARGHERITA_FAN)
    states = fold_steps(tag_steps(current, {}, FEED), {}, current).states
    stricter = TagRule("pizza_lover", "Любитель пиццы", "category", "Пицца", 3)
    change = rule_change(current, [stricter], T0)
    assert (change.changed, [r.tag_id for r in change.removed]) == (
        ("pizza_lover",),
        ["margherita"],
    )
    rows = plan_update({}, FEED).contributions
    counts = count_matches(change.recounted, rows)
    assert set(counts.values()) == {2}
    update = recount(change.recounted, change.removed, counts, states, {}, T0)
    assert transitions_by_tag(update.events) == {"margherita": (0, 1), "pizza_lover": (0, 1)}
    assert rule_change(index(LOVER), [LOVER], T0).is_empty
