"""``dwh orders generate``: the order feed simulator's messages, produced to Kafka as a
backlog at full speed, at a steady rate, or as a live feed for a while."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from itertools import islice

from attrs import frozen

from dwh_adapters.kafka import KafkaPublisher, KafkaSettings
from dwh_core.messages import OutMessage
from dwh_workers.progress import Progress
from dwh_workers.sample import OrderGenerator, sample_dictionaries

CHUNK = 2000


@frozen
class Feed:
    """What to produce. The generator is seeded: the same feed gives the same bytes.

    ``after`` skips the first ``after`` orders of the seeded feed (every version and
    replay of them): the backlog a previous run produced, so that what follows carries
    new order ids and later timestamps. With ``duration_s`` (and a ``rate``) the feed
    is live: ``rate × duration_s`` messages of the endless feed, paced; else it is the
    messages of ``orders`` orders.
    """

    orders: int
    seed: int
    dictionary_seed: int
    cancelled_share: float
    update_share: float
    duplicate_share: float
    rate: float | None = None
    duration_s: float | None = None
    after: int = 0

    def live_messages(self) -> int | None:
        """How many messages a live feed sends; None when it is not live."""
        if self.duration_s is None or self.rate is None:
            return None
        return math.ceil(self.rate * self.duration_s)

    def messages(self) -> Iterator[bytes]:
        generator = OrderGenerator(
            sample_dictionaries(seed=self.dictionary_seed),
            seed=self.seed,
            cancelled_share=self.cancelled_share,
            update_share=self.update_share,
            duplicate_share=self.duplicate_share,
        )
        for _ in generator.messages(self.after):
            pass
        live = self.live_messages()
        if live is not None:
            return islice(generator.stream(), live)
        return generator.messages(self.orders)


def generate(kafka: KafkaSettings, topic: str, feed: Feed) -> int:
    """Produce the feed's messages with no key, as the feed does; the number sent."""
    messages = feed.messages()
    progress = Progress(f"producing to {topic}", total=feed.live_messages())
    sent = 0
    with KafkaPublisher(kafka, topic) as publisher:
        if feed.rate is None:
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
                time.sleep(max(0.0, started + sent / feed.rate - time.monotonic()))
    progress.finish()
    return sent
