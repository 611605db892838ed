"""What the operator's commands show and do: ``dwh status``, ``marts``, ``summary``,
``watch`` and ``replay``, as text and as actions on the running pipeline."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from attrs import asdict, frozen
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from psycopg import sql

from dwh_adapters.kafka import (
    KafkaSettings,
    consumer_group_lag,
    group_members,
    topic_message_count,
)
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings
from dwh_core.hashing import hash_key
from dwh_workers.config import LAYERS, Layer, Services
from dwh_workers.progress import Board

REQUEST_TIMEOUT_S = 10.0
WATCH_INTERVAL_S = 1.0
# the orders each layer has stored: how far the backlog has come, in orders
LAYER_ORDERS_TABLE = {
    "stg": "stg.order_events",
    "dds": "dds.h_order",
    "cdm": "cdm.order_contributions",
}
PIPELINE_PORTS = {"stg": 8101, "dds": 8102, "cdm": 8103}  # the ports scripts/pipeline gives
_SOURCE_ID = re.compile(r"[0-9a-fA-F]{24}")


class OperatorError(Exception):
    """The command cannot do what was asked; ``str()`` is one line saying why."""


# --- the warehouse, read -----------------------------------------------------------------


@frozen
class UserRef:
    """A user as the operator knows them: source id, name, login."""

    user_id: str
    name: str
    login: str

    def describe(self) -> str:
        return f"{self.name} ({self.login}, {self.user_id})"


@frozen
class Totals:
    """How much the warehouse holds. ``orders``: orders in STG (one row per order);
    ``counted_orders``: orders whose newest version is CLOSED, as the marts count them;
    then the mart rows with a count above 0 and the sums of their counts."""

    orders: int
    counted_orders: int
    product_counters: int
    product_count_sum: int
    category_counters: int
    category_count_sum: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Totals:
        return cls(**json.loads(text))


_CURRENT_NAMES = (
    "SELECT DISTINCT ON (s.h_user_pk) u.user_id, s.username, s.userlogin"
    " FROM dds.s_user_names s JOIN dds.h_user u ON u.h_user_pk = s.h_user_pk"
    " WHERE s.h_user_pk = ANY(%s)"
    " ORDER BY s.h_user_pk, s.source_ts DESC"
)
_FIND_USERS = sql.SQL(
    "SELECT user_id, username, userlogin FROM (" + _CURRENT_NAMES + ") AS current"
    " WHERE user_id = %s OR userlogin = %s ORDER BY user_id"
)
_USERS_BY_LOGIN = "SELECT h_user_pk FROM dds.s_user_names WHERE userlogin = %s"
_BUSIEST = (
    "SELECT user_key FROM cdm.order_contributions WHERE cardinality(products) > 0"
    " GROUP BY user_key ORDER BY count(*) DESC, user_key LIMIT %s"
)
_TOTALS = sql.SQL(
    "SELECT (SELECT count(*) FROM stg.order_events),"
    " (SELECT count(*) FROM cdm.order_contributions WHERE cardinality(products) > 0),"
    " p.rows, p.total, c.rows, c.total"
    " FROM (SELECT count(*) AS rows, coalesce(sum(order_cnt), 0) AS total"
    "       FROM cdm.user_product_counters WHERE order_cnt > 0) p,"
    "      (SELECT count(*) AS rows, coalesce(sum(order_cnt), 0) AS total"
    "       FROM cdm.user_category_counters WHERE order_cnt > 0) c"
)


class WarehouseReader(PostgresMarts):
    """The marts plus what the operator needs around them: users by login, the busiest
    users, the totals."""

    def find_users(self, id_or_login: str) -> list[UserRef]:
        """The users whose source id or current login is ``id_or_login``."""
        with self._transaction() as conn:
            keys = [row[0] for row in conn.execute(_USERS_BY_LOGIN, (id_or_login,))]
            if _SOURCE_ID.fullmatch(id_or_login):
                keys.append(hash_key(id_or_login))
            rows = conn.execute(_FIND_USERS, (keys, id_or_login, id_or_login)).fetchall()
        return [UserRef(*row) for row in rows]

    def busiest_users(self, limit: int) -> list[UserRef]:
        """The users with the most counted orders, most first."""
        with self._transaction() as conn:
            keys = [row[0] for row in conn.execute(_BUSIEST, (limit,))]
            names = {
                hash_key(user_id): UserRef(user_id, name, login)
                for user_id, name, login in conn.execute(_CURRENT_NAMES, (keys,))
            }
        return [names[key] for key in keys if key in names]

    def totals(self) -> Totals:
        with self._transaction() as conn:
            row = conn.execute(_TOTALS).fetchone()
        assert row is not None
        return Totals(*row)


def marts_report(postgres: PgSettings, user: str | None, category: str | None, top: int) -> str:
    """One user's products and categories (by source id or login), or the top users of
    a category, or the largest (user, category) counters when neither is given. Names,
    not hash keys."""
    with WarehouseReader(postgres) as warehouse:
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


def _user_report(warehouse: WarehouseReader, user: UserRef, top: int) -> str:
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
    with WarehouseReader(postgres) as warehouse:
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
            dead_letters=topic_message_count(kafka, dead_letter_topic(layer)),
        )
        for layer in LAYERS.values()
    ]


def dead_letter_topic(layer: Layer) -> str:
    return f"{layer.source_topic}-dlq"


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
        with WarehouseReader(services.postgres) as warehouse:
            while True:
                states = layer_states(services.kafka)
                counts = warehouse.row_counts()
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
    with WarehouseReader(services.postgres) as warehouse:
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
    admin = AdminClient(kafka.client_config())
    return [_reset(kafka, admin, group, topic) for group, topic in targets]


def _reset(kafka: KafkaSettings, admin: AdminClient, group: str, topic: str) -> Reset:
    marks = _watermarks(kafka, topic)
    if not marks:
        return Reset(group, topic, 0, 0)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, low) for p, (low, _) in sorted(marks.items())]
    )
    [future] = admin.alter_consumer_group_offsets(
        [request], request_timeout=REQUEST_TIMEOUT_S
    ).values()
    for tp in future.result().topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return Reset(group, topic, len(marks), sum(high - low for low, high in marks.values()))


def _watermarks(kafka: KafkaSettings, topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) of each partition of the topic; empty if it does not exist."""
    consumer = Consumer({**kafka.client_config(), "group.id": "dwh-admin"})
    try:
        found = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
        if found is None or found.error is not None:
            return {}
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=REQUEST_TIMEOUT_S)
            for p in sorted(found.partitions)
        }
    finally:
        consumer.close()
