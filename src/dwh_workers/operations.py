"""What the operator's commands show and do: ``dwh status``, ``marts``, ``summary``,
``watch`` and ``replay``, as text and as actions on the running pipeline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from attrs import frozen

from dwh_adapters.kafka import (
    KafkaSettings,
    consumer_group_lag,
    group_members,
    reset_group_to_earliest,
    topic_message_count,
)
from dwh_adapters.postgres.marts import PostgresMarts, Totals, UserRef
from dwh_adapters.postgres.settings import PgSettings
from dwh_core.messages import dead_letter_topic
from dwh_workers.config import LAYERS, Layer, Services
from dwh_workers.progress import Board

WATCH_INTERVAL_S = 1.0
# the orders each layer has stored: how far the backlog has come, in orders
LAYER_ORDERS_TABLE = {
    "stg": "stg.order_events",
    "dds": "dds.h_order",
    "cdm": "cdm.order_contributions",
}
PIPELINE_PORTS = {"stg": 8101, "dds": 8102, "cdm": 8103}  # the ports scripts/pipeline gives


class OperatorError(Exception):
    """The command cannot do what was asked; ``str()`` is one line saying why."""


# --- the warehouse, read -----------------------------------------------------------------


def marts_report(postgres: PgSettings, user: str | None, category: str | None, top: int) -> str:
    """One user's products and categories (by source id or login), or the top users of
    a category, or the largest (user, category) counters when neither is given. Names,
    not hash keys."""
    with PostgresMarts(postgres) as warehouse:
        if user:
            found = warehouse.find_users(user)
            if not found:
                raise OperatorError(f"no user with the id or login {user!r} in the warehouse")
            if len(found) > 1:
                ids = ", ".join(ref.user_id for ref in found)
                raise OperatorError(f"the login {user!r} belongs to several users: {ids}")
            return _user_report(warehouse, found[0], top)
        if category:
            rows = warehouse.top_users(category, top)
            if not rows:
                return f"no counted orders in category {category!r}"
            return "\n".join(
                [f"top users of {category}:"]
                + [f"  {count:>5}  {name} ({login})" for name, login, count in rows]
            )
        pairs = warehouse.top_categories(top)
        return "\n".join(
            ["top (user, category) pairs:"]
            + [
                f"  {count:>5}  {name} ({login}): {category_name}"
                for name, login, category_name, count in pairs
            ]
        )


def _user_report(warehouse: PostgresMarts, user: UserRef, top: int) -> str:
    products = warehouse.user_products(user.user_id)
    categories = warehouse.user_categories(user.user_id)
    if not products and not categories:
        return f"user {user.describe()}: no counted orders"
    return "\n".join(
        [f"user {user.describe()}", "  products:"]
        + [f"    {count:>5}  {name}" for name, count in products[:top]]
        + ["  categories:"]
        + [f"    {count:>5}  {name}" for name, count in categories[:top]]
    )


def totals_report(totals: Totals) -> str:
    return "\n".join(
        [
            f"orders in the warehouse: {totals.orders:,} (stg.order_events)",
            f"orders counted in the marts (newest version CLOSED): {totals.counted_orders:,}",
            f"user x product counters: {totals.product_counters:,} "
            f"(order counts add up to {totals.product_count_sum:,})",
            f"user x category counters: {totals.category_counters:,} "
            f"(order counts add up to {totals.category_count_sum:,})",
        ]
    )


def read_totals(postgres: PgSettings) -> Totals:
    with PostgresMarts(postgres) as warehouse:
        return warehouse.totals()


# --- the pipeline: layers, lag, workers ----------------------------------------------------


@frozen
class LayerState:
    """A layer seen from Kafka: the members of its consumer group, the messages in its
    source topic, how many of them the group has not committed, its dead letters."""

    layer: Layer
    members: int
    in_topic: int
    lag: int
    dead_letters: int

    @property
    def processed(self) -> int:
        return self.in_topic - self.lag


def layer_states(kafka: KafkaSettings) -> list[LayerState]:
    """Every layer, in pipeline order: a layer is read after the one before it, so a
    layer upstream that is done has delivered its output before the next one is read."""
    return [
        LayerState(
            layer=layer,
            members=group_members(kafka, layer.consumer_group),
            in_topic=topic_message_count(kafka, layer.source_topic),
            lag=sum(consumer_group_lag(kafka, layer.consumer_group, layer.source_topic).values()),
            dead_letters=topic_message_count(kafka, dead_letter_topic(layer.source_topic)),
        )
        for layer in LAYERS.values()
    ]


def probe(port: int, path: str = "/readyz", host: str = "127.0.0.1") -> str:
    """``ready``, ``not ready`` or ``down``: what a worker's HTTP port answers."""
    reply = b""
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            # read to the end (the server closes): closing early would reset its reply
            while chunk := connection.recv(4096):
                reply += chunk
    except OSError:
        return "down"
    status = reply.split(b" ", 2)
    return "ready" if len(status) > 1 and status[1] == b"200" else "not ready"


