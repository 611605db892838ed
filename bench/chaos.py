"""``python -m bench.chaos``: the pipeline under faults, checked against the contract.

One run, on PostgreSQL, Redis and a Kafka broker of its own (:mod:`bench.private`; the
shared stack is never touched): a seeded backlog of orders (duplicates, later and stale
versions, a replayed slice) mixed with hostile messages (:mod:`bench.hostile`) is fed
to the three workers while the run SIGKILLs workers (each restarted at once with the
same identity) and restarts PostgreSQL, Redis and the broker, one fault at a time,
timing how long each layer takes to process again. At the end the marts must equal
the oracle, every bad message must be in a dead-letter topic, and nothing may be lost
or counted twice. It prints a table (docs/RELIABILITY.md explains it) and exits 1 when
a check fails, 2 when the run could not finish in its time limit.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import psycopg
import redis
from attrs import frozen

from bench.console import say
from bench.faults import (
    Fault,
    Feed,
    Outcome,
    Watcher,
    Workers,
    inject,
    produce_now,
    schedule,
    source_topic,
    worker_env,
)
from bench.hostile import PROBE_IDS_FROM, Hostile, HostileGenerator
from bench.marts import Marts
from bench.private import PrivateKafka, PrivatePostgres, PrivateRedis, wait_until
from bench.processes import REPO
from dwh_adapters.kafka import KafkaSettings, ensure_topics, read_dead_letters
from dwh_adapters.postgres.recompute import mart_differences
from dwh_adapters.postgres.tag_store import tag_differences
from dwh_core.hashing import hash_key
from dwh_core.messages import dead_letter_topic
from dwh_workers import oracle
from dwh_workers.sample import Dictionaries, OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import DDS_TOPIC, LAYER_NAMES, STG_TOPIC, TAGS_TOPIC

RESUME_DEADLINE_S = 120.0
MIN_RESUME_DEADLINE_S = 20.0
DRAIN_RESERVE_S = 30.0
DRAIN_GRACE_S = 15.0  # after every layer committed everything: the marts must be right by then
REPLAYED_SHARE = 0.05  # a slice of the feed sent again, as a producer retrying a batch does


@frozen
class Options:
    orders: int
    bad: int
    kills: int
    restarts: int
    seed: int
    time_limit_s: float
    feed_s: float
    out: Path
    worker_env: dict[str, str]


class OutOfTime(Exception):
    pass


# --- the input ------------------------------------------------------------------------------


@frozen
class Input:
    """Everything the feed sends, in order; ``bad[i]`` is the hostile message at
    position ``i`` if it is invalid."""

    values: list[bytes | None]
    bad: dict[int, Hostile]
    hostile: list[Hostile]


def build_input(dictionaries: Dictionaries, options: Options) -> Input:
    """The feed's orders (more later versions than the default feed, so stale and
    refunded versions abound), a replayed slice of them, and the hostile messages at
    seeded random places."""
    rng = random.Random(options.seed)
    feed = OrderGenerator(dictionaries, seed=options.seed, update_share=0.35, duplicate_share=0.05)
    values: list[bytes | None] = list(feed.messages(options.orders))
    start = rng.randrange(len(values) // 2 + 1)
    replay = values[start : start + int(len(values) * REPLAYED_SHARE)]
    at = rng.randrange(start + len(replay), len(values) + 1)
    values[at:at] = replay
    hostile = HostileGenerator(dictionaries, options.seed).messages(options.bad)
    positions = sorted(rng.sample(range(len(values) + len(hostile)), len(hostile)))
    bad: dict[int, Hostile] = {}
    for position, message in zip(positions, hostile, strict=True):
        values.insert(position, message.value)
        if not message.valid:
            bad[position] = message
    return Input(values, bad, hostile)


# --- the run --------------------------------------------------------------------------------


class Run:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.run_id = uuid.uuid4().hex[:8]
        self.folder = options.out / self.run_id
        self.started = time.monotonic()
        self.dictionaries = sample_dictionaries(seed=907)
        self.probes = HostileGenerator(self.dictionaries, options.seed + 1, PROBE_IDS_FROM)
        self._judged: oracle.Verdict | None = None
        self.probe_values: list[bytes] = []
        self.outcomes: list[Outcome] = []
        self.skipped = 0

    def remaining(self) -> float:
        return self.options.time_limit_s - (time.monotonic() - self.started)

    def execute(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
            Path(scratch).chmod(0o755)  # the postgres OS user must reach its folder
            services = _Services(Path(scratch), self.folder)
            try:
                services.start()
                return self._with(services)
            finally:
                services.stop()

    def _with(self, services: _Services) -> dict[str, Any]:
        kafka = services.kafka_settings()
        data = build_input(self.dictionaries, self.options)
        say(f"{len(data.values):,} messages: {self.options.orders:,} orders, "
            f"{len(data.hostile)} hostile ({len(data.bad)} invalid)")  # fmt: skip
        services.prepare(self.dictionaries)
        workers = Workers(
            worker_env(services.env(), self.options.worker_env), self.folder, self.run_id
        )
        tracked = [index in data.bad for index in range(len(data.values))]
        feed = Feed(kafka, source_topic("stg"), data.values, tracked, self.options.feed_s)
        watcher = Watcher(kafka)
        watcher.start()
        try:
            for layer in LAYER_NAMES:
                workers.start(layer)
            feed.start()
            self._inject_all(services, workers, watcher, feed)
            self._drain(services, workers, watcher, feed, data)
        finally:
            watcher.stop()
            exit_codes = workers.stop()
        return self._check(services, data, feed, workers, exit_codes)

    def _inject_all(
        self, services: _Services, workers: Workers, watcher: Watcher, feed: Feed
    ) -> None:
        faults = schedule(self.options.kills, self.options.restarts, self.options.seed)
        rng = random.Random(self.options.seed + 2)
        # Faults begin once the workers have work (a tenth of the feed is in).
        wait_until(lambda: feed.sent >= feed.total // 10, "the feed", self.remaining())
        for number, fault in enumerate(faults, start=1):
            # Each fault may take until its deadline; the drain needs the rest.
            deadline = min(RESUME_DEADLINE_S, self.remaining() - DRAIN_RESERVE_S)
            if deadline < MIN_RESUME_DEADLINE_S:
                self.skipped = len(faults) - number + 1
                say(f"out of time: {self.skipped} faults not injected")
                break
            workers.restart_dead()
            time.sleep(rng.uniform(0.5, 3.0))  # a random moment of the work, not a wait
            say(f"fault {number}/{len(faults)}: {fault.label}")
            outcome = inject(
                fault,
                partial(self._act, fault, services, workers),
                watcher,
                lambda: self._probe(services),
                self.started,
                deadline,
            )
            say(f"  resumed after {outcome.resume_s} s (outage {outcome.outage_s} s)")
            self.outcomes.append(outcome)

    def _act(self, fault: Fault, services: _Services, workers: Workers) -> None:
        if fault.kind.startswith("kill-"):
            layer = fault.layers[0]
            workers.kill(layer)
            workers.start(layer)
        else:
            services.restart(fault.kind)

    def _probe(self, services: _Services) -> None:
        """A fresh CLOSED order, so that every layer has work after the fault."""
        value = self.probes.make("pretty-printed, all ASCII").value
        assert value is not None
        self.probe_values.append(value)
        produce_now(services.kafka_settings(), source_topic("stg"), value)

    def _drain(
        self, services: _Services, workers: Workers, watcher: Watcher, feed: Feed, data: Input
    ) -> None:
        """Until the feed is in and every layer has committed all of its input."""
        say("faults done; waiting for the pipeline to drain")
        while not feed.flushed.wait(0.5):
            workers.restart_dead()
            if self.remaining() < 0:
                raise OutOfTime("the feed was not acknowledged in the time limit")
        while not self._caught_up(watcher):
            workers.restart_dead()
            if self.remaining() < 0:
                raise OutOfTime("the pipeline did not drain in the time limit")
            time.sleep(0.5)
        expected = Marts(*self._verdict(data).marts())
        users = [hash_key(user["_id"]) for user in self.dictionaries.users]
        deadline = time.monotonic() + min(DRAIN_GRACE_S, max(self.remaining(), 1))
        with services.connect() as conn:
            while Marts.read(conn, "cdm", users).differences(expected) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.5)

    def _caught_up(self, watcher: Watcher) -> bool:
        """Every layer committed all its input, upstream first (one pass after another,
        so a layer is done only once the one before it is)."""
        for layer in LAYER_NAMES:
            done, total = watcher.committed(layer), watcher.total(layer)
            if done is None or total is None or done < total:
                return False
        return True

    def _verdict(self, data: Input) -> oracle.Verdict:
        """What the contract says of everything sent (dwh_workers.oracle), judged
        once the last probe is sent."""
        if self._judged is None:
            contract = oracle.Dictionaries(dictionary_entries(self.dictionaries))
            self._judged = oracle.judge([*data.values, *self.probe_values], contract)
        return self._judged

    # --- the checks -----------------------------------------------------------------------

    def _check(
        self,
        services: _Services,
        data: Input,
        feed: Feed,
        workers: Workers,
        exit_codes: dict[str, int],
    ) -> dict[str, Any]:
        everything = [*data.values, *self.probe_values]
        verdict = self._verdict(data)
        newest = verdict.newest()
        expected = Marts(*verdict.marts())
        users = [hash_key(user["_id"]) for user in self.dictionaries.users]
        with services.connect() as conn:
            actual = Marts.read(conn, "cdm", users)
            ledger = _ledger(conn)
            stored = _stored_orders(conn)
            marts_verified = mart_differences(conn, limit=10)
            tags_compared, tag_found = tag_differences(conn)
        letters = _dead_letters(services.kafka_settings(), data, feed)
        orders = _orders_check(newest, ledger)
        bad = _bad_check(data, letters, stored)
        excess, short = _counter_gaps(actual, expected)
        lost = orders["missing_or_stale"] + letters["valid_dead_lettered"] + bad["vanished_count"]
        return {
            "run_id": self.run_id,
            "seconds": round(time.monotonic() - self.started, 1),
            "messages": len(everything),
            "faults": [attrs.asdict(outcome) for outcome in self.outcomes],
            "faults_not_injected": self.skipped,
            "lost": lost,
            "double_counted": excess,
            "counter_units_short": short,
            "marts_differing": actual.differences(expected),
            "verify": {
                "mart_differences": marts_verified.products.differing
                + marts_verified.categories.differing
                + marts_verified.ledger.differing,
                "tag_differences": len(tag_found),
                "tag_counts_compared": tags_compared,
                "first": [
                    repr(row)
                    for row in (
                        *marts_verified.products.rows,
                        *marts_verified.categories.rows,
                        *marts_verified.ledger.rows,
                        *tag_found[:10],
                    )
                ],
                "ambiguities": repr(marts_verified.ambiguities),
            },
            "counters": len(expected.products) + len(expected.categories),
            "orders": orders,
            "bad": bad,
            "dead_letters": {k: v for k, v in letters.items() if k != "stg_by_offset"},
            "feed_failures": feed.failures[:5],
            "worker_crashes": workers.crashes,
            "worker_exit_codes": exit_codes,
        }


def _ledger(conn: psycopg.Connection[Any]) -> dict[uuid.UUID, datetime | None]:
    rows = conn.execute("SELECT order_key, update_ts FROM cdm.order_contributions").fetchall()
    return {row[0]: row[1] for row in rows}


def _stored_orders(conn: psycopg.Connection[Any]) -> set[int]:
    return {row[0] for row in conn.execute("SELECT object_id FROM stg.order_events")}


def _orders_check(
    newest: dict[int, oracle.Accepted], ledger: dict[uuid.UUID, datetime | None]
) -> dict[str, int]:
    """Each valid order's newest version against the ledger of CDM."""
    wanted = {
        hash_key(order_id): oracle.utc(message.document["payload"]["update_ts"])
        for order_id, message in newest.items()
    }
    missing = sum(1 for key in wanted if key not in ledger)
    stale = sum(1 for key, ts in wanted.items() if key in ledger and ledger[key] != ts)
    return {
        "expected": len(wanted),
        "missing_or_stale": missing + stale,
        "missing": missing,
        "stale": stale,
        "unexpected": len(ledger.keys() - wanted.keys()),
    }


