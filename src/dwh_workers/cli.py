"""``dwh``: the operator's command. ``dwh --help`` lists the tasks.

Errors are one line on stderr and exit status 1; ``--debug`` shows the traceback.
Connection settings come from the environment, as for the workers
(docs/configuration.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from dwh_workers import config

Command = Callable[[argparse.Namespace], int]


def _migrate(args: argparse.Namespace) -> int:
    from dwh_adapters.postgres.migrations import migrate
    from dwh_adapters.postgres.settings import connect

    services = config.services()
    with connect(services.postgres) as connection:
        applied = migrate(connection)
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _dictionaries_load(args: argparse.Namespace) -> int:
    from dwh_adapters.redis import RedisDictionaryWriter
    from dwh_workers.sample import dictionary_entries, load_dictionaries_file, sample_dictionaries

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
    from dwh_workers.feed import generate

    sent = generate(
        config.services().kafka,
        topic=args.topic,
        orders=args.count,
        rate=args.rate,
        seed=args.seed,
        dictionary_seed=args.dictionary_seed,
        cancelled_share=args.cancelled_share,
        update_share=args.update_share,
        duplicate_share=args.duplicate_share,
    )
    print(f"produced {sent:,} messages to {args.topic}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from dwh_workers.operations import status_report

    print(status_report(config.services()))
    return 0


def _marts(args: argparse.Namespace) -> int:
    from dwh_workers.operations import marts_report

    print(
        marts_report(
            config.services().postgres, user=args.user, category=args.category, top=args.top
        )
    )
    return 0


def _dead_letters_list(args: argparse.Namespace) -> int:
    from dwh_adapters.kafka import read_dead_letters

    letters = read_dead_letters(
        config.services().kafka, args.topic, limit=args.limit, pending=not args.all
    )
    for letter in letters:
        headers = letter.headers
        source = ":".join(
            headers.get(f"dwh.source.{part}", "?") for part in ("topic", "partition", "offset")
        )
        print(
            f"{letter.partition}:{letter.offset}  stage={headers.get('dwh.stage', '?')}  "
            f"from={source}  reason={letter.reason}"
        )
    print(f"{len(letters)} dead letter(s) in {args.topic}")
    return 0


def _dead_letters_redrive(args: argparse.Namespace) -> int:
    from dwh_adapters.kafka import redrive

    result = redrive(config.services().kafka, args.topic, reason_contains=args.reason)
    print(
        f"re-drove {result.sent} dead letter(s) from {args.topic}; "
        f"{result.skipped} left (reason did not match)"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dwh_workers.demo import run_in_memory

    print(run_in_memory(orders=args.count, seed=args.seed))
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    from dwh_adapters.kafka import ensure_topics

    topics = [layer.source_topic for layer in config.LAYERS.values()] + [
        f"{layer.source_topic}-dlq" for layer in config.LAYERS.values()
    ]
    ensure_topics(config.services().kafka, topics, partitions=args.partitions)
    print(f"topics ready ({args.partitions} partitions): {', '.join(topics)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwh", description="Operate the food-delivery warehouse (STG -> DDS -> CDM)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Command,
        help_text: str,
        group: argparse._SubParsersAction[argparse.ArgumentParser] | None = None,
    ) -> argparse.ArgumentParser:
        sub = (group or commands).add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    command("migrate", _migrate, "apply the warehouse schema migrations (idempotent)")

    dictionaries = commands.add_parser("dictionaries", help="the Redis dictionaries")
    dictionaries_group = dictionaries.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = command(
        "load",
        _dictionaries_load,
        "fill Redis with users and restaurants (CONTRACT.md §1.2)",
        dictionaries_group,
    )
    load.add_argument("--file", help='JSON file {"users": [...], "restaurants": [...]}')
    load.add_argument("--seed", type=int, default=7, help="seed of the built-in sample")
    load.add_argument("--users", type=int, default=400)
    load.add_argument("--restaurants", type=int, default=30)

    orders = commands.add_parser("orders", help="the order feed simulator")
    orders_group = orders.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = command(
        "generate",
        _orders_generate,
        "produce orders in the feed's format (CONTRACT.md §1.1)",
        orders_group,
    )
    generate.add_argument("-n", "--count", type=int, default=1000, help="orders to produce")
    generate.add_argument(
        "--rate",
        type=float,
        default=None,
        help="orders per second (default: a backlog at full speed); "
        "the original feed is 5/min = 0.0833",
    )
    generate.add_argument("--topic", default="order-service_orders")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument(
        "--dictionary-seed",
        type=int,
        default=7,
        help="seed of the sample dictionaries the orders refer to",
    )
    generate.add_argument("--cancelled-share", type=float, default=0.1)
    generate.add_argument("--update-share", type=float, default=0.2)
    generate.add_argument("--duplicate-share", type=float, default=0.05)

    command("status", _status, "per layer: lag, processed, dead letters, rows, workers")

    marts = command("marts", _marts, "the marts, readable: one user's, or top users of a category")
    marts.add_argument("--user", help="a user id (24 hex chars) or login")
    marts.add_argument("--category", help="a category name, e.g. Пицца")
    marts.add_argument("--top", type=int, default=10)

    dead = commands.add_parser("dead-letters", help="rejected messages")
    dead_group = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command("list", _dead_letters_list, "show dead letters and their reasons", dead_group)
    listing.add_argument("--topic", default="order-service_orders-dlq")
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument(
        "--all",
        action="store_true",
        help="also letters a redrive already handled (default: pending only)",
    )
    redrive = command(
        "redrive", _dead_letters_redrive, "send dead letters back to their source topic", dead_group
    )
    redrive.add_argument("--topic", default="order-service_orders-dlq")
    redrive.add_argument("--reason", help="only letters whose reason contains this text")

    demo = command("demo", _demo, "the whole pipeline in one process, no services")
    demo.add_argument(
        "--in-memory",
        action="store_true",
        required=True,
        help="use the in-memory adapters (the only mode of this command)",
    )
    demo.add_argument("-n", "--count", type=int, default=5000)
    demo.add_argument("--seed", type=int, default=1)

    topics = commands.add_parser("topics", help="Kafka topics of the pipeline")
    topics_group = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = command(
        "create", _topics_create, "create the pipeline's topics if missing", topics_group
    )
    create.add_argument("--partitions", type=int, default=3)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(
            f"dwh {args.command}: error: {message} ({type(exc).__name__}; --debug for details)",
            file=sys.stderr,
        )
        return 1
