"""Bytes to domain objects and back: the one place where the wire format is read.

Parsing is strict: a value of the wrong JSON type is rejected, never coerced (``"175"``
is not an int, ``1.5`` is not an int, ``true`` is not an int), missing fields are
rejected, and the error names the path (``$.payload.order_items[0].price: expected int,
got string``). Unknown extra fields are tolerated, since the feeds may grow.

Every value must also fit where the warehouse stores it (docs/CONTRACT.md §7), so that
nothing is wrapped, truncated or refused later by PostgreSQL: integers are at most
:data:`MAX_INTEGER` in magnitude (money is stored as ``numeric(19,5)``), an order id
fits PostgreSQL's ``int``, text is at most :data:`MAX_TEXT` characters (a business key
must fit a btree index entry) and holds no NUL, and a timestamp with a time zone must
stay within years 1 to 9999 in UTC. A dictionary entry is parsed by the same rules, so
a bad one is rejected by STG, where a re-drive can help once it is fixed.

Two converters share the strict hooks: a fast one for the common, valid case, and one
with detailed validation that runs only on failure, to name every bad path.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import orjson
from cattrs import Converter, transform_error
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, override

from dwh_core.messages import shorten
from dwh_core.orders import (
    EnrichedOrder,
    MenuItem,
    Order,
    OrderFacts,
    OrderId,
    Restaurant,
    User,
)

T = TypeVar("T")

ORDER_OBJECT_TYPE = "order"
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# numeric(19,5) keeps 14 digits before the point.
MAX_INTEGER = 10**14 - 1
# PostgreSQL ``int``.
ORDER_ID_RANGE = (-(2**31), 2**31 - 1)
# 500 characters are at most 2,000 bytes of UTF-8: under the 2,704 bytes of a btree entry.
MAX_TEXT = 500


class InvalidMessage(ValueError):
    """The bytes are not a valid message of the expected kind; ``str()`` is the reason."""


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "bool", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected int, got {_json_type(value)}")
    return value


def _integer(value: Any, _: Any) -> int:
    number = _int(value)
    if not -MAX_INTEGER <= number <= MAX_INTEGER:
        raise ValueError(f"{number} is out of range (at most {MAX_INTEGER} in magnitude)")
    return number


def _order_id(value: Any, _: Any) -> int:
    number, (low, high) = _int(value), ORDER_ID_RANGE
    if not low <= number <= high:
        raise ValueError(f"order id {number} is out of range ({low} to {high})")
    return number


def _text(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected string, got {_json_type(value)}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"text of {len(value)} characters, more than {MAX_TEXT}: {shorten(value)}")
    if "\x00" in value:
        raise ValueError(f"a NUL character is not allowed in text: {shorten(value)}")
    return value


def _timestamp(value: Any, _: Any) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected timestamp string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except ValueError:
        raise ValueError(
            f"expected timestamp 'YYYY-MM-DD HH:MM:SS', got {shorten(value)}"
        ) from None
    except OverflowError:
        raise ValueError(f"timestamp {shorten(value)} is outside years 1 to 9999 in UTC") from None
    return parsed


def _uuid(value: Any, _: Any) -> uuid.UUID:
    if type(value) is not str:
        raise TypeError(f"expected uuid string, got {_json_type(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"expected uuid, got {shorten(value)}") from None


def _make_converter(detailed: bool) -> Converter:
    converter = Converter(detailed_validation=detailed)
    converter.register_structure_hook(int, _integer)
    converter.register_structure_hook(OrderId, _order_id)
    converter.register_structure_hook(str, _text)
    converter.register_structure_hook(datetime, _timestamp)
    converter.register_structure_hook(uuid.UUID, _uuid)
    converter.register_unstructure_hook(datetime, lambda value: value.isoformat(sep=" "))

    def lists(type_: Any) -> Callable[[Any, Any], Any]:
        inner = list_structure_factory(type_, converter)

        def structure(value: Any, target: Any) -> Any:
            if type(value) is not list:
                raise TypeError(f"expected array, got {_json_type(value)}")
            return inner(value, target)

        return structure

    def objects(type_: Any) -> Callable[[Any, Any], Any]:
        renames = {"id": override(rename="_id")} if type_ in (User, Restaurant, MenuItem) else {}
        inner = make_dict_structure_fn(type_, converter, **renames)  # type: ignore[arg-type]

        def structure(value: Any, target: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"expected object, got {_json_type(value)}")
            if renames and "_id" not in value:
                raise ValueError("required field '_id' missing")
            return inner(value, target)

        return structure

    converter.register_structure_hook_factory(is_sequence, lists)
    converter.register_structure_hook_factory(attrs.has, objects)
    return converter


_fast = _make_converter(detailed=False)
_detailed = _make_converter(detailed=True)


def _describe(exc: BaseException, _: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc)


def _reason(data: Any, cls: type[Any]) -> str:
    try:
        _detailed.structure(data, cls)
    except Exception as exc:
        messages = transform_error(exc, path="$", format_exception=_describe)
        return "; ".join(_path_first(message) for message in messages)
    return "invalid message"


def _path_first(message: str) -> str:
    text, _, path = message.rpartition(" @ ")
    return f"{path}: {text}" if text else message


def structure(data: Any, cls: type[T]) -> T:
    """Build ``cls`` from decoded JSON, strictly; raise :class:`InvalidMessage` with the path."""
    try:
        return _fast.structure(data, cls)
    except Exception:
        raise InvalidMessage(_reason(data, cls)) from None


def decode_json(data: bytes) -> Any:
    """Decode UTF-8 JSON bytes; raise :class:`InvalidMessage` when they are not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(_not_json(data, exc)) from None


