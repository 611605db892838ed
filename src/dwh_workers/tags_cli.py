"""``dwh tags``: the user tags for operators (docs/TAGS.md) — what each action reads or
does, and the text it prints.

* ``list`` (the default): the rules in force and their members;
* ``--user <login or id>``: a user's standing in every tag;
* ``check``: the rules file, against the names of the dictionaries' menus;
* ``plan`` / ``apply``: what putting the file in force would do, then doing it (and
  publishing the transitions it made);
* ``sweep [--at TIME]``: move the windows to a clock;
* ``verify``: every tag counted again from scratch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from dwh_adapters.kafka import KafkaPublisher
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import connect
from dwh_adapters.postgres.tag_store import PostgresTagAdmin, read_rules, tag_differences
from dwh_adapters.redis import RedisDictionaryScanner
from dwh_core.hashing import hash_key
from dwh_core.messages import OutMessage
from dwh_core.parsing import InvalidMessage, encode_json, parse_restaurant
from dwh_core.tag_rules import RuleFile, RulesError, check_names, load_rules
from dwh_core.tags import RuleChange, TagEvent, TagUpdate, transitions_by_tag
from dwh_workers import config
from dwh_workers.errors import OperatorError
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
        help="check, plan, apply: the rules file (default: DWH_TAG_RULES, else the one that ships)",
    )
    parser.add_argument(
        "--at",
        type=_timestamp,
        default=None,
        metavar="TIME",
        help="sweep: the clock, 'YYYY-MM-DD HH:MM:SS' UTC (default: now)",
    )
    parser.add_argument(
        "--topic",
        default=None,
        help="apply, sweep: where the transitions go (default: the CDM worker's "
        f"KAFKA_DESTINATION_TOPIC, else {TAGS_TOPIC})",
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of ``dwh tags``, if anything."""
    if args.user and args.action != "list":
        return f"tags: --user shows a user's tags; it does not go with {args.action}"
    if args.at is not None and args.action != "sweep":
        return "tags: --at goes with sweep"
    return None


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a timestamp: {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


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
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _topic(args: argparse.Namespace | None = None) -> str:
    if args is not None and args.topic:
        return str(args.topic)
    return config.load("cdm").worker.destination_topic or TAGS_TOPIC


def _rule_file(args: argparse.Namespace) -> RuleFile:
    path = args.rules or config.load("cdm").worker.tag_rules
    try:
        return load_rules(path)
    except RulesError as exc:
        raise OperatorError(f"the rules file is not valid:\n{exc}") from exc


def menu_names() -> tuple[set[str], set[str]]:
    """The category and dish names of every restaurant's menu in the dictionaries."""
    categories: set[str] = set()
    products: set[str] = set()
    with RedisDictionaryScanner(config.services().redis) as scanner:
        for value in scanner.values():
            try:
                restaurant = parse_restaurant(value)
            except InvalidMessage:
                continue  # a user
            categories.update(item.category for item in restaurant.menu)
            products.update(item.name for item in restaurant.menu)
    return categories, products


def _check(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    categories, products = menu_names()
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
            line = f"  {label:<9} {tag_id}"
            if label != "unchanged":
                entering, exiting = moves.get(tag_id, (0, 0))
                line = f"{line:<36} {entering} {verb[0]}, {exiting} {verb[1]}"
            print(line)


def _plan(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    with PostgresTagAdmin(config.services().postgres) as admin:
        change, update, version = admin.change(rule_file.rules, rule_file.text, _now(), apply=False)
    _describe_change(change, update, version, done=False)
    return 0


def publish_pending(admin: PostgresTagAdmin, topic: str) -> int:
    """Deliver every transition waiting in the warehouse to ``topic`` (the workers'
    too: they are delivered in the order they were recorded); the number sent."""
    with KafkaPublisher(config.services().kafka, topic) as publisher:

        def send(events: Sequence[TagEvent]) -> None:
            publisher.publish(
                [OutMessage(e.user_id.encode(), encode_json(e.message())) for e in events]
            )

        return admin.deliver(send)


def _apply(args: argparse.Namespace) -> int:
    rule_file = _rule_file(args)
    with PostgresTagAdmin(config.services().postgres) as admin:
        change, update, version = admin.change(rule_file.rules, rule_file.text, _now(), apply=True)
        _describe_change(change, update, version, done=True)
        if update.events:
            topic = _topic(args)
            print(f"{publish_pending(admin, topic)} transitions published to {topic}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    at = args.at or _now()
    with PostgresTagAdmin(config.services().postgres) as admin:
        update = admin.sweep(at)
        windows = [
            (tag_id, applied.window_start)
            for tag_id, applied in sorted(admin.rules().rules.items())
            if applied.window_start is not None
        ]
        print(f"windows swept to {at:%Y-%m-%d %H:%M:%S}: {len(update.events)} transitions")
        for tag_id, start in windows:
            print(f"  {tag_id:<24} counts orders dated after {start:%Y-%m-%d %H:%M:%S}")
        if not windows:
            print("  (no rule in force has a window)")
        if update.events:
            topic = _topic(args)
            print(f"{publish_pending(admin, topic)} transitions published to {topic}")
    return 0


def rebuilt(update: TagUpdate) -> None:
    """After ``dwh marts rebuild``, which counted the tags afresh in its transaction:
    what that changed, published."""
    print(f"tags counted afresh from the ledger: {len(update.events)} transitions")
    if update.events:
        with PostgresTagAdmin(config.services().postgres) as admin:
            topic = _topic()
            print(f"{publish_pending(admin, topic)} transitions published to {topic}")


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
            f", counting orders dated after {applied.window_start:%Y-%m-%d %H:%M:%S}"
            if applied.window_start
            else ""
        )
        print(
            f"  {tag_id:<24} {members.get(tag_id, 0):>6} members  «{rule.name}»: "
            f"{rule.describe()}{window} (since version {applied.since_version})"
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
                " WHERE user_id = %s AND order_cnt IS NOT NULL ORDER BY tag_id",
                [hash_key(user.user_id)],
            ).fetchall()
            print(user.describe())
            shown = [row for row in rows if row[0] in rules.rules]
            if not shown:
                print("  no orders count towards any tag in force")
            for tag_id, count, entered in shown:
                rule = rules.rules[tag_id].rule
                standing = (
                    f"member since {entered:%Y-%m-%d %H:%M:%S}" if entered else "not a member"
                )
                print(f"  {tag_id:<24} {count:>4} of {rule.at_least:<4} {standing}  «{rule.name}»")
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