def status_report(services: Services, probe_ports: dict[str, int] | None = None) -> str:
    """Per layer: members of its consumer group (workers connected anywhere), what the
    local worker's ``/readyz`` answers, lag, messages in its topic and its dead-letter
    topic; then rows per warehouse table."""
    ports = PIPELINE_PORTS if probe_ports is None else probe_ports
    lines = [
        f"{'layer':<5} {'workers':>7} {'local':>10} {'lag':>9} {'in topic':>10} "
        f"{'dead letters':>13}  group"
    ]
    for state in layer_states(services.kafka):
        name = state.layer.name
        local = f"{probe(ports[name])}" if name in ports else "-"
        lines.append(
            f"{name:<5} {state.members:>7} {local:>10} {state.lag:>9,} {state.in_topic:>10,} "
            f"{state.dead_letters:>13,}  {state.layer.consumer_group}"
        )
    with PostgresMarts(services.postgres) as marts:
        counts = marts.row_counts()
    lines.append(
        "workers: members of the layer's consumer group; local: /readyz of the worker "
        f"on 127.0.0.1:{', '.join(str(port) for port in ports.values()) or '-'} "
        "(scripts/pipeline)"
    )
    lines.append("")
    lines.append(f"{'table':<34} {'rows':>10}")
    lines.extend(f"{table:<34} {rows:>10,}" for table, rows in sorted(counts.items()))
    return "\n".join(lines)


def watch(
    services: Services,
    until_caught_up: bool,
    timeout_s: float | None,
    stream: TextIO | None = None,
) -> float:
    """Show each layer's progress through its topic until every consumer group has
    committed everything and the marts stopped changing (``until_caught_up``), or until
    interrupted, or ``timeout_s``; the seconds it watched. Raises
    :class:`OperatorError` at the timeout."""
    board = Board(list(LAYERS), stream=stream)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    previous: tuple[object, ...] | None = None
    try:
        with PostgresMarts(services.postgres) as warehouse:
            while True:
                states = layer_states(services.kafka)
                counts = warehouse.row_counts(tuple(LAYER_ORDERS_TABLE.values()))
                for state in states:
                    note = _watch_note(state, counts)
                    board.set(state.layer.name, state.processed, state.in_topic, note)
                board.refresh()
                now = (tuple(state.lag for state in states), warehouse.totals())
                if until_caught_up and not any(now[0]) and now == previous:
                    return board.elapsed()
                previous = now
                if deadline is not None and time.monotonic() > deadline:
                    raise OperatorError(f"not caught up after {timeout_s:g}s: {_behind(states)}")
                time.sleep(WATCH_INTERVAL_S)
    finally:
        board.finish()  # the last rows, also when interrupted or failing


def _watch_note(state: LayerState, counts: dict[str, int]) -> str:
    parts = [
        f"lag {state.lag:,}",
        f"{counts.get(LAYER_ORDERS_TABLE[state.layer.name], 0):,} orders stored",
    ]
    if state.dead_letters:
        parts.append(f"{state.dead_letters:,} dead letters")
    if not state.members:
        parts.append("no worker in the group!")
    return " · ".join(parts)


def _behind(states: Iterable[LayerState]) -> str:
    behind = [
        f"{s.layer.name} lag {s.lag:,} ({s.members} worker(s) in {s.layer.consumer_group})"
        for s in states
        if s.lag
    ]
    return "; ".join(behind) or "the marts were still changing"


def summary_report(services: Services, baseline: Totals | None, users: int, top: int = 5) -> str:
    """The quickstart's closing words: orders, marts, dead letters, and the marts of the
    busiest users exactly as ``dwh marts --user <login> --top <top>`` shows them."""
    states = layer_states(services.kafka)
    with PostgresMarts(services.postgres) as warehouse:
        totals = warehouse.totals()
        busiest = warehouse.busiest_users(users)
        reports = [_user_report(warehouse, user, top) for user in busiest]
    letters = ", ".join(f"{s.layer.name} {s.dead_letters:,}" for s in states)
    lines = [totals_report(totals)]
    if baseline is not None:
        lines.append(f"compared with before this run: {_compared(baseline, totals)}")
    lines += [
        f"dead letters: {letters} (dwh dead-letters list --topic <source topic>-dlq)",
        "",
        f"the {len(busiest)} users with the most counted orders "
        f"(as `dwh marts --user <login> --top {top}` shows them):",
    ]
    for report in reports:
        lines.extend(["", report])
    return "\n".join(lines)


def _compared(baseline: Totals, totals: Totals) -> str:
    if baseline == totals:
        return "unchanged (every layer is idempotent: what was replayed added nothing)"
    return (
        f"{totals.orders - baseline.orders:+,} orders in the warehouse, "
        f"{totals.counted_orders - baseline.counted_orders:+,} counted in the marts"
    )


def read_baseline(path: str | Path) -> Totals | None:
    """Totals saved by ``dwh marts --totals --json``, or None if the file is absent."""
    file = Path(path)
    if not file.exists():
        return None
    try:
        return Totals.from_json(file.read_text())
    except (ValueError, TypeError) as exc:
        raise OperatorError(f"{path}: not a totals file of `dwh marts --totals --json`") from exc


# --- replay --------------------------------------------------------------------------------


@frozen
class Reset:
    group: str
    topic: str
    partitions: int
    messages: int


def replay(kafka: KafkaSettings, targets: Sequence[tuple[str, str]]) -> list[Reset]:
    """Move each (consumer group, topic) back to the beginning of the topic, so that the
    layer's workers, when they start, read everything again (the layers are idempotent:
    the warehouse ends the same). Refuses while a group has members: a running worker
    would overwrite the offsets with its next commit."""
    busy = [(group, n) for group, _ in targets if (n := group_members(kafka, group))]
    if busy:
        groups = ", ".join(f"{group} ({n} member(s))" for group, n in busy)
        raise OperatorError(
            f"workers are running in {groups}: stop them first (scripts/pipeline stop)"
        )
    return [
        Reset(group, topic, *reset_group_to_earliest(kafka, group, topic))
        for group, topic in targets
    ]
