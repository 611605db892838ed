"""The user tags around the CDM worker (docs/TAGS.md): the rules file, the names the
dictionaries know, putting the first rules in force, and the periodic sweep of the
rules with a window.

* At start the worker reads and checks its rules file (``DWH_TAG_RULES``, by default
  the one that ships with it) and refuses to start if it is malformed, naming each
  line and problem.
* Its first upkeep puts the file's rules in force if none are (a new warehouse), and
  otherwise says when the file differs from the rules in force: rules change only by
  ``dwh tags apply``, after ``dwh tags plan`` has shown what would change. It also
  reports rules whose product or category the vault has never seen (when it has seen
  any: a new warehouse has none yet); ``dwh tags check`` checks the names against the
  dictionaries in Redis, the source of the names.
* Then every ``DWH_TAG_SWEEP_INTERVAL_S`` it moves the windows to its clock, and
  publishes the transitions that made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from dwh_adapters.postgres.tag_store import PostgresTagAdmin
from dwh_adapters.redis import RedisSettings
from dwh_core.layers import CdmService
from dwh_core.parsing import InvalidMessage, parse_restaurant
from dwh_core.ports import Clock
from dwh_core.tag_rules import RuleFile, check_names, load_rules
from dwh_core.tags import TagEvent, TagRule, transitions_by_tag
from dwh_workers.observability import Metrics

log = logging.getLogger("dwh.tags")
SCAN_CHUNK = 500


def known_names(settings: RedisSettings) -> tuple[set[str], set[str]]:
    """The category and product names of every restaurant's menu in the dictionaries."""
    categories: set[str] = set()
    products: set[str] = set()
    client = settings.client()
    try:
        keys = list(client.scan_iter(count=SCAN_CHUNK))
        for start in range(0, len(keys), SCAN_CHUNK):
            chunk = keys[start : start + SCAN_CHUNK]
            for value in client.mget(chunk):
                if not value:
                    continue
                try:
                    restaurant = parse_restaurant(
                        value if isinstance(value, bytes) else value.encode()
                    )
                except InvalidMessage:
                    continue  # a user, or not a dictionary entry at all
                categories.update(item.category for item in restaurant.menu)
                products.update(item.name for item in restaurant.menu)
    finally:
        client.close()
    return categories, products


def same_rules(rules: Sequence[TagRule], applied: Sequence[TagRule]) -> bool:
    return sorted(rules, key=lambda r: r.tag_id) == sorted(applied, key=lambda r: r.tag_id)


class TagUpkeep:
    """The CDM worker's periodic work on the tags (see the module's docstring)."""

    def __init__(
        self,
        admin: PostgresTagAdmin,
        service: CdmService,
        clock: Clock,
        rules_path: str,
        sweep_interval_s: float,
    ) -> None:
        self._admin = admin
        self._service = service
        self._clock = clock
        self._rule_file: RuleFile = load_rules(rules_path)
        self._sweep_interval_s = sweep_interval_s
        self._started = False
        self._last_sweep = float("-inf")

    def __call__(self) -> None:
        if not self._started:
            self._start()
            self._started = True
        now = time.monotonic()
        if now - self._last_sweep >= self._sweep_interval_s:
            update = self._admin.sweep(self._clock.now())
            self._last_sweep = now
            if update.events:
                log.info("windows swept", extra={"transitions": _counts(update.events)})
            # Also what `dwh tags apply` recorded but could not publish.
            self._service.deliver_tag_events(force=True)

    def _start(self) -> None:
        rule_file = self._rule_file
        self._check_names(rule_file)
        in_force = self._admin.rules()
        if in_force.version == 0:
            change, update, version = self._admin.change(
                rule_file.rules, _source_text(rule_file), self._clock.now(), apply=True
            )
            log.info(
                "tag rules put in force",
                extra={
                    "file": rule_file.source,
                    "version": version,
                    "tags": len(change.rules),
                    "transitions": _counts(update.events),
                },
            )
            self._service.deliver_tag_events(force=True)
        elif not same_rules(rule_file.rules, [a.rule for a in in_force.rules.values()]):
            log.warning(
                "the rules file differs from the rules in force; the worker keeps those "
                "until `dwh tags plan` and `dwh tags apply`",
                extra={"file": rule_file.source, "version": in_force.version},
            )

    def _check_names(self, rule_file: RuleFile) -> None:
        categories, products = self._admin.known_names()
        if not categories:
            return  # a new warehouse: no names seen yet
        for problem in check_names(rule_file, categories, products):
            log.error(
                "%s:%d: %s",
                rule_file.source,
                problem.line,
                problem.message,
                extra={"file": rule_file.source, "line": problem.line},
            )


def _source_text(rule_file: RuleFile) -> str:
    with open(rule_file.source, encoding="utf-8") as text:
        return text.read()


def _counts(events: Sequence[TagEvent]) -> dict[str, list[int]]:
    return {tag: list(pair) for tag, pair in transitions_by_tag(events).items()}


def count_transitions(metrics: Metrics, events: Sequence[TagEvent]) -> None:
    """``dwh_tag_transitions_total{tag, event}``, per transition published."""
    for event in events:
        metrics.count("dwh_tag_transitions_total", tag=event.tag_id, event=event.event)
