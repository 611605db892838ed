"""The marts as docs/CONTRACT.md §4 defines them, computed directly from the order messages,
and which messages are dead letters by the rules of §1, §5 and §7.

It is how the test suite and the benchmark judge the pipeline, so it lives here, where
both can import it (and so can a service, with the ``workers`` extra, that wants to
check its own feed against the contract). Written independently of the pipeline: the
standard library's ``json``, plain dicts, no vault, no ledger, no ``dwh_core`` parsing;
nothing in the pipeline imports it. Only the hash-key rule is shared
(:func:`dwh_core.hashing.hash_key`): it *is* the contract's definition of the mart keys.

The rules, as the contract states them:

* a message is UTF-8 JSON (RFC 8259: no ``NaN``/``Infinity``, numbers a double can
  hold, no byte-order mark, no lone surrogate, whether escaped or encoded); an object
  with duplicate keys keeps the last value;
* integers are JSON integers (never bool, float or string); money fields and quantity
  satisfy ``|v| <= 99_999_999_999_999`` (``numeric(19,5)``); ``object_id`` fits a
  PostgreSQL ``int``; every string of the contract's fields is at most 500 characters
  and has no NUL; a timestamp is anything ``datetime.fromisoformat`` reads whose UTC
  value stays within years 1 to 9999; unknown extra fields are tolerated;
* an order message is stored as it came, so a NUL anywhere in it (even in an extra
  field or a key) makes it invalid; ``object_type`` must be ``"order"``;
* an order naming a user, restaurant or menu item the dictionaries lack, or whose entry
  breaks the rules above, is a dead letter;
* the newest version of an order: the greatest ``update_ts`` (in UTC), then the
  lifecycle rank of ``final_status``, then the MD5 digest (as bytes) of the message's
  bytes as received; the greatest wins.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from dwh_core.hashing import hash_key

MAX_MONEY = 99_999_999_999_999
ORDER_IDS = range(-(2**31), 2**31)
MAX_TEXT = 500
LIFECYCLE = ("OPEN", "COOKING", "DELIVERING", "CLOSED", "CANCELLED")

Counts = Counter[tuple[uuid.UUID, uuid.UUID]]


class Rejected(ValueError):
    """The message (or dictionary entry) is a dead letter; ``str()`` says why."""


# --- decoding -------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise Rejected(f"not JSON: {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Rejected(f"not JSON: {text[:20]} is beyond a double")
    return value


def decode(raw: bytes | None) -> Any:
    """The JSON document of ``raw``; :class:`Rejected` when it is not strict UTF-8 JSON."""
    return _decode(raw)[0]


def _decode(raw: bytes | None) -> tuple[Any, list[str]]:
    """The document and every string its text holds, keys and the values a duplicate
    key overwrote included (the text is what gets stored, or refused)."""
    if raw is None:
        raise Rejected("no value")
    if not _SUSPECT_ESCAPE.search(raw):
        # No escape that can make a NUL or a lone surrogate, and strict UTF-8 admits
        # neither as bytes: no string needs looking at (the fast path of big backlogs).
        return _loads(raw, None), []
    seen: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # Called innermost first: nested objects have recorded their strings already.
        for key, value in items:
            seen.append(key)
            if isinstance(value, str):
                seen.append(value)
            elif isinstance(value, list):
                seen.extend(_strings(value))
        return dict(items)

    document = _loads(raw, pairs)
    if not isinstance(document, dict):
        seen.extend(_strings(document))
    if any("\ud800" <= char <= "\udfff" for text in seen for char in text):
        raise Rejected("a lone surrogate is not Unicode text")
    return document, seen


# \u0000, or \uD800 to \uDFFF in any case (a spelled-out "\\u0000" matches too: it
# only costs the slow path).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _loads(raw: bytes, pairs: Callable[[list[tuple[str, Any]]], dict[str, Any]] | None) -> Any:
    try:
        # strict UTF-8: surrogates encoded as UTF-8 are invalid bytes, and a BOM stays a
        # character, which json.loads then refuses.
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=pairs,
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Rejected(f"not JSON: {type(exc).__name__}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise Rejected(f"not JSON: {exc}") from None


def _strings(document: Any) -> Iterator[str]:
    """Every string of a document, keys included (iteratively: documents may nest
    hundreds deep)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from value.keys()
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


# --- field rules ----------------------------------------------------------------------


def _kind(value: Any) -> str:
    return type(value).__name__


