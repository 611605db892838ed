"""One run of the benchmark, phase by phase, on fresh topics and emptied tables:

1. the sample dictionaries (and the freshness probes' users) into Redis, the schema
   migrated, the warehouse tables emptied, the topics created;
2. catch-up: the backlog into the source topic, then the three workers started and
   timed until the marts equal the oracle (:mod:`bench.catchup`);
3. the PostgreSQL floor for the rows the catch-up wrote (:mod:`bench.floor`);
4. freshness at each rate, the workers still running (:mod:`bench.freshness`); their
   CPU and memory read from /proc before they stop; then the marts recomputed from the
   vault and the tags counted again from scratch (``dwh marts verify``, ``dwh tags
   verify``), which must find no difference;
5. the naive baseline on a smaller backlog of the same feed, timed the same way
   (:mod:`bench.baseline`);
6. the catch-up again, on emptied tables and topics of its own, with no tag rules: the
   cost of the tags (docs/TAGS.md) is the difference in rate and in the CDM worker's CPU.

Whatever happens, the processes are stopped and the topics, the baseline's schemas and
the probe users deleted at the end.
"""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from bench import baseline, floor, freshness
from bench.catchup import Pipeline, measure
from bench.console import say
from bench.kafka import produce_backlog
from bench.machine import describe, load_average
from bench.marts import Marts, other_writers
from bench.processes import REPO, Process, free_port, service_cpu, start, stop_all
from bench.tables import Connection
from dwh_adapters.kafka import delete_topics, ensure_topics, topic_message_count
from dwh_adapters.postgres.recompute import mart_differences
from dwh_adapters.postgres.settings import connect
from dwh_adapters.postgres.tables import truncate_all
from dwh_adapters.postgres.tag_store import tag_differences
from dwh_core.hashing import hash_key
from dwh_core.messages import dead_letter_topic
from dwh_workers import config
from dwh_workers.sample import Dictionaries, OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology


@frozen
class Options:
    orders: int
    baseline_orders: int
    rates: tuple[float, ...]
    freshness_s: float
    out: Path
    seed: int
    dictionary_seed: int
    partitions: int
    worker_env: Mapping[str, str]


