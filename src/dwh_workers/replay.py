"""``dwh replay``: move a layer's consumer group back to the beginning of its source
topic, so that its workers read everything again when they start. Its text for people
is :mod:`dwh_workers.reports`."""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from dwh_adapters.kafka import KafkaSettings, group_members, reset_group_to_earliest
from dwh_workers.errors import OperatorError
from dwh_workers.topology import LAYER_NAMES, LAYERS


@frozen
class Reset:
    """A group moved back to the beginning of a topic: its partitions, and the messages
    it will read again."""

    group: str
    topic: str
    partitions: int
    messages: int


def replay_targets(layer: str, group: str | None, topic: str | None) -> list[tuple[str, str]]:
    """The (consumer group, topic) of ``layer`` (``all``: of every layer), unless
    ``group`` or ``topic`` name others; those name one layer's, so go with one layer."""
    layers = list(LAYERS.values()) if layer == "all" else [LAYERS[layer]]
    if (group or topic) and len(layers) > 1:
        raise OperatorError(
            f"--group and --topic name one layer's group: use --layer {'|'.join(LAYER_NAMES)}"
        )
    return [(group or each.consumer_group, topic or each.source_topic) for each in layers]


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
