"""Hostile messages for the chaos run.

:class:`HostileGenerator` makes, from a seed, messages that a real feed may carry one
day: not JSON, wrong types, missing fields, numbers past every bound, 10 KB strings,
NULs, invalid UTF-8, unknown users and menu items, and also *valid* extremes (money of
2^31, 2^40 and the largest allowed value, a 500-character name, the largest order id)
that must be counted, not rejected.

Each case says whether the contract takes it as valid, and the generator checks that
against the contract oracle of the tests (``dwh_workers.oracle``, written from the
contract alone), which also says what the marts must hold.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from attrs import frozen

from dwh_workers import oracle
from dwh_workers.sample import Dictionaries, dictionary_entries

MAX_MAGNITUDE = 99_999_999_999_999
# Order ids of the hostile messages: clear of the feed's (about 1,000,000 + orders).
HOSTILE_IDS_FROM = 1_500_000_000
# Those of a second generator in the same run (the chaos run's probes), clear of the first's.
PROBE_IDS_FROM = 1_800_000_000
_MONEY = ("bonus_payment", "cost", "payment", "bonus_grant")


@frozen
class Hostile:
    """One generated message: its ``kind``, its bytes (``None``: a Kafka message with
    no value) and whether the contract says it is valid."""

    kind: str
    value: bytes | None
    valid: bool


# --- the generator -----------------------------------------------------------------------

_Mutation = Callable[[dict[str, Any], "HostileGenerator"], Any]


class HostileGenerator:
    """Seeded hostile messages over the dictionaries. Each has an order id of its own
    (from :data:`HOSTILE_IDS_FROM`, or at the edge of the id range for the cases about
    ids), so none is a version of a feed order: a bad one that slips through shows as an
    order too many, never as a changed count of a real one."""

    def __init__(
        self, dictionaries: Dictionaries, seed: int, first_id: int = HOSTILE_IDS_FROM
    ) -> None:
        """Two generators of one run need ``first_id`` far apart: two messages with one
        order id are two versions of one order."""
        self._dictionaries = dictionaries
        self._rng = random.Random(seed)
        self._next_id = first_id
        self._token = 0

    def messages(self, count: int) -> list[Hostile]:
        """``count`` messages; every kind at least once when ``count`` allows."""
        kinds = sorted(CASES)
        self._rng.shuffle(kinds)
        repeatable = [kind for kind in sorted(CASES) if kind not in ONCE]
        extra = max(0, count - len(kinds))
        chosen = kinds[:count] + [self._rng.choice(repeatable) for _ in range(extra)]
        made = [self.make(kind) for kind in chosen]
        contract = oracle.Dictionaries(dictionary_entries(self._dictionaries))
        for message in made:
            found = bool(oracle.judge([message.value], contract).accepted)
            if found != message.valid:  # the generator and the contract must agree
                raise AssertionError(f"hostile case {message.kind}: valid={found}")
        return made

    def make(self, kind: str) -> Hostile:
        valid, build = CASES[kind]
        return Hostile(kind, build(self), valid)

    # helpers of the cases

    def order(self, **changes: Any) -> dict[str, Any]:
        """A valid CLOSED order of a known user, with 1 to 4 items of one restaurant's
        menu, and an order id of its own."""
        rng = self._rng
        restaurant = rng.choice([r for r in self._dictionaries.restaurants if r["menu"]])
        user = rng.choice(self._dictionaries.users)
        menu = rng.sample(restaurant["menu"], min(len(restaurant["menu"]), rng.randint(1, 4)))
        items = [
            {"id": m["_id"], "name": m["name"], "price": m["price"], "quantity": rng.randint(1, 3)}
            for m in menu
        ]
        cost = sum(item["price"] * item["quantity"] for item in items)
        opened = datetime(2023, 4, 1) + timedelta(seconds=rng.randrange(30 * 86400))
        stamps = [(opened + timedelta(minutes=20 * i)).isoformat(" ") for i in range(4)]
        statuses = ("OPEN", "COOKING", "DELIVERING", "CLOSED")
        self._next_id += 1
        return {
            "object_id": self._next_id,
            "object_type": "order",
            "sent_dttm": stamps[-1],
            "payload": {
                "restaurant": {"id": restaurant["_id"]},
                "date": stamps[-1],
                "user": {"id": user["_id"]},
                "order_items": items,
                "bonus_payment": 0,
                "cost": cost,
                "payment": cost,
                "bonus_grant": 0,
                "statuses": [
                    {"status": s, "dttm": t}
                    for s, t in reversed(list(zip(statuses, stamps, strict=True)))
                ],
                "final_status": "CLOSED",
                "update_ts": stamps[-1],
            },
            **changes,
        }

    def token(self) -> str:
        """A marker that makes a message's bytes unique in the run."""
        self._token += 1
        return f"chaos-{self._token}"

    def hex_id(self) -> str:
        """24 hex digits, like the dictionaries' ids, that no dictionary holds."""
        return "ffff" + "".join(self._rng.choice("0123456789abcdef") for _ in range(20))

    def pick(self, options: list[Any]) -> Any:
        return self._rng.choice(options)

    def other_menu_item(self, order: dict[str, Any]) -> str:
        """A menu item of another restaurant than the order's."""
        mine = order["payload"]["restaurant"]["id"]
        others = [r for r in self._dictionaries.restaurants if r["_id"] != mine and r["menu"]]
        return str(self._rng.choice(self._rng.choice(others)["menu"])["_id"])


