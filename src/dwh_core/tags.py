"""User tags (docs/CONTRACT.md §8, docs/TAGS.md): rules over the counted orders, and the
entered and exited transitions they make.

A rule (:class:`TagRule`) names a product or a category and a threshold: a user is a
member while at least ``at_least`` of their counted orders (the orders the marts count,
:mod:`dwh_core.counters`) contain it; with ``within_days``, only orders dated within the
window count (:class:`AppliedRule`).

How it stays exact: the tags move with the same ledger rows that move the marts
(:class:`~dwh_core.counters.Contribution`), in the same transaction. Each order version
that changes an order's ledger row is a **step** (:func:`tag_steps`): +1 or -1 on the
count of every rule the old and the new row match differently. Steps are taken one by
one, in the order the versions came, and a transition is recorded when a count crosses
its rule's threshold (:func:`fold_steps`). A stale version or a replay changes no ledger
row, so it makes no step; a batch committed is never taken again, and a batch not
committed left nothing; so every replay, duplicate or crash leaves the same counts and
the same transitions. Each transition's time is the ``update_ts`` of the version that
made it, not the clock, for the same reason.

Windows: a rule with a window counts the orders dated after its ``window_start``. The
window only moves when a sweep moves it (:func:`window_steps`), to a clock given to the
sweep, so results depend on data and that clock only. An order leaving the window is a
-1 step dated ``order_date + within_days``, the moment it aged out.

Rule changes (:func:`recount`): the counts of a new or changed rule are counted afresh
from every ledger row, and the members that differ enter or exit.

Products are matched by name, through the hash rule of :mod:`dwh_core.hashing` (so
trimmed and case-insensitive, like the keys of categories): the ledger keeps the hash
keys of the names each order carried.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import attrs
from attrs import Factory, field, frozen

from dwh_core.counters import Contribution, contribution_of
from dwh_core.hashing import hash_key
from dwh_core.orders import OrderFacts

Target = Literal["product", "category"]
TARGETS: tuple[Target, ...] = ("product", "category")
ENTERED = "entered"
EXITED = "exited"


@frozen
class TagRule:
    """A tag: its id, its display name, and when a user has it: at least ``at_least``
    counted orders containing ``target_name`` (a product's or a category's name),
    dated within the last ``within_days`` days if that is given."""

    tag_id: str
    name: str
    target: Target
    target_name: str
    at_least: int
    within_days: int | None = None
    target_key: uuid.UUID = field(
        init=False, eq=False, default=Factory(lambda rule: hash_key(rule.target_name), True)
    )

    def describe(self) -> str:
        window = f" within {self.within_days} days" if self.within_days else ""
        return f"{self.target} {self.target_name!r} >= {self.at_least}{window}"


@frozen
class AppliedRule:
    """A rule in force: for a rule with a window, the orders dated after
    ``window_start`` count (None for a rule without one)."""

    rule: TagRule
    window_start: datetime | None = None
    since_version: int = 0  # the ruleset version that put this rule in force

    def counts(self, contribution: Contribution | None) -> bool:
        """Whether this order (its ledger row) counts towards the rule."""
        if contribution is None:
            return False
        rule = self.rule
        keys = contribution.categories if rule.target == "category" else contribution.product_names
        return rule.target_key in keys and self.in_window(contribution)

    def in_window(self, contribution: Contribution) -> bool:
        """Whether the order's date is in the rule's window (always, without one)."""
        if self.rule.within_days is None:
            return True
        date = contribution.order_date
        return date is not None and self.window_start is not None and date > self.window_start


def window_start_at(rule: TagRule, clock: datetime) -> datetime | None:
    """Where the window of ``rule`` starts at ``clock`` (None: the rule has none)."""
    return None if rule.within_days is None else clock - timedelta(days=rule.within_days)


@frozen
class TagStep:
    """+1 or -1 on the count of (``user_key``, ``tag_id``), at ``at``; ``user_id`` is the
    user's source id when the step knows it (a step that takes an order away from a
    user may not)."""

    user_key: uuid.UUID
    user_id: str | None
    tag_id: str
    delta: int
    at: datetime


@frozen
class TagState:
    """A user's standing in a tag: the orders that count, the sequence number of the
    last transition, and since when they are a member (None: not a member)."""

    user_key: uuid.UUID
    tag_id: str
    user_id: str
    order_cnt: int
    sequence: int = 0
    entered_at: datetime | None = None

    @property
    def is_member(self) -> bool:
        return self.entered_at is not None


@frozen
class TagEvent:
    """A transition: ``event`` is ``entered`` or ``exited``; ``(user_id, tag_id,
    sequence)`` identifies it, so a consumer drops replays."""

    user_key: uuid.UUID
    user_id: str
    tag_id: str
    tag_name: str
    event: str
    at: datetime
    sequence: int
    order_cnt: int

    def message(self) -> dict[str, object]:
        """The value published to ``cdm-service-user-tags`` (docs/CONTRACT.md §8)."""
        return {
            "user_id": self.user_id,
            "tag_id": self.tag_id,
            "tag_name": self.tag_name,
            "event": self.event,
            "at": self.at.replace(microsecond=0).isoformat(sep=" "),
            "sequence": self.sequence,
        }


@frozen
class TagUpdate:
    """What a batch, a sweep or a rule change does to the tags: the states it changed
    (sorted by key) and the transitions, in order."""

    states: list[TagState] = Factory(list)
    events: list[TagEvent] = Factory(list)


class RuleIndex:
    """The rules in force, by the key they look for (the hot path asks per order);
    ``version`` is the ruleset's (a rule change moves it), ``revision`` moves with
    every change of the rules or of a window."""

    def __init__(self, rules: Iterable[AppliedRule], version: int = 0, revision: int = 0) -> None:
        self.version = version
        self.revision = revision
        self.rules: dict[str, AppliedRule] = {applied.rule.tag_id: applied for applied in rules}
        # By the key's 128 bits: an int hashes in C, a uuid.UUID in Python.
        self._by_category: dict[int, list[AppliedRule]] = {}
        self._by_product: dict[int, list[AppliedRule]] = {}
        for applied in self.rules.values():
            index = self._by_category if applied.rule.target == "category" else self._by_product
            index.setdefault(applied.rule.target_key.int, []).append(applied)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def counting(self, contribution: Contribution | None) -> dict[str, AppliedRule]:
        """The rules this order (its ledger row) counts towards, by tag id, in the order
        of its keys: those whose key it holds, and whose window it is in."""
        found: dict[str, AppliedRule] = {}
        if contribution is None:
            return found
        for keys, index in (
            (contribution.categories, self._by_category),
            (contribution.product_names, self._by_product),
        ):
            for key in keys:
                for applied in index.get(key.int, ()):
                    if applied.in_window(contribution):
                        found[applied.rule.tag_id] = applied
        return found


def tag_steps(
    rules: RuleIndex,
    ledger: Mapping[uuid.UUID, Contribution],
    versions: Iterable[OrderFacts],
    made: Iterable[Contribution] = (),
) -> list[TagStep]:
    """The steps of a batch of order versions, in the order they came, given the ledger
    rows of its orders before the batch: each version newer than its order's row so far
    replaces it (as :func:`~dwh_core.counters.plan_update` does, version by version).
    ``made``: ledger rows already made of some of these versions (the batch's update),
    so that they are not made twice."""
    if not rules:
        return []
    rows = dict(ledger)
    ready = {row.order_key: row for row in made}
    steps: list[TagStep] = []
    for facts in versions:
        old = rows.get(facts.order_key)
        version = facts.version
        if old is not None and old.version >= version:
            continue
        new = ready.get(facts.order_key)
        if new is None or new.version != version:
            new = contribution_of(facts)
        rows[facts.order_key] = new
        was, now = rules.counting(old), rules.counting(new)
        same_user = old is not None and old.user_key == new.user_key
        for tag_id in dict.fromkeys([*was, *now]):
            if tag_id in was and tag_id in now and same_user:
                continue
            if old is not None and tag_id in was:
                steps.append(TagStep(old.user_key, None, tag_id, -1, facts.update_ts))
            if tag_id in now:
                steps.append(TagStep(new.user_key, facts.user_id, tag_id, 1, facts.update_ts))
    return steps


def window_steps(
    applied: AppliedRule, new_start: datetime, rows: Iterable[Contribution]
) -> list[TagStep]:
    """The -1 steps of the orders that leave the window of ``applied`` when its start
    moves to ``new_start``: those dated after the old start and not after the new one,
    in the order they aged out."""
    rule, old_start = applied.rule, applied.window_start
    if rule.within_days is None or old_start is None or new_start <= old_start:
        return []
    window = timedelta(days=rule.within_days)
    leaving = sorted(
        (
            row
            for row in rows
            if applied.counts(row) and row.order_date is not None and row.order_date <= new_start
        ),
        key=lambda row: (row.order_date, row.order_key.int),
    )
    return [
        TagStep(row.user_key, None, rule.tag_id, -1, row.order_date + window)
        for row in leaving
        if row.order_date is not None
    ]


def fold_steps(
    steps: Sequence[TagStep], states: Mapping[tuple[uuid.UUID, str], TagState], rules: RuleIndex
) -> TagUpdate:
    """Take the steps one by one from the stored ``states`` (absent: no order counts
    yet); a count that crosses its rule's threshold is a transition."""
    current = dict(states)
    events: list[TagEvent] = []
    for step in steps:
        key = (step.user_key, step.tag_id)
        state = current.get(key) or TagState(step.user_key, step.tag_id, step.user_id or "", 0)
        count = state.order_cnt + step.delta
        if count < 0:
            # Only a ledger out of step with the tag counts gets here.
            raise ValueError(f"tag count below zero: user {step.user_key}, tag {step.tag_id}")
        rule = rules.rules[step.tag_id].rule
        current[key] = _moved(state, count, rule, step.at, step.user_id, events)
    touched = {(step.user_key, step.tag_id) for step in steps}
    return TagUpdate(_sorted_states(current[key] for key in touched), events)


def _moved(
    state: TagState,
    count: int,
    rule: TagRule,
    at: datetime,
    user_id: str | None,
    events: list[TagEvent],
) -> TagState:
    """``state`` with ``count`` orders; the transition, if any, appended to ``events``."""
    member = count >= rule.at_least
    sequence, entered_at = state.sequence, state.entered_at
    if member != state.is_member:
        sequence += 1
        entered_at = at if member else None
        events.append(
            TagEvent(
                state.user_key,
                user_id or state.user_id,
                rule.tag_id,
                rule.name,
                ENTERED if member else EXITED,
                at,
                sequence,
                count,
            )
        )
    return TagState(
        state.user_key, state.tag_id, user_id or state.user_id, count, sequence, entered_at
    )


def count_matches(
    rules: Iterable[AppliedRule], rows: Iterable[Contribution]
) -> Counter[tuple[uuid.UUID, str]]:
    """The count of every (user, tag) of ``rules`` from ledger rows, from scratch."""
    index = RuleIndex(rules)
    counts: Counter[tuple[uuid.UUID, str]] = Counter()
    for row in rows:
        for tag_id in index.counting(row):
            counts[(row.user_key, tag_id)] += 1
    return counts


def recount(
    rules: Iterable[AppliedRule],
    removed: Iterable[TagRule],
    counts: Mapping[tuple[uuid.UUID, str], int],
    states: Iterable[TagState],
    user_ids: Mapping[uuid.UUID, str],
    at: datetime,
) -> TagUpdate:
    """Set the counts of ``rules`` to ``counts`` (from :func:`count_matches`): members
    that no longer qualify exit, users that now qualify enter, at ``at``. The members of
    the ``removed`` rules exit. ``states`` are the stored states of all these tags (of
    every user); ``user_ids`` gives the source id of a user new to a tag."""
    by_tag = {applied.rule.tag_id: applied.rule for applied in rules}
    # A removed rule: no count can reach its threshold, so every member exits.
    retired = {rule.tag_id: attrs.evolve(rule, at_least=2**31 - 1) for rule in removed}
    stored = {(state.user_key, state.tag_id): state for state in states}
    events: list[TagEvent] = []
    changed: list[TagState] = []
    for key in sorted(stored.keys() | counts.keys(), key=lambda k: (k[1], k[0].int)):
        user_key, tag_id = key
        rule = by_tag.get(tag_id) or retired.get(tag_id)
        if rule is None:
            continue
        state = stored.get(key) or TagState(user_key, tag_id, user_ids.get(user_key, ""), 0)
        moved = _moved(state, counts.get(key, 0), rule, at, None, events)
        if moved != state or key not in stored:
            changed.append(moved)
    return TagUpdate(_sorted_states(changed), events)


def _sorted_states(states: Iterable[TagState]) -> list[TagState]:
    return sorted(states, key=lambda s: (s.user_key.int, s.tag_id))


@frozen
class RuleChange:
    """What putting ``wanted`` rules in force does: the rules afterwards (a new or
    changed rule with a window starts it at the clock of the change), which tags are
    added, changed, removed or unchanged, and the rules to count afresh."""

    rules: tuple[AppliedRule, ...]
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[TagRule, ...]
    unchanged: tuple[str, ...]

    @property
    def recounted(self) -> tuple[AppliedRule, ...]:
        moved = {*self.added, *self.changed}
        return tuple(applied for applied in self.rules if applied.rule.tag_id in moved)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def rule_change(current: RuleIndex, wanted: Sequence[TagRule], clock: datetime) -> RuleChange:
    """Compare the rules in force with ``wanted`` (a rule is changed when anything of
    it but its id differs); unchanged rules keep their windows."""
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    rules: list[AppliedRule] = []
    for rule in wanted:
        old = current.rules.get(rule.tag_id)
        if old is not None and old.rule == rule:
            unchanged.append(rule.tag_id)
            rules.append(old)
            continue
        (added if old is None else changed).append(rule.tag_id)
        rules.append(AppliedRule(rule, window_start_at(rule, clock)))
    wanted_ids = {rule.tag_id for rule in wanted}
    removed = tuple(
        applied.rule for tag_id, applied in current.rules.items() if tag_id not in wanted_ids
    )
    return RuleChange(tuple(rules), tuple(added), tuple(changed), removed, tuple(unchanged))


def transitions_by_tag(events: Iterable[TagEvent]) -> dict[str, tuple[int, int]]:
    """Tag id -> (users entering, users exiting)."""
    counts: dict[str, tuple[int, int]] = {}
    for event in events:
        entering, exiting = counts.get(event.tag_id, (0, 0))
        counts[event.tag_id] = (
            (entering + 1, exiting) if event.event == ENTERED else (entering, exiting + 1)
        )
    return counts
