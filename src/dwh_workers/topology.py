"""The pipeline's names, defined once: its layers in order, the topic each reads and
writes, its consumer group, and the port its worker serves on this machine under
``scripts/pipeline``. Everything else (settings, the in-process pipeline, the ``dwh``
command, the tests, the benchmark) imports them from here; ``scripts/pipeline`` reads
them from :func:`main`.

:class:`Topology` is the same pipeline under names of its own (a random suffix), so
that tests and benchmark runs never share a topic or a group.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from attrs import define, field, frozen

from dwh_core.messages import dead_letter_topic

ORDERS_TOPIC = "order-service_orders"
STG_TOPIC = "stg-service-orders"
DDS_TOPIC = "dds-service-orders"
TAGS_TOPIC = "cdm-service-user-tags"


@frozen
class Layer:
    """A layer's defaults: what it reads, what it writes, its consumer group, and its
    worker's HTTP port under ``scripts/pipeline``."""

    name: str
    source_topic: str
    destination_topic: str | None
    consumer_group: str
    local_port: int


LAYERS: Mapping[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("stg", ORDERS_TOPIC, STG_TOPIC, "stg-service", 8101),
        Layer("dds", STG_TOPIC, DDS_TOPIC, "dds-service", 8102),
        Layer("cdm", DDS_TOPIC, TAGS_TOPIC, "cdm-service", 8103),
    )
}
LAYER_NAMES = tuple(LAYERS)
"""``("stg", "dds", "cdm")``, in the order an order goes through them."""
LOCAL_PORTS = {layer.name: layer.local_port for layer in LAYERS.values()}
TOPICS = [
    *(layer.source_topic for layer in LAYERS.values()),
    *(dead_letter_topic(layer.source_topic) for layer in LAYERS.values()),
    TAGS_TOPIC,
]
"""Every topic of the pipeline: each layer's source, each dead-letter topic, then the
user tags' transitions, which CDM writes for the app (docs/CONTRACT.md §8)."""


@define
class Topology:
    """The pipeline under unique topic and group names (and optionally a database of its
    own), for one test or one benchmark run."""

    dbname: str | None = None
    suffix: str = field(factory=lambda: uuid.uuid4().hex[:8])

    @property
    def source(self) -> str:
        return self.topic("stg")

    def topic(self, layer: str) -> str:
        """The topic ``layer`` reads."""
        names = {"stg": "orders", "dds": "stg", "cdm": "dds"}
        return f"{names[layer]}-{self.suffix}"

    def destination(self, layer: str) -> str:
        """The topic ``layer`` writes: the next layer's source, or after CDM the tags'."""
        following = LAYER_NAMES[LAYER_NAMES.index(layer) + 1 :]
        return self.topic(following[0]) if following else self.tags_topic

    @property
    def tags_topic(self) -> str:
        return f"tags-{self.suffix}"

    def group(self, layer: str) -> str:
        return f"{layer}-{self.suffix}"

    def instance_id(self, layer: str, replica: int = 0) -> str:
        """The static member id of a replica: replicas on this one host need ids of their
        own (the default, ``<host>-<layer>``, would make them fence each other), and a
        replica started again after a crash keeps its id, as a pod restarted in place."""
        return f"{layer}-{self.suffix}-{replica}"

    def all_topics(self) -> list[str]:
        """Every topic of :data:`TOPICS`, under this topology's names."""
        topics = [self.topic(layer) for layer in LAYER_NAMES]
        return [*topics, *(dead_letter_topic(topic) for topic in topics), self.tags_topic]

    def env(
        self, layer: str, base: Mapping[str, str] | None = None, /, **extra: str
    ) -> dict[str, str]:
        """A worker's environment: ``base`` (this process's by default) and ``extra``,
        with the layer's topics, group and database of this topology."""
        env = {
            **(os.environ if base is None else base),
            "KAFKA_SOURCE_TOPIC": self.topic(layer),
            "KAFKA_CONSUMER_GROUP": self.group(layer),
            **extra,
        }
        if self.dbname:
            env["PG_WAREHOUSE_DBNAME"] = self.dbname
        env["KAFKA_DESTINATION_TOPIC"] = self.destination(layer)
        return env


def main() -> None:
    """``python -m dwh_workers.topology``: ``<layer> <port>`` per line, for shell scripts."""
    for layer in LAYERS.values():
        print(layer.name, layer.local_port)


if __name__ == "__main__":
    main()