def _dead_letters(kafka: KafkaSettings, data: Input, feed: Feed) -> dict[str, Any]:
    """The letters of the three dead-letter topics: STG's matched to the bad messages by
    their source offset; any other letter is a valid message rejected (lost)."""
    where = {(d.partition, d.offset): index for index, d in feed.delivered.items()}
    by_offset: dict[int, list[str]] = {}
    valid_rejected: list[str] = []
    per_topic: dict[str, int] = {}
    for layer in LAYER_NAMES:
        topic = dead_letter_topic(source_topic(layer))
        letters = read_dead_letters(kafka, topic)
        per_topic[topic] = len(letters)
        for letter in letters:
            source = (
                int(letter.headers.get("dwh.source.partition", -1)),
                int(letter.headers.get("dwh.source.offset", -1)),
            )
            index = where.get(source) if layer == "stg" else None
            if index is not None and letter.value == data.values[index]:
                by_offset.setdefault(index, []).append(letter.reason)
            else:
                valid_rejected.append(f"{layer}: {letter.reason[:160]}")
    return {
        "per_topic": per_topic,
        "stg_by_offset": by_offset,
        "valid_dead_lettered": len(valid_rejected),
        "valid_examples": valid_rejected[:10],
    }


def _bad_check(data: Input, letters: dict[str, Any], stored: set[int]) -> dict[str, Any]:
    """Which bad messages reached a dead-letter topic; the others, by kind, and whether
    they were stored as orders instead."""
    found: dict[int, list[str]] = letters["stg_by_offset"]
    missed = [index for index in data.bad if index not in found]
    accepted: list[str] = []
    vanished: list[str] = []
    for index in missed:
        message = data.bad[index]
        object_id = _object_id(message.value)
        (accepted if object_id in stored else vanished).append(message.kind)
    return {
        "total": len(data.bad),
        "kinds": len({m.kind for m in data.bad.values()}),
        "dead_lettered": len(data.bad) - len(missed),
        "twice": sum(1 for reasons in found.values() if len(reasons) > 1),
        "accepted": sorted(set(accepted)),
        "vanished": sorted(set(vanished)),
        "vanished_count": len(vanished),
        "reasons": {data.bad[i].kind: reasons[0][:200] for i, reasons in sorted(found.items())},
    }


