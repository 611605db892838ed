"""``dwh orders generate``: the order feed simulator's messages, produced to Kafka as a
backlog at full speed or at a steady rate."""

from __future__ import annotations

import time
from itertools import islice

from dwh_adapters.kafka import KafkaPublisher, KafkaSettings
from dwh_core.messages import OutMessage
from dwh_workers.progress import Progress
from dwh_workers.sample import OrderGenerator, sample_dictionaries

CHUNK = 2000


def generate(
    kafka: KafkaSettings,
    topic: str,
    orders: int,
    rate: float | None,
    seed: int,
    dictionary_seed: int,
    cancelled_share: float,
    update_share: float,
    duplicate_share: float,
) -> int:
    """Produce the messages of ``orders`` orders (plus their later versions and
    duplicates) with no key, as the feed does; the number of messages sent."""
    generator = OrderGenerator(
        sample_dictionaries(seed=dictionary_seed),
        seed=seed,
        cancelled_share=cancelled_share,
        update_share=update_share,
        duplicate_share=duplicate_share,
    )
    messages = generator.messages(orders)
    progress = Progress(f"producing to {topic}", total=None)
    sent = 0
    with KafkaPublisher(kafka, topic) as publisher:
        if rate is None:
            while chunk := [OutMessage(None, value) for value in islice(messages, CHUNK)]:
                publisher.publish(chunk)
                sent += len(chunk)
                progress.update(sent)
        else:
            started = time.monotonic()
            for value in messages:
                publisher.publish([OutMessage(None, value)])
                sent += 1
                progress.update(sent)
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    progress.finish()
    return sent
