"""The simulator of the order feed (docs/CONTRACT.md §1.1) over sample dictionaries:
:class:`OrderGenerator` places orders, sends their status updates (some stale, some
refunded) and replays a share of the messages as duplicates.

It draws from its own ``random.Random(seed)``, never from the global one: the same
arguments give the same bytes. (Producing these messages to Kafka is
:mod:`dwh_workers.feed`.)
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from dwh_workers.sample.dictionaries import Dictionaries

FLOW = ("OPEN", "COOKING", "DELIVERING", "CLOSED")
CANCELLED = "CANCELLED"
MEAN_ORDER_INTERVAL_S = 12.0  # the original feed: 5 orders per minute
REFUND_SHARE = 0.3  # of updated orders: CLOSED, then CANCELLED after a refund
STALE_SHARE = 0.15  # of updated orders: the older version arrives after the newer one
ITEM_COUNTS = (1, 1, 1, 2, 2, 2, 3, 3, 4, 5)
QUANTITIES = (1, 1, 1, 1, 2, 2, 3, 4)

_Version = list[tuple[str, int]]  # (status, seconds since start), oldest first

_T = TypeVar("_T")


class OrderGenerator:
    """Simulates the order feed of docs/CONTRACT.md §1.1 over the given dictionaries.

    Orders are placed about every 12 s of simulated time from ``start`` (naive UTC);
    each version is sent a little after its ``update_ts``, so ``sent_dttm`` moves
    forward. Of the orders, ``cancelled_share`` arrive CANCELLED, ``update_share``
    arrive first in an intermediate status and later as newer versions (CLOSED, some
    then CANCELLED after a refund; a few of the older versions arrive after the newer
    ones), the rest arrive CLOSED. ``duplicate_share`` of all messages are byte-for-byte
    replays of earlier ones. ``date`` equals the version's ``update_ts``, as in the
    contract's example. The same arguments give the same bytes.

    The generator keeps its clock and order ids between calls, so a live
    :meth:`stream` after a backlog of :meth:`messages` carries newer timestamps.
    """

    def __init__(
        self,
        dictionaries: Dictionaries,
        seed: int = 1,
        cancelled_share: float = 0.1,
        update_share: float = 0.2,
        duplicate_share: float = 0.05,
        start: datetime = datetime(2023, 4, 1),
    ) -> None:
        shares = (cancelled_share, update_share, duplicate_share)
        if not all(0 <= share <= 1 for share in shares) or cancelled_share + update_share > 1:
            raise ValueError(f"shares must be in [0, 1] and cancelled + update <= 1: {shares}")
        if duplicate_share == 1:
            raise ValueError("duplicate_share must be below 1: replays need originals")
        self._rng = rng = random.Random(seed)
        self._random = rng.random
        self._cancelled = cancelled_share
        self._updated = cancelled_share + update_share
        self._replay = duplicate_share / (1 - duplicate_share)  # per original message
        self._interval = partial(rng.expovariate, 1 / MEAN_ORDER_INTERVAL_S)
        if start.tzinfo is not None:
            start = start.astimezone(UTC).replace(tzinfo=None)
        self._start = start.replace(microsecond=0)
        self._users = [{"id": user["_id"]} for user in dictionaries.users]
        self._menus = [
            (
                {"id": restaurant["_id"]},
                [(item["_id"], item["name"], item["price"]) for item in restaurant["menu"]],
            )
            for restaurant in dictionaries.restaurants
            if restaurant["menu"]
        ]
        if not self._users or not self._menus:
            raise ValueError("the dictionaries need a user and a restaurant with a menu")
        self._encoders = (json.JSONEncoder(ensure_ascii=True), json.JSONEncoder(ensure_ascii=False))
        self._next_id = self._between(900_000, 1_100_000)
        self._now = 0
        self._sequence = 0
        self._pending: list[tuple[int, int, bytes]] = []

    def messages(self, n: int) -> Iterator[bytes]:
        """The messages of the next ``n`` orders, every later version and replay included
        (lazily: the generator's state advances as they are consumed)."""
        yield from self._emit(n)

    def stream(self) -> Iterator[bytes]:
        """An endless feed; later versions and replays are interleaved as they fall due."""
        yield from self._emit(None)

    def _emit(self, n: int | None) -> Iterator[bytes]:
        pending = self._pending
        placed = 0
        while n is None or placed < n:
            self._now += round(self._interval())
            while pending and pending[0][0] <= self._now:
                yield heapq.heappop(pending)[2]
            self._place(self._next_id, self._now)
            self._next_id += 1
            placed += 1
        while pending:
            sent, _, message = heapq.heappop(pending)
            self._now = max(self._now, sent)
            yield message

    def _between(self, low: int, high: int) -> int:
        """Like ``randint``, several times faster."""
        return low + int(self._random() * (high - low + 1))

    def _pick(self, options: Sequence[_T]) -> _T:
        return options[int(self._random() * len(options))]

    def _format(self, seconds: int) -> str:
        return (self._start + timedelta(seconds=seconds)).isoformat(" ")

    def _versions(self, opened: int) -> list[_Version]:
        times = [opened]
        for low, high in ((60, 900), (600, 2400), (600, 3600)):
            times.append(times[-1] + self._between(low, high))
        full = list(zip(FLOW, times, strict=True))
        kind = self._random()
        if kind < self._cancelled:
            stage = self._between(1, 3)
            cancelled = times[stage - 1] + self._between(60, 1800)
            return [[*full[:stage], (CANCELLED, cancelled)]]
        if kind < self._updated:
            versions = [full[: self._between(1, 3)], full]
            if self._random() < REFUND_SHARE:
                versions.append([*full, (CANCELLED, times[-1] + self._between(600, 7200))])
            return versions
        return [full]

    def _place(self, object_id: int, opened: int) -> None:
        restaurant, menu = self._pick(self._menus)
        count = min(self._pick(ITEM_COUNTS), len(menu))
        items = [
            {"id": item_id, "name": name, "price": price, "quantity": self._pick(QUANTITIES)}
            for item_id, name, price in self._rng.sample(menu, count)
        ]
        cost = sum(item["price"] * item["quantity"] for item in items)
        bonus_payment = min(cost, 10 * self._between(5, 50)) if self._random() < 0.15 else 0
        payment = cost - bonus_payment
        user = self._users[int(len(self._users) * self._random() ** 2)]  # some order more
        bonus_grant = payment // 100 if self._random() < 0.25 else 0
        versions = self._versions(opened)
        sent = [history[-1][1] + self._between(0, 30) for history in versions]
        if len(versions) > 1 and self._random() < STALE_SHARE:
            sent[0] = sent[-1] + self._between(1, 300)
        statuses = {  # every version's history is a prefix of the last one's
            change: {"status": change[0], "dttm": self._format(change[1])}
            for change in versions[-1]
        }
        for history, sent_at in zip(versions, sent, strict=True):
            newest = statuses[history[-1]]
            payload = {
                "restaurant": restaurant,
                "date": newest["dttm"],
                "user": user,
                "order_items": items,
                "bonus_payment": bonus_payment,
                "cost": cost,
                "payment": payment,
                "bonus_grant": bonus_grant,
                "statuses": [statuses[change] for change in reversed(history)],
                "final_status": newest["status"],
                "update_ts": newest["dttm"],
            }
            self._schedule(sent_at, object_id, payload)

    def _schedule(self, sent: int, object_id: int, payload: dict[str, Any]) -> None:
        document = {
            "object_id": object_id,
            "object_type": "order",
            "sent_dttm": self._format(sent),
            "payload": payload,
        }
        # the real feed mixes escaped and raw non-ASCII
        message = self._encoders[self._random() < 0.5].encode(document).encode("utf-8")
        entries = [(sent, message)]
        if self._random() < self._replay:
            entries.append((sent + self._between(1, 600), message))
        for at, value in entries:
            self._sequence += 1
            heapq.heappush(self._pending, (at, self._sequence, value))
