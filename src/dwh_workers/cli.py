"""``dwh``: the operator's command. ``dwh --help`` lists the tasks.

This module holds the arguments and thin command functions: what a command reads or
does is in :mod:`~dwh_workers.warehouse_queries`, :mod:`~dwh_workers.pipeline_status`
and :mod:`~dwh_workers.replay` (and the adapters), what it prints in
:mod:`~dwh_workers.reports`.

Errors are one line on stderr naming what failed (which service, where;
:mod:`~dwh_workers.error_messages`) and exit status 1; ``--debug`` (anywhere on the line)
shows the traceback and the client logs. Connection settings come from the environment,
as for the workers (docs/configuration.md). A command that needs Kafka first checks that
the broker answers, and says so within :data:`KAFKA_TIMEOUT_S` seconds if it does not.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import TypeAlias

from dwh_adapters.kafka import KafkaSettings, ensure_topics, read_dead_letters, wait_for_broker
from dwh_adapters.kafka.dead_letters import redrive, redrive_destination
from dwh_adapters.kafka.trouble import KafkaUnreachable
from dwh_adapters.postgres.migrations import migrate
from dwh_adapters.postgres.settings import connect
from dwh_adapters.redis import RedisDictionaryWriter
from dwh_core.messages import dead_letter_topic
from dwh_workers import config, reports, tags_cli
from dwh_workers.error_messages import describe_error
from dwh_workers.errors import OperatorError
from dwh_workers.feed import Feed, generate
from dwh_workers.pipeline_status import follow, read_status, read_summary
from dwh_workers.replay import replay, replay_targets
from dwh_workers.sample import dictionary_entries, load_dictionaries_file, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, LOCAL_PORTS, ORDERS_TOPIC, TOPICS
from dwh_workers.warehouse_queries import (
    read_baseline,
    read_marts,
    read_totals,
    rebuild_marts,
    verify_marts,
)

Command = Callable[[argparse.Namespace], int]
KAFKA_TIMEOUT_S = 8.0


def _kafka() -> KafkaSettings:
    """The Kafka settings, once the cluster has answered."""
    kafka = config.services().kafka
    try:
        wait_for_broker(kafka, timeout=KAFKA_TIMEOUT_S)
    except KafkaUnreachable as exc:
        raise OperatorError(f"Kafka at {kafka.describe()}: {exc}") from exc
    return kafka


def _migrate(args: argparse.Namespace) -> int:
    services = config.services()
    with connect(services.postgres) as connection:
        applied = migrate(connection)
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _dictionaries_load(args: argparse.Namespace) -> int:
    dictionaries = (
        load_dictionaries_file(args.file)
        if args.file
        else sample_dictionaries(seed=args.seed, users=args.users, restaurants=args.restaurants)
    )
    entries = dictionary_entries(dictionaries)
    writer = RedisDictionaryWriter(config.services().redis)
    try:
        writer.put_many(entries)
    finally:
        writer.close()
    source = args.file or f"the built-in sample (seed {args.seed})"
    print(
        f"loaded {len(dictionaries.users)} users and {len(dictionaries.restaurants)} "
        f"restaurants from {source} into Redis"
    )
    return 0


def _orders_generate(args: argparse.Namespace) -> int:
    feed = Feed(
        orders=args.count,
        seed=args.seed,
        dictionary_seed=args.dictionary_seed,
        cancelled_share=args.cancelled_share,
        update_share=args.update_share,
        duplicate_share=args.duplicate_share,
        rate=args.rate,
        duration_s=args.duration,
        after=args.after,
    )
    sent = generate(_kafka(), args.topic, feed)
    if feed.live_messages() is None:
        what = f"{args.count:,} orders"
    else:
        what = f"a live feed of {args.duration:g}s at {args.rate:g}/s"
    after = f", after the first {args.after:,} orders" if args.after else ""
    print(f"produced {sent:,} messages to {args.topic} ({what} of seed {args.seed}{after})")
    return 0


def _status(args: argparse.Namespace) -> int:
    _kafka()
    ports = None if args.ports is None else dict(zip(LAYER_NAMES, args.ports, strict=False))
    print(reports.status_report(read_status(config.services(), ports)))
    return 0


def _marts(args: argparse.Namespace) -> int:
    postgres = config.services().postgres
    if args.totals:
        totals = read_totals(postgres)
        print(totals.to_json() if args.json else reports.totals_report(totals))
    else:
        marts = read_marts(postgres, user=args.user, category=args.category, top=args.top)
        print(reports.marts_report(marts, top=args.top))
    return 0


def _marts_verify(args: argparse.Namespace) -> int:
    differences = verify_marts(config.services().postgres, limit=args.limit)
    print(reports.verify_report(differences))
    return 0 if differences.empty else 1


def _marts_rebuild(args: argparse.Namespace) -> int:
    result = rebuild_marts(config.services().postgres, force=args.force)
    print(reports.rebuild_report(result))
    tags_cli.rebuilt(result.tags)
    return 0


def _summary(args: argparse.Namespace) -> int:
    baseline = read_baseline(args.baseline) if args.baseline else None
    _kafka()
    summary = read_summary(config.services(), users=args.users)
    print(reports.summary_report(summary, baseline, top=args.top))
    return 0


def _watch(args: argparse.Namespace) -> int:
    _kafka()
    timeout = args.timeout if args.timeout > 0 else None
    with closing(follow(config.services())) as progress:
        seconds = reports.watch(progress, until_caught_up=args.until_caught_up, timeout_s=timeout)
    print(
        f"caught up after {seconds:.1f}s of watching: every layer has committed all of its "
        "topic and the marts stopped changing"
    )
    return 0


def _dead_letters_list(args: argparse.Namespace) -> int:
    letters = read_dead_letters(
        _kafka(), args.topic, limit=args.limit, pending=not args.all, values=False
    )
    print(reports.dead_letters_report(letters, args.topic))
    return 0


def _dead_letters_redrive(args: argparse.Namespace) -> int:
    source = redrive_destination(args.topic)  # refuses another topic before any network
    result = redrive(_kafka(), args.topic, reason_contains=args.reason)
    print(reports.redrive_report(result, args.topic, source))
    return 0


def _replay(args: argparse.Namespace) -> int:
    targets = replay_targets(args.layer, group=args.group, topic=args.topic)
    print(reports.replay_report(replay(_kafka(), targets)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    # Lazy on purpose: only `dwh demo` needs the in-process pipeline, which brings the
    # workers' wiring (dependency_injector containers, the runner, the metrics); at the
    # top it would add about 0.1 s to every other command, `dwh --help` included.
    from dwh_workers.demo import run_in_memory  # noqa: PLC0415

    print(run_in_memory(orders=args.count, seed=args.seed))
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    topics = TOPICS
    created = ensure_topics(_kafka(), topics, partitions=args.partitions)
    print(
        f"topics ready ({len(created)} created with {args.partitions} partitions, "
        f"the others existed): {', '.join(topics)}"
    )
    return 0


def _ports(text: str) -> list[int]:
    try:
        return [int(port) for port in text.split(",") if port.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of ports: {text!r}") from None


_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class _Commands:
    """Builds the subcommands; every one accepts ``--debug`` and knows its full name."""

    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks and client logs on errors",
        )
        self.parser = argparse.ArgumentParser(
            prog="dwh",
            description="Operate the food-delivery warehouse (STG -> DDS -> CDM).",
            parents=[self.common],
        )
        self._top = self.parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        self,
        name: str,
        handler: Command,
        help_text: str,
        group: _SubParsers | None = None,
        full_name: str | None = None,
    ) -> argparse.ArgumentParser:
        sub = (group or self._top).add_parser(
            name, help=help_text, description=help_text, parents=[self.common]
        )
        sub.set_defaults(handler=handler, name=full_name or name)
        return sub

    def group(self, name: str, help_text: str) -> _SubParsers:
        sub = self._top.add_parser(name, help=help_text, parents=[self.common])
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION")


def _parser() -> argparse.ArgumentParser:
    commands = _Commands()
    commands.command("migrate", _migrate, "apply the warehouse schema migrations (idempotent)")
    _add_sources(commands)
    _add_views(commands)
    _add_repairs(commands)
    tags = commands.command(
        "tags",
        tags_cli.run,
        "user tags: the rules in force and their members (list), a user's tags (--user), "
        "a rules file checked, planned and applied, windows swept, every tag verified "
        "(docs/TAGS.md)",
    )
    tags_cli.add_arguments(tags)
    demo = commands.command("demo", _demo, "the whole pipeline in one process, no services")
    demo.add_argument(
        "--in-memory",
        action="store_true",
        required=True,
        help="use the in-memory adapters (the only mode of this command)",
    )
    demo.add_argument("-n", "--count", type=int, default=5000)
    demo.add_argument("--seed", type=int, default=1)
    create = commands.command(
        "create",
        _topics_create,
        "create the pipeline's topics if missing",
        commands.group("topics", "Kafka topics of the pipeline"),
        "topics create",
    )
    create.add_argument("--partitions", type=int, default=3)
    return commands.parser


def _add_sources(commands: _Commands) -> None:
    """The data sources: dictionaries into Redis, orders into Kafka."""
    load = commands.command(
        "load",
        _dictionaries_load,
        "fill Redis with users and restaurants (docs/CONTRACT.md §1.2)",
        commands.group("dictionaries", "the Redis dictionaries"),
        "dictionaries load",
    )
    load.add_argument("--file", help='JSON file {"users": [...], "restaurants": [...]}')
    load.add_argument("--seed", type=int, default=7, help="seed of the built-in sample")
    load.add_argument("--users", type=int, default=400)
    load.add_argument("--restaurants", type=int, default=30)

    generate_parser = commands.command(
        "generate",
        _orders_generate,
        "produce orders in the feed's format (docs/CONTRACT.md §1.1): a backlog of N orders at "
        "full speed, N orders at a steady rate, or a live feed for a while",
        commands.group("orders", "the order feed simulator"),
        "orders generate",
    )
    generate_parser.add_argument("-n", "--count", type=int, default=1000, help="orders to produce")
    generate_parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages per second (default: a backlog at full speed); "
        "the original feed is 5/min = 0.0833",
    )
    generate_parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --rate: a live feed of rate x SECONDS messages (new orders, their later "
        "versions and replays, interleaved) instead of -n orders",
    )
    generate_parser.add_argument(
        "--after",
        type=int,
        default=0,
        metavar="N",
        help="skip the first N orders of the seeded feed (a backlog produced before), so "
        "that new order ids and later timestamps follow",
    )
    generate_parser.add_argument("--topic", default=ORDERS_TOPIC)
    generate_parser.add_argument("--seed", type=int, default=1)
    generate_parser.add_argument(
        "--dictionary-seed",
        type=int,
        default=7,
        help="seed of the sample dictionaries the orders refer to",
    )
    generate_parser.add_argument("--cancelled-share", type=float, default=0.1)
    generate_parser.add_argument("--update-share", type=float, default=0.2)
    generate_parser.add_argument("--duplicate-share", type=float, default=0.05)


def _add_views(commands: _Commands) -> None:
    """What the operator looks at: status, marts, summary, watch."""
    status = commands.command(
        "status", _status, "per layer: workers, lag, messages, dead letters; rows per table"
    )
    status.add_argument(
        "--ports",
        type=_ports,
        default=None,
        metavar=",".join(name.upper() for name in LAYER_NAMES),
        help="HTTP ports of local workers to ask /readyz (default: those of scripts/pipeline, "
        f"{','.join(str(port) for port in LOCAL_PORTS.values())}; '' asks none)",
    )

    marts = commands.command(
        "marts",
        _marts,
        "the marts, readable: one user's, the top users of a category, the largest "
        "counters, or the totals; or (ACTION) verify or rebuild them from the vault",
    )
    marts.add_argument("--user", help="a user id (24 hex chars) or login")
    marts.add_argument("--category", help="a category name, e.g. Пицца")
    marts.add_argument("--top", type=int, default=10)
    marts.add_argument("--totals", action="store_true", help="orders and counters in total")
    marts.add_argument("--json", action="store_true", help="with --totals: one JSON object")
    _add_mart_checks(commands, marts)

    summary = commands.command(
        "summary",
        _summary,
        "orders, marts, dead letters and the busiest users' marts (the quickstart's summary)",
    )
    summary.add_argument(
        "--baseline",
        metavar="FILE",
        help="totals saved before (dwh marts --totals --json > FILE) to compare with",
    )
    summary.add_argument("--users", type=int, default=3, help="busiest users to show")
    summary.add_argument("--top", type=int, default=5, help="products and categories per user")

    watch = commands.command(
        "watch", _watch, "show each layer's progress through its topic (Ctrl-C to stop)"
    )
    watch.add_argument(
        "--until-caught-up",
        action="store_true",
        help="end once every layer has committed all of its topic and the marts stopped changing",
    )
    watch.add_argument(
        "--timeout",
        type=float,
        default=0,
        metavar="SECONDS",
        help="give up (exit 1) after this long; 0: never",
    )


def _add_mart_checks(commands: _Commands, marts: argparse.ArgumentParser) -> None:
    """``dwh marts verify`` and ``dwh marts rebuild``: the marts against their
    recomputation from the vault (``dwh marts`` alone still shows the marts)."""
    actions = marts.add_subparsers(dest="action", metavar="ACTION")
    verify = commands.command(
        "verify",
        _marts_verify,
        "compare the marts and their ledger with their recomputation from the vault (DDS); "
        "exit 1 if they differ",
        actions,
        "marts verify",
    )
    verify.add_argument(
        "--limit", type=int, default=20, help="differences shown per table (default: %(default)s)"
    )
    rebuild = commands.command(
        "rebuild",
        _marts_rebuild,
        "rewrite the marts and their ledger from the vault (DDS), in one transaction, then "
        "count the user tags afresh from the ledger; the CDM workers wait meanwhile",
        actions,
        "marts rebuild",
    )
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="rewrite even when the vault cannot say exactly what the marts hold "
        "(orders linked to several users, products to several categories)",
    )


def _add_repairs(commands: _Commands) -> None:
    """Putting things right: dead letters and replays."""
    dead = commands.group("dead-letters", "rejected messages")
    listing = commands.command(
        "list",
        _dead_letters_list,
        "show dead letters and their reasons",
        dead,
        "dead-letters list",
    )
    listing.add_argument("--topic", default=dead_letter_topic(ORDERS_TOPIC))
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument(
        "--all",
        action="store_true",
        help="also letters a redrive already handled (default: pending only)",
    )
    redrive_parser = commands.command(
        "redrive",
        _dead_letters_redrive,
        "send the pending letters of a <source>-dlq topic back to <source>, each once",
        dead,
        "dead-letters redrive",
    )
    redrive_parser.add_argument(
        "--topic",
        default=dead_letter_topic(ORDERS_TOPIC),
        help="a dead-letter topic, <source>-dlq (default: %(default)s)",
    )
    redrive_parser.add_argument(
        "--reason",
        help="only letters whose reason contains this text (ignoring case); "
        "the others stay pending, where they are",
    )

    replay_parser = commands.command(
        "replay",
        _replay,
        "move a layer's consumer group back to the beginning of its topic, so that its "
        "workers read everything again when they start (stop them first)",
    )
    replay_parser.add_argument("--layer", required=True, choices=[*LAYER_NAMES, "all"])
    replay_parser.add_argument("--group", help="the layer's consumer group, if not the default")
    replay_parser.add_argument("--topic", help="the layer's source topic, if not the default")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.name == "orders generate" and args.duration is not None and args.rate is None:
        parser.error("orders generate: --duration needs --rate")
    if args.name == "marts" and args.json and not args.totals:
        parser.error("marts: --json goes with --totals")
    if args.name in ("marts verify", "marts rebuild") and (
        args.user or args.category or args.totals or args.json
    ):
        parser.error(f"{args.name}: --user, --category, --totals and --json go with `dwh marts`")
    if args.name == "tags" and (problem := tags_cli.check_arguments(args)):
        parser.error(problem)
    if args.name == "marts verify" and args.limit < 0:
        parser.error("marts verify: --limit cannot be negative")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"dwh {args.name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"dwh {args.name}: error: {describe_error(exc)}", file=sys.stderr)
        return 1
