"""Hostile variants of valid orders and dictionary entries, for fuzzing.

The mutations are plain functions of a :class:`Chooser`: a seeded :class:`random.Random`
(the end-to-end test draws thousands of messages from one seed, the same every run) or
:class:`Drawn`, which draws every choice through Hypothesis, so that the strategies at the
bottom shrink a failure to the simplest mutation and value.

A mutated message is bytes, because much of what is hostile cannot be a Python object:
nesting deeper than ``json.dumps`` recurses, duplicate keys, invalid UTF-8, lone
surrogates written as UTF-8, raw NULs, truncation. Whether the result is valid is not
decided here but by the oracle (:mod:`dwh_workers.oracle`): many mutations keep a
message valid on purpose (edge values that must be stored exactly).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from attrs import frozen
from hypothesis import strategies as st

T = TypeVar("T")
Path = tuple[str | int, ...]

# --- hostile values -------------------------------------------------------------------

EDGE_INTEGERS: tuple[int, ...] = (
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**40,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
    10**14 - 1,
    -(10**14 - 1),
    10**14,
    -(10**14),
    10**20,
    -(10**20),
)
TYPE_SWAPS: tuple[Any, ...] = (
    "175",
    175.0,
    1.5,
    -0.0,
    1e20,
    True,
    False,
    None,
    [],
    {},
    [175],
    {"value": 175},
    float("nan"),
    float("inf"),
)
# For a protected path (an entry's id): any type but a string.
NOT_STRINGS: tuple[Any, ...] = tuple(v for v in TYPE_SWAPS if not isinstance(v, str))
EDGE_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "CLOSED",
    "closed",
    "order",
    "x" * 500,
    "Щ" * 500,
    "😀" * 500,
    "x" * 501,
    "😀" * 501,
    "x" * 10_240,
    "К" * 10_240,
    "😀𝔘𐍈\U0010ffff",  # astral
    "e\u0301\u0302 Пи\u0306цца",  # combining marks
    "Z\u0351\u0352\u0353\u0354\u0355",
    "\u202eRTL override\u202c",
    "مرحبا بالعالم",
    "שָׁלוֹם",
    "a\x00b",  # NUL: written as the escape \u0000
    "\x00",
    "\\u0000",  # the six characters \ u 0 0 0 0, no NUL at all
    "\\\x00",  # a backslash, then a NUL
    "a\ud800b",  # lone surrogates: escaped when ASCII-only, else encoded (invalid UTF-8)
    "\udfff",
    "\ud83d\ude00",  # a surrogate *pair* as two code points: still two lone surrogates
    "\x01\x1f\x7f",
    "\u2028\u2029",
    "\ufeffBOM",
    "'\";-- DROP TABLE",
    "  Пицца  ",
    "ß",
)
EDGE_TIMESTAMPS: tuple[str, ...] = (
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "0001-01-01 00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31 23:59:59-01:00",  # after year 9999 in UTC
    "0001-01-01 00:00:00-01:00",
    "9999-12-31 23:59:59+01:00",
    "9999-12-31 23:59:59.999999",
    "2023-04-01 20:45:43.123456",
    "2023-04-01 20:45:43.1234567",
    "2023-04-01 20:45:43.5+03:00",
    "2023-04-01T20:45:43Z",
    "2023-04-01",
    "2023-02-29 00:00:00",
    "2023-04-01 24:00:00",
    "10000-01-01 00:00:00",
    "2023-04-01 20:45:43+24:00",
    "yesterday",
)


@frozen
class Raw:
    """JSON text spliced into a document as it is: what ``json.dumps`` cannot write."""

    text: str


@frozen
class Pairs:
    """A JSON object written as these pairs, in order, duplicate keys and all."""

    pairs: tuple[tuple[str, Any], ...]


def nested(depth: int, kind: str = "[") -> Raw:
    if kind == "[":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


# Shallow, far past orjson's 255 levels of output (but within what a parser reads), and
# past every parser's limit. Depths near the parsers' limits (about 1,000) are left out:
# where exactly a decoder stops is not the contract's business.
DEEP_VALUES: tuple[Raw, ...] = (nested(3), nested(300), nested(300, "{"), nested(3000))

# --- writing JSON ---------------------------------------------------------------------


def dumps(document: Any, ascii_only: bool = False) -> bytes:
    """JSON bytes of a document that may hold :class:`Raw` and :class:`Pairs`. Non-ASCII
    is escaped or not, as the real feed mixes both; a lone surrogate then comes out as
    its escape or as (invalid) UTF-8 bytes."""
    return _text(document, ascii_only).encode("utf-8", "surrogatepass")


def _text(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Pairs(tuple(value.items()))
    if isinstance(value, Pairs):
        members = (
            f"{_text(key, ascii_only)}:{_text(item, ascii_only)}" for key, item in value.pairs
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# --- choosing -------------------------------------------------------------------------


class Chooser(Protocol):
    """What the mutations need of a source of choices: :class:`random.Random` has it."""

    def choice(self, seq: Sequence[T]) -> T: ...

    def randint(self, a: int, b: int) -> int: ...


class Drawn:
    """A :class:`Chooser` drawing through Hypothesis (so failures shrink)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def choice(self, seq: Sequence[T]) -> T:
        return self._draw(st.sampled_from(seq))

    def randint(self, a: int, b: int) -> int:
        return self._draw(st.integers(a, b))


