"""Bytes to domain objects and back: the one place where the wire format is read.

Parsing is strict: a value of the wrong JSON type is rejected, never coerced (``"175"``
is not an int, ``1.5`` is not an int, ``true`` is not an int), missing fields are
rejected, and the error names the path (``$.payload.order_items[0].price: expected int,
got string``). Unknown extra fields are tolerated, since the feeds may grow.

Two converters share the strict hooks: a fast one for the common, valid case, and one
with detailed validation that runs only on failure, to name every bad path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import orjson
from cattrs import Converter, transform_error
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, override

from dwh_core.orders import (
    EnrichedOrder,
    MenuItem,
    Order,
    OrderFacts,
    Restaurant,
    User,
)

T = TypeVar("T")

ORDER_OBJECT_TYPE = "order"


class InvalidMessage(ValueError):
    """The bytes are not a valid message of the expected kind; ``str()`` is the reason."""


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "bool", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _expect(kind: type, label: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {label}, got {_json_type(value)}")
        return value

    return structure


def _timestamp(value: Any, _: Any) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected timestamp string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected timestamp 'YYYY-MM-DD HH:MM:SS', got {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _uuid(value: Any, _: Any) -> uuid.UUID:
    if type(value) is not str:
        raise TypeError(f"expected uuid string, got {_json_type(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"expected uuid, got {value!r}") from None


def _make_converter(detailed: bool) -> Converter:
    converter = Converter(detailed_validation=detailed)
    converter.register_structure_hook(int, _expect(int, "int"))
    converter.register_structure_hook(str, _expect(str, "string"))
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
        raise InvalidMessage(f"not JSON: {exc}") from None


def _decode_object(data: bytes) -> dict[str, Any]:
    document = decode_json(data)
    if type(document) is not dict:
        raise InvalidMessage(f"$: expected object, got {_json_type(document)}")
    return document


def _parse_object(data: bytes, cls: type[T]) -> T:
    return structure(_decode_object(data), cls)


def parse_order_document(data: bytes) -> tuple[Order, dict[str, Any]]:
    """An order message of CONTRACT.md §1.1 and its decoded JSON; anything but
    ``object_type == "order"`` is invalid."""
    # JSON text cannot hold a raw NUL, only its escape; PostgreSQL stores neither.
    if b"\\u0000" in data:
        raise InvalidMessage("$: a NUL character (\\u0000) is not allowed in text")
    document = _decode_object(data)
    object_type = document.get("object_type", ORDER_OBJECT_TYPE)
    if object_type != ORDER_OBJECT_TYPE:
        raise InvalidMessage(f"$.object_type: expected 'order', got {object_type!r}")
    return structure(document, Order), document


def parse_order(data: bytes) -> Order:
    return parse_order_document(data)[0]


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