def text(value: Any) -> None:
    if type(value) is not str:
        raise Rejected(f"expected string, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise Rejected(f"text of {len(value)} characters")
    if "\x00" in value:
        raise Rejected("NUL in text")


def money(value: Any) -> None:
    if type(value) is not int:
        raise Rejected(f"expected int, got {_kind(value)}")
    if abs(value) > MAX_MONEY:
        raise Rejected(f"{value} is out of range")


def order_id(value: Any) -> None:
    if type(value) is not int:
        raise Rejected(f"expected int, got {_kind(value)}")
    if value not in ORDER_IDS:
        raise Rejected(f"order id {value} is out of range")


def utc(value: Any) -> datetime:
    """A timestamp in UTC, naive; :class:`Rejected` if it is none or leaves years 1-9999."""
    if type(value) is not str:
        raise Rejected(f"expected timestamp, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"not a timestamp: {value[:40]!r}") from None
    offset = parsed.utcoffset()
    if offset is None:
        return parsed
    try:
        return parsed.replace(tzinfo=None) - offset
    except OverflowError:
        raise Rejected(f"{value!r} is outside years 1 to 9999 in UTC") from None


def timestamp(value: Any) -> None:
    utc(value)


def order_type(value: Any) -> None:
    if value != "order" or type(value) is not str:
        raise Rejected(f"object_type {value!r} is not 'order'")


# A schema: a dict of required fields (extra ones tolerated), a one-element list (an
# array of that), or a check that raises Rejected.
Schema = dict[str, Any] | list[Any] | Callable[[Any], None]

ORDER: dict[str, Any] = {
    "object_id": order_id,
    "object_type": order_type,
    "sent_dttm": timestamp,
    "payload": {
        "restaurant": {"id": text},
        "date": timestamp,
        "user": {"id": text},
        "order_items": [{"id": text, "name": text, "price": money, "quantity": money}],
        "bonus_payment": money,
        "cost": money,
        "payment": money,
        "bonus_grant": money,
        "statuses": [{"status": text, "dttm": timestamp}],
        "final_status": text,
        "update_ts": timestamp,
    },
}
USER: Schema = {"_id": text, "name": text, "login": text, "update_ts_utc": timestamp}
RESTAURANT: Schema = {
    "_id": text,
    "name": text,
    "menu": [{"_id": text, "name": text, "price": money, "category": text}],
    "update_ts_utc": timestamp,
}


def check(value: Any, schema: Schema) -> None:
    """Raise :class:`Rejected` naming the first path where ``value`` breaks ``schema``."""
    try:
        _check(value, schema)
    except _Broken as broken:
        raise Rejected(f"{broken.path()}: {broken.reason}") from None


class _Broken(Exception):
    """Where (innermost first) and why a value breaks its schema: the path is put
    together only on failure, as the bench checks big backlogs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.keys: list[str | int] = []

    def path(self) -> str:
        return "$" + "".join(
            f"[{key}]" if isinstance(key, int) else f".{key}" for key in reversed(self.keys)
        )


def _check(value: Any, schema: Schema) -> None:
    if isinstance(schema, dict):
        if type(value) is not dict:
            raise _Broken(f"expected object, got {_kind(value)}")
        for name, inner in schema.items():
            if name not in value:
                raise _Broken(f"{name!r} missing")
            try:
                _check(value[name], inner)
            except _Broken as broken:
                broken.keys.append(name)
                raise
    elif isinstance(schema, list):
        if type(value) is not list:
            raise _Broken(f"expected array, got {_kind(value)}")
        for index, item in enumerate(value):
            try:
                _check(item, schema[0])
            except _Broken as broken:
                broken.keys.append(index)
                raise
    else:
        try:
            schema(value)
        except Rejected as exc:
            raise _Broken(str(exc)) from None


def order_document(raw: bytes | None) -> dict[str, Any]:
    """The decoded order of a message valid by §1, §5 and §7 (dictionaries aside)."""
    document, strings = _decode(raw)
    check(document, ORDER)
    if any("\x00" in string for string in strings):
        raise Rejected("NUL in the message")
    return document  # type: ignore[no-any-return]


def user_document(raw: bytes | None) -> dict[str, Any]:
    document = decode(raw)
    check(document, USER)
    return document  # type: ignore[no-any-return]


def restaurant_document(raw: bytes | None) -> dict[str, Any]:
    document = decode(raw)
    check(document, RESTAURANT)
    return document  # type: ignore[no-any-return]


def problem(read: Callable[[bytes | None], object], raw: bytes | None) -> str | None:
    """Why ``read`` rejects ``raw``, or None when it is valid."""
    try:
        read(raw)
    except Rejected as exc:
        return str(exc)
    return None


# --- the dictionaries -----------------------------------------------------------------


class Dictionaries:
    """The Redis key space as raw entries; ``users=False`` takes every user as known
    (for callers that only pass restaurants)."""

    def __init__(self, entries: Mapping[str, bytes], users: bool = True) -> None:
        self._entries = entries
        self._check_users = users
        self._read: dict[tuple[str, str], dict[str, Any] | Rejected] = {}

    @classmethod
    def of(
        cls, restaurants: Iterable[dict[str, Any]], users: Iterable[dict[str, Any]] | None = None
    ) -> Dictionaries:
        documents = [*restaurants, *(users or [])]
        entries = {doc["_id"]: json.dumps(doc).encode("utf-8") for doc in documents}
        return cls(entries, users=users is not None)

    def _entry(
        self, key: str, kind: str, read: Callable[[bytes | None], dict[str, Any]]
    ) -> dict[str, Any]:
        if (kind, key) not in self._read:
            raw = self._entries.get(key)
            try:
                if raw is None:
                    raise Rejected(f"unknown {kind} {key[:40]!r}")
                self._read[kind, key] = read(raw)
            except Rejected as exc:
                self._read[kind, key] = exc
        entry = self._read[kind, key]
        if isinstance(entry, Rejected):
            raise entry
        return entry

    def categories(self, order: dict[str, Any]) -> list[str]:
        """The category of each item of a valid order; :class:`Rejected` when the order
        names something the dictionaries lack or cannot read."""
        payload = order["payload"]
        if self._check_users:
            self._entry(payload["user"]["id"], "user", user_document)
        restaurant = self._entry(payload["restaurant"]["id"], "restaurant", restaurant_document)
        categories = []
        for item in payload["order_items"]:
            # The menu item whose _id equals the order item's id: the first, if several.
            found = next((m for m in restaurant["menu"] if m["_id"] == item["id"]), None)
            if found is None:
                raise Rejected(f"unknown menu item {item['id'][:40]!r}")
            categories.append(found["category"])
        return categories


# --- versions and marts ---------------------------------------------------------------


def rank(status: str) -> int:
    return LIFECYCLE.index(status) + 1 if status in LIFECYCLE else 0


def is_newer(message: Accepted, than: Accepted) -> bool:
    """Whether ``message`` is a newer version of its order than ``than`` (§7)."""
    mine, theirs = message.document["payload"], than.document["payload"]
    first = (utc(mine["update_ts"]), rank(mine["final_status"]))
    second = (utc(theirs["update_ts"]), rank(theirs["final_status"]))
    if first != second:
        return first > second
    # Only ties need the digest: computed lazily, as the backlogs the bench checks are big.
    return _md5(message.raw) > _md5(than.raw)


def _md5(raw: bytes) -> bytes:
    return hashlib.md5(raw, usedforsecurity=False).digest()


@frozen
class Accepted:
    """A valid order message: its bytes, its document and its items' categories."""

    raw: bytes
    document: dict[str, Any]
    categories: list[str]


@frozen
class Verdict:
    """What the warehouse must make of a feed: the messages STG passes on, in order of
    arrival, and the dead letters, with why."""

    accepted: list[Accepted]
    rejected: list[tuple[bytes | None, str]]

    def newest(self) -> dict[int, Accepted]:
        """Per order id, the winning version."""
        newest: dict[int, Accepted] = {}
        for message in self.accepted:
            order = message.document["object_id"]
            seen = newest.get(order)
            if seen is None or is_newer(message, seen):
                newest[order] = message
        return newest

    def marts(self) -> tuple[Counts, Counts]:
        """(user key, product key) -> count and (user key, category key) -> count."""
        products: Counts = Counter()
        categories: Counts = Counter()
        for message in self.newest().values():
            payload = message.document["payload"]
            if payload["final_status"] != "CLOSED":
                continue
            user_key = hash_key(payload["user"]["id"])
            # Distinct hub keys: ids or names equal once trimmed and upper-cased are one.
            for product in {hash_key(item["id"]) for item in payload["order_items"]}:
                products[(user_key, product)] += 1
            for category in {hash_key(name) for name in message.categories}:
                categories[(user_key, category)] += 1
        return products, categories


def judge(messages: Iterable[bytes | None], dictionaries: Dictionaries) -> Verdict:
    accepted: list[Accepted] = []
    rejected: list[tuple[bytes | None, str]] = []
    for raw in messages:
        try:
            document = order_document(raw)
            categories = dictionaries.categories(document)
        except Rejected as exc:
            rejected.append((raw, str(exc)))
            continue
        assert raw is not None  # order_document rejects None
        accepted.append(Accepted(raw, document, categories))
    return Verdict(accepted, rejected)


def newest_versions(messages: list[bytes]) -> dict[int, dict[str, Any]]:
    """Per order id, the newest version (valid orders only, dictionaries aside)."""
    verdict = judge(messages, _EVERYTHING_KNOWN)
    return {order: message.document for order, message in verdict.newest().items()}


def expected_marts(
    messages: list[bytes],
    restaurants: list[dict[str, Any]],
    users: list[dict[str, Any]] | None = None,
) -> tuple[Counts, Counts]:
    """(user key, product key) -> count and (user key, category key) -> count; every
    user is taken as known unless ``users`` are given."""
    return judge(messages, Dictionaries.of(restaurants, users)).marts()


class _EverythingKnown(Dictionaries):
    """Dictionaries that know every reference (no category needed)."""

    def __init__(self) -> None:
        super().__init__({})

    def categories(self, order: dict[str, Any]) -> list[str]:
        return []


_EVERYTHING_KNOWN = _EverythingKnown()