def _dumps(document: Any, ascii_only: bool = False) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")


def _set(path: str, value: Any) -> Callable[[HostileGenerator], bytes]:
    """A case: a fresh order with the field at ``path`` (dots; ``items.N.x`` for an
    item) set to ``value``."""

    def build(generator: HostileGenerator) -> bytes:
        order = generator.order()
        _assign(order, path, value)
        return _dumps(order)

    return build


def _drop(*paths: str) -> Callable[[HostileGenerator], bytes]:
    """A case: a fresh order without the field at one of ``paths``."""

    def build(generator: HostileGenerator) -> bytes:
        order = generator.order()
        parent, name = _parent(order, generator.pick(list(paths)))
        del parent[name]
        return _dumps(order)

    return build


def _parent(order: dict[str, Any], path: str) -> tuple[Any, Any]:
    node: Any = order
    parts = path.replace("items.", "payload.order_items.").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    return node, int(last) if isinstance(node, list) else last


def _assign(order: dict[str, Any], path: str, value: Any) -> None:
    parent, name = _parent(order, path)
    parent[name] = value


def _raw(replace: bytes, by: bytes) -> Callable[[HostileGenerator], bytes]:
    """A case: a fresh order's bytes with the item name's first occurrence of
    ``replace`` (a marker put there) replaced by raw ``by`` bytes."""

    def build(generator: HostileGenerator) -> bytes:
        order = generator.order()
        order["payload"]["order_items"][0]["name"] = "name " + replace.decode()
        return _dumps(order).replace(replace, by, 1)

    return build


def _not_json(g: HostileGenerator) -> bytes:
    return f"{{not json {g.token()}".encode()


