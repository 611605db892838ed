"""The user tags around the CDM worker (docs/TAGS.md): putting the first rules in force,
delivering the transitions, and the periodic sweep of the rules with a window.

* At start the worker reads and checks its rules file (``DWH_TAG_RULES``, by default
  the one that ships with it) and refuses to start if it is malformed, naming each
  line and problem.
* Its first upkeep puts the file's rules in force if none are (a new warehouse), and
  otherwise says when the file differs from the rules in force: rules change only by
  ``dwh tags apply``, after ``dwh tags plan`` has shown what would change. It also
  reports rules whose product or category the vault has never seen (when it has seen
  any: a new warehouse has none yet); ``dwh tags check`` checks the names against the
  dictionaries in Redis, the source of the names.
* After every batch it delivers the transitions the batch recorded. A delivery that
  fails is logged and counted, and tried again after a pause, while the marts go on:
  the transitions wait in the warehouse, in order.
* Every ``DWH_TAG_SWEEP_INTERVAL_S`` it moves the windows to its clock, and delivers
  whatever is waiting (what ``dwh tags apply`` recorded too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

from dwh_adapters.postgres.tag_store import PostgresTagAdmin
from dwh_core.layers import CdmService
from dwh_core.messages import bounded_reason
from dwh_core.ports import Clock
from dwh_core.tag_rules import RuleFile, check_names, load_rules
from dwh_core.tags import TagEvent, TagRule, transitions_by_tag
from dwh_workers.observability import Metrics

log = logging.getLogger("dwh.tags")
RETRY_DELIVERY_S = (1.0, 60.0)  # the first pause after a failed delivery, and the longest


def same_rules(rules: Sequence[TagRule], applied: Sequence[TagRule]) -> bool:
    return sorted(rules, key=lambda r: r.tag_id) == sorted(applied, key=lambda r: r.tag_id)


def whole_seconds(clock: Clock) -> datetime:
    """The clock's time without its fraction (the contract's timestamps have none)."""
    return clock.now().replace(microsecond=0)


class TagUpkeep:
    """The CDM worker's periodic work on the tags (see the module's docstring)."""

    def __init__(
        self,
        admin: PostgresTagAdmin,
        service: CdmService,
        clock: Clock,
        rules_path: str,
        sweep_interval_s: float,
        metrics: Metrics,
    ) -> None:
        self._admin = admin
        self._service = service
        self._clock = clock
        self._rule_file: RuleFile = load_rules(rules_path)
        self._sweep_interval_s = sweep_interval_s
        self._metrics = metrics
        self._started = False
        self._last_sweep = float("-inf")
        self._retry_delivery_at = float("-inf")
        self._delivery_pause_s = RETRY_DELIVERY_S[0]
        self._delivery_error = ""

    def __call__(self) -> None:
        if not self._started:
            self._start()
            self._started = True
        now = time.monotonic()
        sweep_due = now - self._last_sweep >= self._sweep_interval_s
        if sweep_due:
            update = self._admin.sweep(whole_seconds(self._clock))
            self._last_sweep = now
            if update.events:
                log.info("windows swept", extra={"transitions": _counts(update.events)})
        if now >= self._retry_delivery_at:
            self._deliver(force=sweep_due)

    def _deliver(self, force: bool) -> None:
        try:
            self._service.deliver_tag_events(force=force)
        except Exception as exc:
            why = bounded_reason(f"{type(exc).__name__}: {exc}")
            self._metrics.count("dwh_tag_delivery_failures_total", error=type(exc).__name__)
            if why != self._delivery_error:  # logged once, and again when it says more
                log.error(
                    "tag transitions not delivered; they wait in cdm.user_tag_events and "
                    "are tried again, the marts go on",
                    extra={"error": why, "retry_in_s": self._delivery_pause_s},
                )
            self._delivery_error = why
            self._retry_delivery_at = time.monotonic() + self._delivery_pause_s
            self._delivery_pause_s = min(self._delivery_pause_s * 2, RETRY_DELIVERY_S[1])
            return
        if self._delivery_error:
            log.info("tag transitions delivered again")
        self._delivery_error = ""
        self._delivery_pause_s = RETRY_DELIVERY_S[0]

    def _start(self) -> None:
        rule_file = self._rule_file
        self._check_names(rule_file)
        in_force = self._admin.rules()
        if in_force.version == 0:
            change, update, version = self._admin.change(
                rule_file.rules, rule_file.text, whole_seconds(self._clock), apply=True, first=True
            )
            if not change.is_empty:
                log.info(
                    "tag rules put in force",
                    extra={
                        "file": rule_file.source,
                        "version": version,
                        "tags": len(change.rules),
                        "transitions": _counts(update.events),
                    },
                )
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


def _counts(events: Sequence[TagEvent]) -> dict[str, list[int]]:
    return {tag: list(pair) for tag, pair in transitions_by_tag(events).items()}


def count_transitions(metrics: Metrics, events: Sequence[TagEvent]) -> None:
    """``dwh_tag_transitions_total{tag, event}``, per transition published."""
    for event in events:
        metrics.count("dwh_tag_transitions_total", tag=event.tag_id, event=event.event)