class Run:
    """One run; each phase adds its section to :attr:`results`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.run_id = uuid.uuid4().hex[:8]
        self.services = config.services()
        self.ours = Topology(suffix=f"bench{self.run_id}")
        self.naive = Topology(suffix=f"naive{self.run_id}")
        self.untagged = {
            when: Topology(suffix=f"notags{when}{self.run_id}") for when in ("before", "after")
        }
        self.log_dir = options.out / "logs" / self.run_id
        self.processes: dict[str, Process] = {}
        self.results: dict[str, Any] = {}
        self._redis = self.services.redis.client()
        self._dictionaries = sample_dictionaries(seed=options.dictionary_seed)
        capacity = math.ceil(sum(rate * options.freshness_s for rate in options.rates)) + 1
        self._probes = freshness.Probes(self._dictionaries.restaurants, self.run_id, capacity)
        self._users = tuple(
            hash_key(user["_id"]) for user in (*self._dictionaries.users, *self._probes.users)
        )
        self._probe_keys: list[str] = []

    def execute(self) -> dict[str, Any]:
        """Every phase; the results as plain data (the JSON of the run)."""
        load_before = load_average()
        try:
            self._prepare()
            with connect(self.services.postgres, autocommit=True) as conn:
                self.results["machine"] = describe(conn, self._redis)
                messages = _feed(self._dictionaries, self.options.seed, self.options.orders)
                self._without_tags(conn, messages, "before")
                truncate_all(conn)
                self._catch_up(conn, messages)
                self._floor()
                self._freshness(conn, messages)
                self._stop_workers()
                self._verify(conn)
                self._baseline(conn)
                self._without_tags(conn, messages, "after")
                self._tags_cost()
        finally:
            self._clean_up()
        self.results["machine"].update(
            load_average_before=load_before, load_average_after=load_average()
        )
        self.results["headline"] = _headline(self.results)
        return {"run_id": self.run_id, "parameters": self._parameters(), **self.results}

    # --- phases -------------------------------------------------------------------------

    def _prepare(self) -> None:
        say("loading the dictionaries into Redis")
        probe_entries = self._probes.dictionary_entries()
        self._redis.mset({**dictionary_entries(self._dictionaries), **probe_entries})
        self._probe_keys = list(probe_entries)
        say("migrating the schema and emptying the warehouse tables")
        subprocess.run(
            [sys.executable, "-m", "dwh_workers", "migrate"], check=True, cwd=REPO, timeout=120
        )
        with connect(self.services.postgres, autocommit=True) as conn:
            truncate_all(conn)
        ensure_topics(self.services.kafka, self._topics(), partitions=self.options.partitions)

    def _topics(self) -> list[str]:
        return [
            *self.ours.all_topics(),
            *self.naive.all_topics(),
            *self.untagged["before"].all_topics(),
            *self.untagged["after"].all_topics(),
        ]

    def _catch_up(self, conn: Connection, messages: list[bytes]) -> None:
        kafka, orders = self.services.kafka, self.options.orders
        say(f"producing the backlog: {len(messages):,} messages of {orders:,} orders")
        produce_s = produce_backlog(kafka, self.ours.source, messages)
        say(f"produced in {produce_s:.1f} s; starting the workers")
        cpu_before = service_cpu()
        catch_up = measure(
            "ours",
            kafka,
            conn,
            self._pipeline(self.ours, "cdm"),
            orders,
            Marts.expected(messages, self._dictionaries.restaurants),
            self._start_workers,
            deadline_s=120 + orders / 100,
        )
        cpu_after = service_cpu()
        say(f"caught up in {catch_up.seconds:.2f} s, exact: {catch_up.exact}")
        self.results["workers"] = {
            layer: self._worker_report(layer, catch_up.seconds) for layer in LAYER_NAMES
        }
        self.results["catch_up"] = {
            **attrs.asdict(catch_up),
            "produce_s": round(produce_s, 3),
            "dead_letters": sum(
                topic_message_count(kafka, dead_letter_topic(self.ours.topic(layer)))
                for layer in LAYER_NAMES
            ),
            "services_cpu_s": {
                name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2)
                for name in sorted(cpu_after)
            },
        }

    def _floor(self) -> None:
        say("the PostgreSQL floor")
        result = floor.measure(self.services.postgres, self.options.orders)
        say(f"floor: {result.vault_and_marts.seconds:.2f} s for the vault and marts")
        self.results["floor"] = attrs.asdict(result)

    def _freshness(self, conn: Connection, messages: list[bytes]) -> None:
        """Each rate in turn; then every counter of the run, probes included, against the
        oracle, and whether anyone else wrote into the tables meanwhile."""
        self.results["freshness"] = [
            attrs.asdict(
                freshness.measure(
                    self.services.kafka,
                    conn,
                    self.ours.source,
                    self._probes,
                    rate,
                    self.options.freshness_s,
                )
            )
            for rate in self.options.rates
        ]
        everything = messages + self._probes.messages
        expected = Marts.expected(everything, self._dictionaries.restaurants)
        differing = Marts.read(conn, "cdm", self._users).differences(expected)
        self.results["final_marts_exact"] = differing == 0
        self.results["other_writers"] = other_writers(
            conn, self._users, Marts.order_ids(everything)
        )

    def _stop_workers(self) -> None:
        """Read their CPU and peak memory while they live, then stop them."""
        for layer in LAYER_NAMES:
            usage = self.processes[layer].usage()
            self.results["workers"][layer].update(
                cpu_s=round(usage.cpu_s, 2), peak_rss_mib=round(usage.peak_rss_mib, 1)
            )
        exit_codes = stop_all({layer: self.processes.pop(layer) for layer in LAYER_NAMES})
        for layer, code in exit_codes.items():
            self.results["workers"][layer]["exit_code"] = code

    def _verify(self, conn: Connection) -> None:
        """What ``dwh marts verify`` and ``dwh tags verify`` say after the run."""
        say("verifying the marts against the vault and the tags from scratch")
        marts = mart_differences(conn, limit=0)
        mart_total = marts.products.differing + marts.categories.differing + marts.ledger.differing
        compared, tags = tag_differences(conn)
        transitions, members = conn.execute(
            "SELECT (SELECT count(*) FROM cdm.user_tag_events),"
            " (SELECT count(*) FROM cdm.user_tags)"
        ).fetchone() or (0, 0)
        self.results["verified"] = {
            "mart_differences": mart_total,
            "tag_differences": len(tags),
            "tag_counts_compared": compared,
            "tag_transitions": transitions,
            "tag_members": members,
        }
        say(
            f"marts: {mart_total} differences; tags: {len(tags)} differences in "
            f"{compared:,} counts ({transitions:,} transitions, {members:,} members)"
        )

    def _without_tags(self, conn: Connection, messages: list[bytes], when: str) -> None:
        """The catch-up of the same backlog with no tag rules, on emptied tables and
        topics of its own: once before the run with the default rules and once after
        it, so that a machine slower at the start or at the end favours neither."""
        say(f"the same backlog with no tag rules ({when} the run with them)")
        truncate_all(conn)
        no_rules = self.log_dir / "no_tag_rules.toml"
        no_rules.parent.mkdir(parents=True, exist_ok=True)
        no_rules.write_text("# no tag rules: the benchmark's runs without tags\n", "utf-8")
        topology = self.untagged[when]
        produce_backlog(self.services.kafka, topology.source, messages)
        cpu_before = service_cpu()
        catch_up = measure(
            f"no tags, {when}",
            self.services.kafka,
            conn,
            self._pipeline(topology, "cdm"),
            self.options.orders,
            Marts.expected(messages, self._dictionaries.restaurants),
            lambda: self._start_workers(topology, DWH_TAG_RULES=str(no_rules)),
            deadline_s=120 + self.options.orders / 100,
        )
        cpu_after = service_cpu()
        usage = {layer: self.processes[layer].usage() for layer in LAYER_NAMES}
        stop_all({layer: self.processes.pop(layer) for layer in LAYER_NAMES})
        say(f"without tags: caught up in {catch_up.seconds:.2f} s, exact: {catch_up.exact}")
        self.results.setdefault("tags", {}).setdefault("without", {})[when] = {
            "seconds": catch_up.seconds,
            "orders_per_s": catch_up.orders_per_s,
            "exact": catch_up.exact,
            "workers_cpu_s": {layer: round(usage[layer].cpu_s, 2) for layer in LAYER_NAMES},
            "services_cpu_s": {
                name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2)
                for name in sorted(cpu_after)
            },
        }

    def _tags_cost(self) -> None:
        """The run with the default rules against the mean of the two without."""
        tags = self.results["tags"]
        runs = list(tags["without"].values())
        rate = sum(run["orders_per_s"] for run in runs) / len(runs)
        cdm_without = sum(run["workers_cpu_s"]["cdm"] for run in runs) / len(runs)
        cdm_with = self.results["workers"]["cdm"]["catch_up_cpu_s"]
        tags["without_orders_per_s"] = round(rate, 1)
        tags["without_cdm_cpu_s"] = round(cdm_without, 2)
        tags["with_over_without"] = round(self.results["catch_up"]["orders_per_s"] / rate, 3)
        tags["cdm_cpu_share"] = round((cdm_with - cdm_without) / cdm_with, 3) if cdm_with else 0.0

    def _baseline(self, conn: Connection) -> None:
        orders = self.options.baseline_orders
        baseline.prepare(self.services.postgres)
        messages = _feed(self._dictionaries, self.options.seed, orders)
        say(f"the naive baseline: {len(messages):,} messages of {orders:,} orders")
        produce_backlog(self.services.kafka, self.naive.source, messages)
        catch_up = measure(
            "baseline",
            self.services.kafka,
            conn,
            self._pipeline(self.naive, baseline.SCHEMAS["cdm"]),
            orders,
            Marts.expected(messages, self._dictionaries.restaurants),
            self._start_baseline,
            deadline_s=120 + orders * 2,
        )
        names = {layer: f"baseline-{layer}" for layer in LAYER_NAMES}
        usage = {layer: self.processes[name].usage() for layer, name in names.items()}
        exit_codes = stop_all({layer: self.processes.pop(name) for layer, name in names.items()})
        self.results["baseline"] = {
            "catch_up": attrs.asdict(catch_up),
            "processes": {
                layer: {
                    "cpu_s": round(usage[layer].cpu_s, 2),
                    "peak_rss_mib": round(usage[layer].peak_rss_mib, 1),
                    "exit_code": exit_codes[layer],
                }
                for layer in LAYER_NAMES
            },
        }

    def _parameters(self) -> dict[str, Any]:
        options = self.options
        return {
            "orders": options.orders,
            "baseline_orders": options.baseline_orders,
            "rates": list(options.rates),
            "freshness_seconds": options.freshness_s,
            "seed": options.seed,
            "dictionary_seed": options.dictionary_seed,
            "partitions": options.partitions,
            "worker_env": dict(options.worker_env),
        }

    # --- processes ----------------------------------------------------------------------

    def _env(self, topology: Topology, layer: str, **extra: str) -> dict[str, str]:
        """The layer's environment: the settings of this run's environment, the run's
        topics and group, and ``extra``; otherwise the product's defaults."""
        return topology.env(layer, DWH_LOG_FORMAT="json", **extra)

    def _start_workers(self, topology: Topology | None = None, **extra: str) -> dict[str, Process]:
        for layer in LAYER_NAMES:
            port = free_port()
            env = self._env(
                topology or self.ours,
                layer,
                DWH_HTTP_PORT=str(port),
                **{**self.options.worker_env, **extra},
            )
            module = f"dwh_workers.{layer}"
            self.processes[layer] = start(layer, module, [], env, self.log_dir, port)
        return {layer: self.processes[layer] for layer in LAYER_NAMES}

    def _start_baseline(self) -> dict[str, Process]:
        started = {}
        for layer in LAYER_NAMES:
            name = f"baseline-{layer}"
            env = self._env(self.naive, layer)
            process = start(name, "bench.baseline", [layer], env, self.log_dir)
            started[name] = self.processes[name] = process
        return started

    def _pipeline(self, topology: Topology, marts_schema: str) -> Pipeline:
        return Pipeline(
            topics={layer: topology.topic(layer) for layer in LAYER_NAMES},
            groups={layer: topology.group(layer) for layer in LAYER_NAMES},
            marts_schema=marts_schema,
            users=self._users,
        )

    def _worker_report(self, layer: str, catch_up_s: float) -> dict[str, Any]:
        """The worker's settings, and its CPU, memory and metrics after the catch-up."""
        process = self.processes[layer]
        usage, metrics = process.usage(), process.metrics()
        settings = config.load(layer, self._env(self.ours, layer, **self.options.worker_env))
        messages = metrics.get("dwh_messages_in_total", 0.0)
        batches = metrics.get("dwh_batches_total", 0.0)
        handle_s = metrics.get("dwh_batch_duration_seconds_sum", 0.0)
        return {
            "batch_size": settings.worker.batch_size,
            "batch_wait_ms": round(settings.worker.batch_wait_s * 1000),
            "catch_up_cpu_s": round(usage.cpu_s, 2),
            "catch_up_cores": round(usage.cpu_s / catch_up_s, 2),
            "catch_up_rss_mib": round(usage.rss_mib, 1),
            "catch_up_messages": int(messages),
            "catch_up_batches": int(batches),
            "catch_up_mean_batch": round(messages / batches, 1) if batches else 0.0,
            "catch_up_handle_s": round(handle_s, 2),
            "catch_up_messages_per_handle_s": round(messages / handle_s, 1) if handle_s else 0.0,
        }

    def _clean_up(self) -> None:
        stop_all(self.processes)
        topics = self._topics()
        for action, step in (
            ("deleting the topics", lambda: delete_topics(self.services.kafka, topics)),
            ("dropping the baseline's schemas", lambda: baseline.drop(self.services.postgres)),
            ("deleting the probe users", self._delete_probe_users),
        ):
            try:
                step()
            except Exception as exc:  # clean up as much as possible
                say(f"clean-up: {action} failed: {exc}")
        self._redis.close()

    def _delete_probe_users(self) -> None:
        if self._probe_keys:
            self._redis.delete(*self._probe_keys)


def _feed(dictionaries: Dictionaries, seed: int, orders: int) -> list[bytes]:
    return list(OrderGenerator(dictionaries, seed=seed).messages(orders))


def _headline(results: dict[str, Any]) -> dict[str, Any]:
    ours = results["catch_up"]["orders_per_s"]
    base = results["baseline"]["catch_up"]["orders_per_s"]
    vault_and_marts = results["floor"]["vault_and_marts"]["orders_per_s"]
    everything = results["floor"]["all_written"]["orders_per_s"]
    return {
        "ours_orders_per_s": ours,
        "baseline_orders_per_s": base,
        "ours_over_baseline": round(ours / base, 1),
        "floor_orders_per_s": vault_and_marts,
        "ours_over_floor": round(ours / vault_and_marts, 3),
        "floor_all_written_orders_per_s": everything,
        "ours_over_floor_all_written": round(ours / everything, 3),
    }