def _truncated(g: HostileGenerator) -> bytes:
    text = _dumps(g.order())
    return text[: len(text) // 2]


def _not_object(g: HostileGenerator) -> bytes:
    options = [b"[]", b"42", b'"order"', b"null", b"true", _dumps([g.order()])]
    return bytes(g.pick(options))


def _deeply_nested(_: HostileGenerator) -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


def _nan_cost(g: HostileGenerator) -> bytes:
    return _dumps(g.order()).replace(b'"cost": ', b'"cost": NaN, "was": ', 1)


def _unknown(path: str) -> Callable[[HostileGenerator], bytes]:
    def build(g: HostileGenerator) -> bytes:
        order = g.order()
        _assign(order, path, g.hex_id())
        return _dumps(order)

    return build


def _foreign_item(g: HostileGenerator) -> bytes:
    order = g.order()
    order["payload"]["order_items"][0]["id"] = g.other_menu_item(order)
    return _dumps(order)


def _with_id(object_id: int) -> Callable[[HostileGenerator], bytes]:
    def build(g: HostileGenerator) -> bytes:
        return _dumps(g.order(object_id=object_id))

    return build


def _money(value: int) -> Callable[[HostileGenerator], bytes]:
    """Every money field of the order, and one item's price, set to ``value``."""

    def build(g: HostileGenerator) -> bytes:
        order = g.order()
        for name in _MONEY:
            order["payload"][name] = value
        order["payload"]["order_items"][0]["price"] = value
        return _dumps(order)

    return build


def _long_name(text: str, ascii_only: bool = False) -> Callable[[HostileGenerator], bytes]:
    def build(g: HostileGenerator) -> bytes:
        order = g.order()
        order["payload"]["order_items"][0]["name"] = text
        return _dumps(order, ascii_only)

    return build


def _extra_fields(g: HostileGenerator) -> bytes:
    order = g.order(shard=7, trace={"id": g.token()})
    order["payload"]["courier"] = {"id": "c-1", "rating": 4.5}
    return _dumps(order)


def _pretty(g: HostileGenerator) -> bytes:
    return json.dumps(g.order(), indent="\t", ensure_ascii=True).encode("ascii") + b"\n"


# Valid cases with a fixed order id: made once a run, or they would be versions of one order.
ONCE = frozenset({"object_id 2^31-1", "object_id -2^31"})
_TEN_KB = "щ" * 10_240
_EMOJI_500 = "🍕" * 500  # 2,000 bytes of UTF-8, 1,000 UTF-16 units when escaped
# kind -> (valid by the contract, how to build one)
CASES: dict[str, tuple[bool, Callable[[HostileGenerator], bytes | None]]] = {
    "not JSON": (False, _not_json),
    "truncated JSON": (False, _truncated),
    "JSON, not an object": (False, _not_object),
    "nested 100,000 deep": (False, _deeply_nested),
    "no value (Kafka null)": (False, lambda _: None),
    "empty bytes": (False, lambda _: b""),
    "NaN in cost": (False, _nan_cost),
    "cost as a string": (False, _set("payload.cost", "175")),
    "price 1.5": (False, _set("items.0.price", 1.5)),
    "cost 175.0": (False, _set("payload.cost", 175.0)),
    "quantity true": (False, _set("items.0.quantity", True)),
    "object_id as a string": (False, _set("object_id", "123")),
    "order_items an object": (False, _set("payload.order_items", {})),
    "statuses null": (False, _set("payload.statuses", None)),
    "object_type payment": (False, _set("object_type", "payment")),
    "a required field missing": (
        False,
        _drop(
            "object_id",
            "object_type",
            "sent_dttm",
            "payload.cost",
            "payload.user.id",
            "payload.update_ts",
            "payload.final_status",
            "items.0.price",
            "items.0.id",
        ),
    ),
    "money 10^14 (one past the bound)": (False, _money(MAX_MAGNITUDE + 1)),
    "money -10^14": (False, _money(-(MAX_MAGNITUDE + 1))),
    "money 2^63": (False, _money(2**63)),
    "money 2^64 (a float to orjson)": (False, _money(2**64)),
    "money 10^30": (False, _money(10**30)),
    "quantity 10^15": (False, _set("items.0.quantity", 10**15)),
    "object_id 2^31": (False, _with_id(2**31)),
    "object_id 2^40": (False, _with_id(2**40)),
    "object_id -2^31-1": (False, _with_id(-(2**31) - 1)),
    "10 KB item name": (False, _long_name(_TEN_KB)),
    "10 KB user id": (False, _set("payload.user.id", "u" * 10_240)),
    "10 KB final_status": (False, _set("payload.final_status", "C" * 10_240)),
    "501-character item name": (False, _long_name("я" * 501)),
    "NUL escaped in a name": (False, _long_name("Пицца\x00")),
    "NUL escaped in the user id": (False, _set("payload.user.id", "\x00")),
    "raw NUL byte in a string": (False, _raw(b"MARK", b"\x00")),
    "invalid UTF-8 (0xFF)": (False, _raw(b"MARK", b"\xff\xfe")),
    "invalid UTF-8 (overlong /)": (False, _raw(b"MARK", b"\xc0\xaf")),
    "invalid UTF-8 (cut sequence)": (False, _raw(b"MARK", b"\xd0")),
    "lone surrogate escape": (False, _raw(b"MARK", b"\\ud800")),
    "update_ts not a time": (False, _set("payload.update_ts", "yesterday")),
    "update_ts 2023-13-45": (False, _set("payload.update_ts", "2023-13-45 25:61:61")),
    "update_ts a number": (False, _set("payload.update_ts", 1680307200)),
    "unknown user": (False, _unknown("payload.user.id")),
    "unknown restaurant": (False, _unknown("payload.restaurant.id")),
    "unknown menu item": (False, _unknown("items.0.id")),
    "another restaurant's menu item": (False, _foreign_item),
    # valid extremes: counted like any order
    "money 2^31": (True, _money(2**31)),
    "money 2^40": (True, _money(2**40)),
    "money -(10^14-1)": (True, _money(-MAX_MAGNITUDE)),
    "money at the bound": (True, _money(MAX_MAGNITUDE)),
    "quantity 2^31": (True, _set("items.0.quantity", 2**31)),
    "object_id 2^31-1": (True, _with_id(2**31 - 1)),
    "object_id -2^31": (True, _with_id(-(2**31))),
    "500-character Cyrillic name": (True, _long_name("я" * 500)),
    "500 emoji, escaped": (True, _long_name(_EMOJI_500, ascii_only=True)),
    "unknown extra fields": (True, _extra_fields),
    "pretty-printed, all ASCII": (True, _pretty),
}