def _object_id(value: bytes | None) -> int | None:
    try:
        document = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    object_id = document.get("object_id") if isinstance(document, dict) else None
    return object_id if type(object_id) is int else None


def _counter_gaps(actual: Marts, expected: Marts) -> tuple[int, int]:
    """(counts above the oracle, counts below it), summed over both marts."""
    excess = short = 0
    for mine, theirs in ((actual.products, expected.products),
                         (actual.categories, expected.categories)):  # fmt: skip
        for key in mine.keys() | theirs.keys():
            gap = mine[key] - theirs[key]
            excess, short = excess + max(gap, 0), short + max(-gap, 0)
    return excess, short


# --- the services ---------------------------------------------------------------------------


class _Services:
    """The run's own PostgreSQL, Redis and Kafka, their data in ``scratch`` (deleted at
    the end), their logs copied to ``logs``."""

    def __init__(self, scratch: Path, logs: Path) -> None:
        self._scratch = scratch
        self._logs = logs
        self.kafka = PrivateKafka(scratch / "kafka")
        self.postgres = PrivatePostgres(scratch / "postgres")
        self.redis = PrivateRedis(scratch / "redis")

    def start(self) -> None:
        say("starting a Kafka broker, PostgreSQL and Redis of the run's own")
        self.kafka.start()
        self.postgres.start()
        self.postgres.create_database()
        self.redis.start()

    def env(self) -> dict[str, str]:
        return {**self.kafka.env(), **self.postgres.env(), **self.redis.env()}

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(self.kafka.bootstrap)

    def prepare(self, dictionaries: Dictionaries) -> None:
        """The schema, the topics (3 partitions, dead-letter topics too, and the tags'),
        the dictionaries."""
        subprocess.run(
            [sys.executable, "-m", "dwh_workers", "migrate"],
            check=True, cwd=REPO, timeout=120, env=worker_env(self.env(), {}),
            capture_output=True,
        )  # fmt: skip
        topics = sorted(
            {source_topic(layer) for layer in LAYER_NAMES} | {STG_TOPIC, DDS_TOPIC, TAGS_TOPIC}
        )
        letters = [dead_letter_topic(t) for t in topics if t != TAGS_TOPIC]
        ensure_topics(self.kafka_settings(), topics + letters)
        client = redis.Redis(host="127.0.0.1", port=self.redis.port)
        client.mset(dictionary_entries(dictionaries))
        client.close()

    def restart(self, kind: str) -> None:
        """Stop the service and start it again; returns once it answers."""
        if kind == "postgres":
            self.postgres.stop("immediate")
            self.postgres.start()
        elif kind == "redis":
            self.redis.stop()
            self.redis.start()
        else:
            self.kafka.stop()
            self.kafka.start()

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        env = self.postgres.env()
        with psycopg.connect(
            host=env["PG_WAREHOUSE_HOST"], port=int(env["PG_WAREHOUSE_PORT"]),
            dbname=env["PG_WAREHOUSE_DBNAME"], user=env["PG_WAREHOUSE_USER"],
            password=env["PG_WAREHOUSE_PASSWORD"], autocommit=True,
        ) as conn:  # fmt: skip
            yield conn

    def stop(self) -> None:
        for action in (self.redis.stop, self.kafka.stop, lambda: self.postgres.stop("fast")):
            try:
                action()
            except Exception as exc:  # stop as much as possible
                say(f"clean-up: {exc}")
        self._logs.mkdir(parents=True, exist_ok=True)
        for log in ("kafka/broker.log", "postgres/postgres.log", "redis/redis.log"):
            if (self._scratch / log).exists():
                shutil.copy(self._scratch / log, self._logs / log.replace("/", "-"))


