"""Freshness: with the workers running, fresh orders arrive at a steady rate; how long
from producing each to its counter being visible in the marts.

Every probe is a CLOSED order with one product, for a (user, product) pair that no
order had before: the probe users are the benchmark's own, loaded into Redis next to
the sample's. So the pair's counter appearing in ``cdm.user_product_counters`` is the
moment the order became visible. One thread produces on schedule; the main thread asks
PostgreSQL every 20 ms which of the pending probes are visible.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from bench.console import say
from bench.kafka import producer
from bench.tables import Connection
from dwh_adapters.kafka import KafkaSettings
from dwh_core.hashing import hash_key

POLL_S = 0.02
DRAIN_S = 30.0  # after the last probe: the longest wait for the stragglers
FIRST_PROBE_ID = 100_000_000  # far above the sample feed's order ids
_VISIBLE = (
    "SELECT user_id, product_id FROM cdm.user_product_counters"
    " WHERE (user_id, product_id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))"
)

Pair = tuple[uuid.UUID, uuid.UUID]


class Probes:
    """Probe orders for fresh (user, product) pairs, and the users they need."""

    def __init__(self, restaurants: list[dict[str, Any]], run_id: str, capacity: int) -> None:
        self._items = [
            (restaurant["_id"], item) for restaurant in restaurants for item in restaurant["menu"]
        ]
        self.users = [
            {
                "_id": f"be9c{run_id[:8]}{number:012x}",
                "name": f"Пробный Пользователь №{number}",
                "login": f"bench_probe_{run_id[:8]}_{number}",
                "update_ts_utc": "2023-04-01 00:00:00",
            }
            for number in range(math.ceil(capacity / len(self._items)))
        ]
        self._numbers: Iterator[int] = iter(range(len(self.users) * len(self._items)))
        self.messages: list[bytes] = []

    def dictionary_entries(self) -> dict[str, bytes]:
        return {user["_id"]: json.dumps(user, ensure_ascii=False).encode() for user in self.users}

    def next(self) -> tuple[Pair, bytes]:
        """The next probe: its (user key, product key) and the message, stamped now."""
        number = next(self._numbers)
        user = self.users[number // len(self._items)]
        restaurant_id, item = self._items[number % len(self._items)]
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        statuses = [
            {"status": status, "dttm": stamp}
            for status in ("CLOSED", "DELIVERING", "COOKING", "OPEN")
        ]
        document = {
            "object_id": FIRST_PROBE_ID + number,
            "object_type": "order",
            "sent_dttm": stamp,
            "payload": {
                "restaurant": {"id": restaurant_id},
                "date": stamp,
                "user": {"id": user["_id"]},
                "order_items": [
                    {"id": item["_id"], "name": item["name"], "price": item["price"], "quantity": 1}
                ],
                "bonus_payment": 0,
                "cost": item["price"],
                "payment": item["price"],
                "bonus_grant": 0,
                "statuses": statuses,
                "final_status": "CLOSED",
                "update_ts": stamp,
            },
        }
        message = json.dumps(document, ensure_ascii=False).encode()
        self.messages.append(message)
        return (hash_key(user["_id"]), hash_key(item["_id"])), message


@frozen
class Freshness:
    """Latencies from produce to visible in the marts, in milliseconds."""

    rate: float
    seconds: float
    probes: int
    achieved_rate: float
    visible: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def measure(
    kafka: KafkaSettings,
    conn: Connection,
    topic: str,
    probes: Probes,
    rate: float,
    seconds: float,
) -> Freshness:
    feed = _Feed(kafka, topic, probes, rate, seconds)
    thread = threading.Thread(target=feed.run, name="probe-feed", daemon=True)
    thread.start()
    latencies: list[float] = []
    last_report = time.monotonic()
    while True:
        tick = time.monotonic()
        finished = feed.finished  # read first: every probe sent by then is in `pending`
        pending = feed.pending()
        if pending:
            users, products = zip(*pending, strict=True)
            visible = conn.execute(_VISIBLE, (list(users), list(products))).fetchall()
            latencies.extend(tick - sent for sent in feed.seen([(u, p) for u, p in visible]))
        if finished is not None and (not pending or tick > finished + DRAIN_S):
            break
        if tick - last_report >= 5:
            last_report = tick
            say(f"freshness {rate:g}/s: {feed.sent:,} sent, {len(latencies):,} visible")
        time.sleep(max(0.0, tick + POLL_S - time.monotonic()))
    thread.join()
    if feed.error is not None:
        raise feed.error
    return _summary(rate, seconds, feed, latencies)


def _summary(rate: float, seconds: float, feed: _Feed, latencies: list[float]) -> Freshness:
    ordered = sorted(latencies) or [math.nan]

    def percentile(share: float) -> float:
        return round(1000 * ordered[max(0, math.ceil(share * len(ordered)) - 1)], 1)

    return Freshness(
        rate=rate,
        seconds=seconds,
        probes=feed.sent,
        achieved_rate=round(feed.sent / feed.duration, 1),
        visible=len(latencies),
        p50_ms=percentile(0.50),
        p95_ms=percentile(0.95),
        p99_ms=percentile(0.99),
        max_ms=round(1000 * ordered[-1], 1),
        mean_ms=round(1000 * sum(ordered) / len(ordered), 1),
    )


class _Feed:
    """Produces the probes on schedule and keeps the send time of those not yet seen."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, probes: Probes, rate: float, seconds: float
    ) -> None:
        self._client = producer(kafka, **{"linger.ms": 1})
        self._topic = topic
        self._probes = probes
        self._rate = rate
        self._total = round(rate * seconds)
        self._lock = threading.Lock()
        self._pending: dict[Pair, float] = {}
        self.sent = 0
        self.duration = 0.0
        self.finished: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            while self.sent < self._total:
                due = min(self._total, int((time.monotonic() - started) * self._rate) + 1)
                while self.sent < due:
                    pair, message = self._probes.next()
                    with self._lock:
                        self._pending[pair] = time.monotonic()
                    self._client.produce(self._topic, message)
                    self.sent += 1
                self._client.poll(0)
                time.sleep(max(0.0, started + self.sent / self._rate - time.monotonic()))
            self.duration = time.monotonic() - started
            if self._client.flush(30):
                raise RuntimeError(f"probes to {self._topic} were not acknowledged within 30 s")
        except BaseException as exc:  # reported by the measuring thread
            self.error = exc
        finally:
            self.duration = self.duration or time.monotonic() - started
            self.finished = time.monotonic()

    def pending(self) -> list[Pair]:
        with self._lock:
            return list(self._pending)

    def seen(self, pairs: list[Pair]) -> list[float]:
        """Forget these probes; their send times."""
        with self._lock:
            return [self._pending.pop(pair) for pair in pairs if pair in self._pending]