def _not_json(data: bytes, error: orjson.JSONDecodeError) -> str:
    # orjson reports every invalid UTF-8 sequence as "surrogates not allowed".
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: byte {exc.start} ({data[exc.start : exc.start + 1]!r}) {exc.reason}"
    # orjson's own text is short; it quotes no value.
    return f"not JSON: {error}"


def _decode_object(data: bytes) -> dict[str, Any]:
    document = decode_json(data)
    if type(document) is not dict:
        raise InvalidMessage(f"$: expected object, got {_json_type(document)}")
    return document


def _parse_object(data: bytes, cls: type[T]) -> T:
    return structure(_decode_object(data), cls)


def parse_order(data: bytes) -> Order:
    """An order message of docs/CONTRACT.md §1.1; anything but ``object_type == "order"`` is
    invalid."""
    document = _decode_object(data)
    # PostgreSQL stores no NUL in text, and STG stores the message text as it came, every
    # field and every duplicate key included. JSON text holds a NUL only as the escape
    # \u0000, that is, after a backslash that is not itself escaped.
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        raise InvalidMessage("$: a NUL character (\\u0000) is not allowed in text")
    object_type = document.get("object_type", ORDER_OBJECT_TYPE)
    if object_type != ORDER_OBJECT_TYPE:
        raise InvalidMessage(f"$.object_type: expected 'order', got {shorten(object_type)}")
    return structure(document, Order)


def parse_user(data: bytes) -> User:
    return _parse_object(data, User)


def parse_restaurant(data: bytes) -> Restaurant:
    return _parse_object(data, Restaurant)


def parse_enriched_order(data: bytes) -> EnrichedOrder:
    return _parse_object(data, EnrichedOrder)


def parse_order_facts(data: bytes) -> OrderFacts:
    return _parse_object(data, OrderFacts)


def unstructure(value: object) -> Any:
    """Domain object to data for :func:`encode_json`: timestamps as ``YYYY-MM-DD
    HH:MM:SS`` text; uuids stay uuids, which orjson writes in their canonical text form
    far faster than a Python call per uuid would."""
    return _fast.unstructure(value)


def encode_json(data: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept as is."""
    return orjson.dumps(data)


def encode(value: object) -> bytes:
    """A domain object as the JSON of its message."""
    return encode_json(unstructure(value))