# --- paths in a document --------------------------------------------------------------


def paths(document: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value below the root."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(document, dict):
        children = list(document.items())
    elif isinstance(document, list):
        children = list(enumerate(document))
    found: list[Path] = []
    for key, value in children:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def containers(document: Any, kind: type) -> list[Path]:
    """Paths to the objects (or arrays) of a document, the root included."""
    return [p for p in [(), *paths(document)] if isinstance(at(document, p), kind)]


def at(document: Any, path: Path) -> Any:
    for key in path:
        document = document[key]
    return document


def _parent(document: Any, path: Path) -> Any:
    return at(document, path[:-1])


# --- mutations of a document ----------------------------------------------------------

# A mutation: (chooser, a copy of the document, the strings worth referring to, the
# paths it must not give a valid new string) -> the document, changed in place or new.
Mutation = Callable[[Chooser, Any, Sequence[str], frozenset[Path]], Any]


def hostile_value(chooser: Chooser, references: Sequence[str]) -> Any:
    # A copy: the pools' lists and objects must not be shared, or a later mutation would
    # change the pool (or put a list inside itself).
    return copy.deepcopy(_pick_hostile(chooser, references))


def _pick_hostile(chooser: Chooser, references: Sequence[str]) -> Any:
    kind = chooser.choice(("integer", "type", "string", "timestamp", "deep", "reference"))
    if kind == "reference" and references:
        return chooser.choice(references)
    pools: dict[str, Sequence[Any]] = {
        "integer": EDGE_INTEGERS,
        "type": TYPE_SWAPS,
        "string": EDGE_STRINGS,
        "timestamp": EDGE_TIMESTAMPS,
        "deep": DEEP_VALUES,
    }
    return chooser.choice(pools.get(kind, EDGE_STRINGS))


def _settable(document: Any, protected: frozenset[Path]) -> list[Path]:
    return [p for p in paths(document) if p not in protected]


def replace_value(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    """A value anywhere replaced by a hostile one: type swaps, edge numbers, strings and
    timestamps, deep nesting, a reference to another dictionary entry."""
    path = chooser.choice(paths(document))
    value = hostile_value(chooser, references)
    if path in protected and isinstance(value, str):
        value = copy.deepcopy(chooser.choice(NOT_STRINGS))
    _parent(document, path)[path[-1]] = value
    return document


def delete_field(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    """A field missing, or an array element gone."""
    path = chooser.choice(paths(document))
    del _parent(document, path)[path[-1]]
    return document


EXTRA_NAMES = ("extra", "_id", "id", "x" * 600, "ключ", "\x00key", "\ud800", "")


def add_field(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    """An unknown field in some object, or an element more in some array."""
    kind = chooser.choice((dict, list))
    places = containers(document, kind) or containers(document, dict)
    path = chooser.choice(places)
    target = at(document, path)
    value = hostile_value(chooser, references)
    if isinstance(target, list):
        target.insert(chooser.randint(0, len(target)), value)
        return document
    name = chooser.choice(EXTRA_NAMES)
    # A protected field (an entry's _id) never becomes another valid id, even after an
    # earlier mutation deleted it: only a value that is not a string may stand there.
    if (*path, name) in protected and isinstance(value, str):
        value = copy.deepcopy(chooser.choice(NOT_STRINGS))
    target[name] = value
    return document


def duplicate_key(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    """A key written twice in one object, the hostile value first or last (the last
    counts)."""
    candidates = [p for p in containers(document, dict) if at(document, p)]
    path = chooser.choice(candidates)
    target = at(document, path)
    name = chooser.choice(sorted(target))
    value = hostile_value(chooser, references)
    if (*path, name) in protected:
        value = copy.deepcopy(chooser.choice(NOT_STRINGS))
    pairs = list(target.items())
    pairs.insert(chooser.randint(0, len(pairs)), (name, value))
    replacement = Pairs(tuple(pairs))
    if not path:
        return replacement
    _parent(document, path)[path[-1]] = replacement
    return document


def set_edge_value(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    """A value of the same kind at its edge: a number near a bound, a timestamp at the
    ends of the calendar, a string at its length limit or full of odd Unicode."""
    path = chooser.choice(_settable(document, protected) or paths(document))
    current = at(document, path)
    pool: Sequence[Any]
    if type(current) is int:
        pool = EDGE_INTEGERS
    elif isinstance(current, str) and _looks_like_timestamp(current):
        pool = EDGE_TIMESTAMPS
    elif isinstance(current, str):
        pool = [*EDGE_STRINGS, *references]
    else:
        pool = DEEP_VALUES
    value = copy.deepcopy(chooser.choice(pool))
    if path in protected and isinstance(value, str):
        value = copy.deepcopy(chooser.choice(NOT_STRINGS))
    _parent(document, path)[path[-1]] = value
    return document


def _looks_like_timestamp(value: str) -> bool:
    return len(value) >= 10 and value[4:5] == "-" and value[:4].isdigit()


def other_object_type(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    document["object_type"] = chooser.choice(("payment", "ORDER", "order ", "", None, 1))
    return document


def not_an_object(
    chooser: Chooser, document: Any, references: Sequence[str], protected: frozenset[Path]
) -> Any:
    return chooser.choice(([], [document], "order", 42, None, True, Raw("")))


DOCUMENT_MUTATIONS: tuple[Mutation, ...] = (
    replace_value,
    delete_field,
    add_field,
    duplicate_key,
    set_edge_value,
    not_an_object,
)
ORDER_MUTATIONS: tuple[Mutation, ...] = (*DOCUMENT_MUTATIONS, other_object_type)

# --- mutations of the bytes -----------------------------------------------------------

INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc3\x28", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80")


def mangle_bytes(chooser: Chooser, data: bytes) -> bytes:
    """Bytes that are no longer UTF-8 JSON (or, for white space, still are)."""
    kind = chooser.choice(
        ("utf8", "nul", "truncate", "bom", "trailing", "whitespace", "empty", "garbage")
    )
    position = chooser.randint(0, max(0, len(data) - 1))
    if kind == "utf8":
        return data[:position] + chooser.choice(INVALID_UTF8) + data[position:]
    if kind == "nul":
        return data[:position] + b"\x00" + data[position:]
    if kind == "truncate":
        return data[:position]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "trailing":
        return data + chooser.choice((b"x", b"{}", b",", b"\x00"))
    if kind == "whitespace":
        return b" \n\t" + data + b"\r\n "
    if kind == "empty":
        return b""
    return chooser.choice((b"{not json", b"null", b"[]", b'"order"', b"\xff\xfe{}", b"{}"))


# --- putting it together --------------------------------------------------------------


def mutate(
    chooser: Chooser,
    document: dict[str, Any],
    mutations: Sequence[Mutation],
    references: Sequence[str] = (),
    protected: frozenset[Path] = frozenset(),
) -> bytes:
    """One to three mutations of the document, then written out; sometimes the bytes
    are mangled instead."""
    if chooser.randint(0, 7) == 0:
        return mangle_bytes(chooser, dumps(document, ascii_only=chooser.choice((False, True))))
    changed: Any = copy.deepcopy(document)
    for _ in range(chooser.randint(1, 3)):
        if not isinstance(changed, dict) or not changed:
            break
        changed = chooser.choice(mutations)(chooser, changed, references, protected)
    return dumps(changed, ascii_only=chooser.choice((False, True)))


def mutate_order(
    chooser: Chooser, document: dict[str, Any], references: Sequence[str] = ()
) -> bytes:
    """A hostile version of an order message; ``references``: dictionary ids and menu
    item ids, so that a mutation may point an order at another (or a broken) entry."""
    return mutate(chooser, document, ORDER_MUTATIONS, references)


def extend_order(
    chooser: Chooser, document: dict[str, Any], references: Sequence[str] = ()
) -> bytes:
    """The order with one hostile extra field (or array element): mostly still valid,
    so that odd content (deep nesting, huge numbers, odd Unicode) reaches every layer."""
    changed = add_field(chooser, copy.deepcopy(document), references, frozenset())
    return dumps(changed, ascii_only=chooser.choice((False, True)))


# The id of a dictionary entry is its Redis key: a mutation may break it (a wrong type,
# gone) but never turn it into another valid id, which would be an entry stored under a
# key that is not its id, a case the contract does not define.
ENTRY_ID: frozenset[Path] = frozenset({("_id",)})


def mutate_entry(
    chooser: Chooser, document: dict[str, Any], references: Sequence[str] = ()
) -> bytes:
    """A hostile version of a dictionary entry (a user, or a restaurant with its menu)."""
    return mutate(chooser, document, DOCUMENT_MUTATIONS, references, ENTRY_ID)


def tied_version(chooser: Chooser, document: dict[str, Any]) -> dict[str, Any]:
    """Another version of the order with the same ``update_ts``: another final status,
    other items, or another amount, so that only the tie-break can tell them apart."""
    tied = copy.deepcopy(document)
    payload = tied["payload"]
    change = chooser.choice(("status", "items", "cost"))
    if change == "status" or not payload["order_items"]:
        payload["final_status"] = chooser.choice(
            ("OPEN", "COOKING", "DELIVERING", "CLOSED", "CANCELLED", "REFUNDED")
        )
    elif change == "items":
        payload["order_items"] = payload["order_items"][: chooser.randint(0, 1)]
    else:
        payload["cost"] = chooser.randint(0, 10_000)
    return tied


# --- Hypothesis strategies ------------------------------------------------------------

OrderMutator = Callable[[Chooser, dict[str, Any], Sequence[str]], bytes]


@st.composite
def mutated_orders(
    draw: st.DrawFn, documents: Sequence[dict[str, Any]], references: Sequence[str] = ()
) -> bytes:
    """A mutation of one of ``documents`` (valid orders): any, or one extra field."""
    document = draw(st.sampled_from(documents))
    mutations: tuple[OrderMutator, ...] = (mutate_order, extend_order)
    mutation = draw(st.sampled_from(mutations))
    return mutation(Drawn(draw), document, references)


@st.composite
def mutated_entries(
    draw: st.DrawFn, documents: Sequence[dict[str, Any]], references: Sequence[str] = ()
) -> bytes:
    """A mutation of one of ``documents`` (valid users or restaurants)."""
    document = draw(st.sampled_from(documents))
    return mutate_entry(Drawn(draw), document, references)


def order_messages(
    documents: Sequence[dict[str, Any]], references: Sequence[str] = ()
) -> st.SearchStrategy[bytes]:
    """Valid orders as the feed writes them, and mutations of them."""
    valid = st.builds(dumps, st.sampled_from(documents), st.booleans())
    return st.one_of(valid, mutated_orders(documents, references))


def entry_messages(
    documents: Sequence[dict[str, Any]], references: Sequence[str] = ()
) -> st.SearchStrategy[bytes]:
    valid = st.builds(dumps, st.sampled_from(documents), st.booleans())
    return st.one_of(valid, mutated_entries(documents, references))
