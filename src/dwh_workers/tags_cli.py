"""``dwh tags``: the user tags for operators (docs/TAGS.md) — what each action reads or
does, and the text it prints.

* ``list`` (the default): the rules in force and their members;
* ``--user <login or id>``: a user's standing in every tag;
* ``check``: the rules file, against the dictionaries' names;
* ``plan`` / ``apply``: what putting the file in force would do, then doing it (and
  publishing the transitions it made);
* ``sweep [--at TIME]``: move the windows to a clock;
* ``verify``: every tag counted again from scratch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from dwh_adapters.kafka import KafkaPublisher, KafkaSettings
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import connect
from dwh_adapters.postgres.tag_store import PostgresTagAdmin, read_rules, tag_differences
from dwh_core.messages import OutMessage
from dwh_core.parsing import encode_json
from dwh_core.tag_rules import RuleFile, RulesError, check_names, load_rules
from dwh_core.tags import RuleChange, TagEvent, TagUpdate, transitions_by_tag
from dwh_workers import config
from dwh_workers.errors import OperatorError
from dwh_workers.tags import known_names
from dwh_workers.topology import TAGS_TOPIC

ACTIONS = ("list", "check", "plan", "apply", "sweep", "verify")
SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    parser.add_argument("--user", help="a user id (24 hex chars) or login: their tags")
    parser.add_argument(
        "--rules",
        default=None,
        metavar="FILE",
        help="the rules file (default: DWH_TAG_RULES, else the one that ships)",
    )
    parser.add_argument(
        "--at",
        type=_timestamp,
        default=None,
        metavar="TIME",
        help="sweep: the clock, 'YYYY-MM-DD HH:MM:SS' UTC (default: now)",
    )
    parser.add_argument(
        "--topic", default=TAGS_TOPIC, help="apply, sweep: where the transitions go"
    )


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a timestamp: {text!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.user:
        return _user(args.user)
    return {
        "list": _list,
        "check": _check,
        "plan": _plan,
        "apply": _apply,
        "sweep": _sweep,
        "verify": _verify,
    }[args.action](args)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rule_file(args: argparse.Namespace) -> RuleFile:
    path = args.rules or config.load("cdm").worker.tag_rules
    try:
        return load_rules(path)
    except RulesError as exc:
        raise OperatorError(f"the rules file is not valid:\n{exc}") from exc


def _source(rule_file: RuleFile) -> str:
    with open(rule_file.source, encoding="utf-8") as text:
        return text.read()


def _check(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    categories, products = known_names(config.services().redis)
    problems = check_names(rule_file, categories, products)
    for problem in problems:
        print(f"{rule_file.source}:{problem.line}: {problem.message}")
    if problems:
        return 1
    print(
        f"{rule_file.source}: {len(rule_file.rules)} tags, every name known to the "
        f"dictionaries ({len(categories)} categories, {len(products)} dishes)"
    )
    return 0


def _describe_change(change: RuleChange, update: TagUpdate, version: int, done: bool) -> None:
    if change.is_empty:
        print(f"the rules in force (version {version}) are the file's: nothing to change")
        return
    moves = transitions_by_tag(update.events)
    verb = ("entered", "exited") if done else ("would enter", "would exit")
    print(f"{'applied' if done else 'plan:'} ruleset version {version}")
    for label, tag_ids in (
        ("added", change.added),
        ("changed", change.changed),
        ("removed", tuple(rule.tag_id for rule in change.removed)),
        ("unchanged", change.unchanged),
    ):
        for tag_id in tag_ids:
            entering, exiting = moves.get(tag_id, (0, 0))
            line = f"  {label:<9} {tag_id:<24}"
            if label != "unchanged":
                line += f" {entering} {verb[0]}, {exiting} {verb[1]}"
            print(line)


def _plan(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    with PostgresTagAdmin(config.services().postgres) as admin:
        change, update, version = admin.change(
            rule_file.rules, _source(rule_file), _now(), apply=False
        )
    _describe_change(change, update, version, done=False)
    return 0


def _publisher(kafka: KafkaSettings, topic: str) -> KafkaPublisher:
    return KafkaPublisher(kafka, topic)


def _deliver(admin: PostgresTagAdmin, topic: str) -> int:
    kafka = config.services().kafka

    with _publisher(kafka, topic) as publisher:

        def send(events: Sequence[TagEvent]) -> None:
            publisher.publish(
                [OutMessage(e.user_id.encode(), encode_json(e.message())) for e in events]
            )

        return admin.deliver(send)


def _apply(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    with PostgresTagAdmin(config.services().postgres) as admin:
        change, update, version = admin.change(
            rule_file.rules, _source(rule_file), _now(), apply=True
        )
        _describe_change(change, update, version, done=True)
        if update.events:
            sent = _deliver(admin, args.topic)
            print(f"{sent} transitions published to {args.topic}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    at = args.at or _now()
    with PostgresTagAdmin(config.services().postgres) as admin:
        update = admin.sweep(at)
        print(f"windows swept to {at:%Y-%m-%d %H:%M:%S}: {len(update.events)} transitions")
        if update.events:
            print(f"{_deliver(admin, args.topic)} transitions published to {args.topic}")
    return 0


def recount_after_rebuild() -> None:
    """After ``dwh marts rebuild``: the tags counted afresh from the rewritten ledger,
    and the transitions that made published."""
    with PostgresTagAdmin(config.services().postgres) as admin:
        update = admin.recount(_now())
        print(f"tags counted afresh from the ledger: {len(update.events)} transitions")
        if update.events:
            print(f"{_deliver(admin, TAGS_TOPIC)} transitions published to {TAGS_TOPIC}")


def _list(args: argparse.Namespace) -> int:
    with connect(config.services().postgres) as conn:
        rules = read_rules(conn)
        members: dict[str, int] = dict(
            conn.execute("SELECT tag_id, count(*) FROM cdm.user_tags GROUP BY tag_id").fetchall()
        )
    if not rules.rules:
        print("no tag rules in force (a CDM worker puts its file's in force when it starts)")
        return 0
    print(f"tag rules in force: version {rules.version}")
    for tag_id, applied in sorted(rules.rules.items()):
        rule = applied.rule
        window = (
            f", window from {applied.window_start:%Y-%m-%d %H:%M:%S}"
            if applied.window_start
            else ""
        )
        print(
            f"  {tag_id:<24} {members.get(tag_id, 0):>6} members  «{rule.name}»: "
            f"{rule.describe()}{window}"
        )
    return 0


def _user(id_or_login: str) -> int:
    settings = config.services().postgres
    with PostgresMarts(settings) as marts:
        users = marts.find_users(id_or_login)
    if not users:
        raise OperatorError(f"no user with id or login {id_or_login!r}")
    with connect(settings) as conn:
        rules = read_rules(conn)
        for user in users:
            rows = conn.execute(
                "SELECT tag_id, order_cnt, entered_at FROM cdm.user_tag_counters"
                " WHERE user_source_id = %s AND order_cnt IS NOT NULL ORDER BY tag_id",
                [user.user_id],
            ).fetchall()
            print(user.describe())
            if not rows:
                print("  no orders count towards any tag")
            for tag_id, count, entered in rows:
                applied = rules.rules.get(tag_id)
                if applied is None:
                    continue
                standing = (
                    f"member since {entered:%Y-%m-%d %H:%M:%S}" if entered else "not a member"
                )
                print(
                    f"  {tag_id:<24} {count:>4} of {applied.rule.at_least:<4} {standing}"
                    f"  «{applied.rule.name}»"
                )
    return 0


def _verify(args: argparse.Namespace) -> int:
    with connect(config.services().postgres) as conn:
        compared, found = tag_differences(conn)
    if not found:
        print(
            f"tags verified: {compared} (user, tag) counts recounted from scratch: no differences"
        )
        return 0
    print(f"tags: {len(found)} differences in {compared} (user, tag) counts")
    for difference in found[:SHOWN]:
        print(
            f"  user {difference.user_key} tag {difference.tag_id}: {difference.what}: "
            f"expected {difference.expected}, found {difference.found}"
        )
    if len(found) > SHOWN:
        print(f"  … and {len(found) - SHOWN} more")
    return 1
