"""Where the running pipeline is, as plain data: each layer seen from Kafka (consumer
group members, messages in its topic, lag, dead letters), what the local workers'
``/readyz`` answer, the rows of the warehouse's tables, the progress ``dwh watch``
follows (:func:`follow`), and the state ``dwh summary`` closes a run with. Their text for people is
:mod:`dwh_workers.reports`."""

from __future__ import annotations

import socket
import time
from collections.abc import Generator, Mapping

import attrs
from attrs import frozen

from dwh_adapters.kafka import (
    KafkaSettings,
    consumer_group_lag,
    group_members,
    topic_message_count,
)
from dwh_adapters.postgres.marts import PostgresMarts, Totals
from dwh_adapters.postgres.settings import connect
from dwh_adapters.postgres.tables import ORDERS_TABLES
from dwh_core.messages import dead_letter_topic
from dwh_workers.config import Services
from dwh_workers.topology import LAYERS, LOCAL_PORTS, Layer
from dwh_workers.warehouse_queries import UserMarts, read_user_marts

WATCH_INTERVAL_S = 1.0


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


@frozen
class Status:
    """``dwh status``: every layer, what the local worker of each layer in ``ports``
    answers (``local``, by layer name), and the rows per warehouse table."""

    layers: list[LayerState]
    ports: Mapping[str, int]
    local: dict[str, str]
    row_counts: dict[str, int]


def read_status(services: Services, probe_ports: Mapping[str, int] | None = None) -> Status:
    """The layers, the local workers on ``probe_ports`` (by layer name; by default the
    ports ``scripts/pipeline`` gives them) and the warehouse's tables."""
    ports = LOCAL_PORTS if probe_ports is None else probe_ports
    states = layer_states(services.kafka)
    local = {
        state.layer.name: probe(ports[state.layer.name])
        for state in states
        if state.layer.name in ports
    }
    with PostgresMarts(services.postgres) as marts:
        counts = marts.row_counts()
    return Status(states, ports, local, counts)


@frozen
class PipelineProgress:
    """How far each layer has come: its state in Kafka and the orders it has stored
    (by layer name); and the marts' totals, to see them settle."""

    layers: list[LayerState]
    orders_stored: dict[str, int]
    totals: Totals

    @property
    def lags(self) -> tuple[int, ...]:
        return tuple(state.lag for state in self.layers)


def follow(
    services: Services, interval_s: float = WATCH_INTERVAL_S
) -> Generator[PipelineProgress, None, None]:
    """The pipeline's progress now, then again every ``interval_s``, for as long as it is
    asked, on one warehouse connection (closed with the generator)."""
    with PostgresMarts(services.postgres) as warehouse:
        while True:
            states = layer_states(services.kafka)
            counts = warehouse.row_counts(tuple(ORDERS_TABLES.values()))
            stored = {name: counts.get(table, 0) for name, table in ORDERS_TABLES.items()}
            yield PipelineProgress(states, stored, warehouse.totals())
            time.sleep(interval_s)


@frozen
class Summary:
    """The state a run ends in: the totals, the dead letters of every layer (by layer
    name), and the marts of the busiest users (those with the most counted orders),
    busiest first."""

    totals: Totals
    dead_letters: dict[str, int]
    busiest: list[UserMarts]
    tag_members: dict[str, int] = attrs.Factory(dict)
    """Members per tag in force (docs/TAGS.md), tag id order."""


def read_summary(services: Services, users: int) -> Summary:
    """The totals, the dead letters and the marts of the ``users`` busiest users."""
    letters = {
        layer.name: topic_message_count(services.kafka, dead_letter_topic(layer.source_topic))
        for layer in LAYERS.values()
    }
    with PostgresMarts(services.postgres) as warehouse:
        totals = warehouse.totals()
        busiest = [read_user_marts(warehouse, user) for user in warehouse.busiest_users(users)]
    with connect(services.postgres) as conn:
        members: dict[str, int] = dict(
            conn.execute(
                "SELECT r.tag_id, count(m.user_id) FROM cdm.tag_rules AS r"
                " LEFT JOIN cdm.user_tags AS m USING (tag_id) GROUP BY r.tag_id ORDER BY r.tag_id"
            ).fetchall()
        )
    return Summary(totals, letters, busiest, members)