# --- the report -----------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def table(results: dict[str, Any]) -> str:
    """The faults and the checks, as Markdown."""
    lines = [
        "| fault | injected | resumed | time to resume p50 s | max s | outage max s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_label: dict[str, list[dict[str, Any]]] = {}
    for fault in results["faults"]:
        by_label.setdefault(fault["label"], []).append(fault)
    for label, faults in sorted(by_label.items()):
        times = [f["resume_s"] for f in faults if f["resume_s"] is not None]
        p50 = f"{_median(times):.1f}" if times else "-"
        top = f"{max(times):.1f}" if times else "-"
        outage = max(f["outage_s"] for f in faults)
        lines.append(f"| {label} | {len(faults)} | {len(times)} | {p50} | {top} | {outage:.1f} |")
    bad, orders = results["bad"], results["orders"]
    lines += [
        "",
        "| check | result |",
        "| --- | ---: |",
        f"| messages lost | {results['lost']} |",
        f"| double-counted | {results['double_counted']} |",
        f"| marts equal the oracle | {_yes(results['marts_differing'] == 0)} "
        f"({results['counters']:,} counters, {results['marts_differing']} differ) |",
        f"| `dwh marts verify`, `dwh tags verify`: differences | "
        f"{results['verify']['mart_differences']}, {results['verify']['tag_differences']} |",
        f"| orders in the ledger at their newest version | "
        f"{orders['expected'] - orders['missing_or_stale']:,} / {orders['expected']:,} |",
        f"| bad messages dead-lettered | {bad['dead_lettered']} / {bad['total']} "
        f"({bad['kinds']} kinds; {bad['twice']} twice) |",
        f"| bad messages stored as orders | {', '.join(bad['accepted']) or 0} |",
        f"| valid messages dead-lettered | {results['dead_letters']['valid_dead_lettered']} |",
        f"| faults not injected (out of time) | {results['faults_not_injected']} |",
        f"| workers that died on their own | {len(results['worker_crashes'])} |",
        f"| workers' exit status at the end | "
        f"{', '.join(sorted({str(c) for c in results['worker_exit_codes'].values()}))} |",
    ]
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def failures(results: dict[str, Any]) -> list[str]:
    problems = []
    if results["lost"]:
        problems.append(f"{results['lost']} messages lost")
    if results["double_counted"]:
        problems.append(f"{results['double_counted']} counts too many")
    if results["marts_differing"]:
        problems.append(f"{results['marts_differing']} counters differ from the oracle")
    verify = results["verify"]
    if verify["mart_differences"] or verify["tag_differences"]:
        problems.append(
            f"a recount from scratch differs: {verify['mart_differences']} in the marts "
            f"(from the vault), {verify['tag_differences']} in the tags"
        )
    if results["bad"]["dead_lettered"] < results["bad"]["total"]:
        bad = results["bad"]
        problems.append(
            f"bad messages not dead-lettered: stored {bad['accepted']}, vanished {bad['vanished']}"
        )
    if results["faults_not_injected"]:
        problems.append(f"{results['faults_not_injected']} faults not injected in the time limit")
    if any(fault["resume_s"] is None for fault in results["faults"]):
        problems.append("a layer did not resume after a fault")
    if results["worker_crashes"] or any(results["worker_exit_codes"].values()):
        problems.append(f"workers crashed: {results['worker_crashes']}")
    if results["feed_failures"]:
        problems.append(f"the feed itself failed: {results['feed_failures']}")
    return problems


# --- the command ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="The pipeline under SIGKILLs and service restarts, with hostile messages, "
        "on services of its own; checked against the contract (docs/RELIABILITY.md).",
    )
    parser.add_argument("--orders", type=int, default=20_000, help="orders in the backlog")
    parser.add_argument("--bad", type=int, default=300, help="hostile messages among them")
    parser.add_argument("--kills", type=int, default=9, help="SIGKILLs, spread over the layers")
    parser.add_argument(
        "--restarts", type=int, default=1, help="restarts of each of PostgreSQL, Redis and Kafka"
    )
    parser.add_argument("--seed", type=int, default=61, help="seed of the feed and the faults")
    parser.add_argument(
        "--time-limit", type=float, default=900, help="seconds for the whole run (exit 2 beyond)"
    )
    parser.add_argument(
        "--feed-seconds", type=float, default=60, help="the feed is spread over this long"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "chaos")
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for the workers (repeatable)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (
        min(args.orders, args.time_limit, args.feed_seconds) <= 0
        or min(args.bad, args.kills, args.restarts) < 0
    ):
        parser.error("--orders, --time-limit, --feed-seconds must be positive; the others >= 0")
    settings = dict(setting.partition("=")[::2] for setting in args.worker_env)
    # SIGTERM ends the run as an exception would: the finally blocks stop the workers
    # and the private services, so nothing is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    options = Options(
        args.orders, args.bad, args.kills, args.restarts, args.seed, args.time_limit,
        args.feed_seconds, args.out, settings,
    )  # fmt: skip
    run = Run(options)
    try:
        results = run.execute()
    except OutOfTime as exc:
        say(f"FAILED: {exc} ({options.time_limit_s:g} s); logs in {run.folder}")
        return 2
    except TimeoutError as exc:  # the feed or a private service never came back
        say(f"FAILED: {exc}; logs in {run.folder}")
        return 2
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["command"] = ["python", "-m", "bench.chaos", *(argv or sys.argv[1:])]
    (run.folder / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print()
    print(table(results))
    say(f"results and logs: {run.folder}")
    problems = failures(results)
    for problem in problems:
        say(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
