"""The sample dictionaries: users and restaurants with menus generated from the
catalogue, as the Redis values of docs/CONTRACT.md §1.2; their Redis entries; and the loading
and strict checking of a dictionaries file.

Generation is deterministic for a seed: it draws from its own ``random.Random(seed)``,
never from the global one.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen

from dwh_core.parsing import InvalidMessage, encode_json, parse_restaurant, parse_user
from dwh_workers.sample.catalogue import (
    CATALOGUE,
    FEMALE_NAMES,
    KINDS,
    MALE_NAMES,
    PATRONYMICS,
    SURNAMES,
    RestaurantKind,
)

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya",
    }
)  # fmt: skip

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@frozen
class Dictionaries:
    """Users and restaurants as the Redis values of docs/CONTRACT.md §1.2 (plain JSON data)."""

    users: list[dict[str, Any]]
    restaurants: list[dict[str, Any]]


def _feminine(surname: str) -> str:
    if surname.endswith(("ский", "ой")):
        return surname[:-2] + "ая"
    if surname.endswith(("ов", "ев", "ёв", "ин", "ын")):
        return surname + "а"
    return surname  # Черных, Шевченко, Ковальчук: the same for both


def _translit(text: str) -> str:
    return text.lower().translate(_TRANSLIT)


class _ObjectIds:
    """MongoDB-like ObjectIds: creation time, a per-collection random part, a counter."""

    def __init__(self, rng: random.Random, created: datetime) -> None:
        self.created = created
        self._prefix = f"{int(created.replace(tzinfo=UTC).timestamp()):08x}"
        self._prefix += f"{rng.getrandbits(40):010x}"
        self._counter = rng.getrandbits(24)

    def next(self) -> str:
        self._counter = (self._counter + 1) % (1 << 24)
        return f"{self._prefix}{self._counter:06x}"


def _stamp(rng: random.Random, created: datetime) -> str:
    return (created + timedelta(seconds=rng.randrange(3 * 86400))).strftime(TIMESTAMP_FORMAT)


def _users(rng: random.Random, count: int) -> list[dict[str, Any]]:
    ids = _ObjectIds(rng, datetime(2022, 4, 28, 12, 0, 14))
    logins: set[str] = set()
    users = []
    for _ in range(count):
        surname = rng.choice(SURNAMES)
        patronymic = rng.choice(PATRONYMICS)
        if rng.random() < 0.5:
            parts = (surname, rng.choice(MALE_NAMES), patronymic[0])
        else:
            parts = (_feminine(surname), rng.choice(FEMALE_NAMES), patronymic[1])
        base = f"{_translit(parts[0])}_{_translit(parts[1][0])}{_translit(parts[2][0])}"
        login, n = base, 1
        while login in logins:
            n += 1
            login = f"{base}{n}"
        logins.add(login)
        users.append(
            {
                "_id": ids.next(),
                "name": " ".join(parts),
                "login": login,
                "update_ts_utc": _stamp(rng, ids.created),
            }
        )
    return users


def _menu(rng: random.Random, kind: RestaurantKind, ids: _ObjectIds) -> list[dict[str, Any]]:
    """8-25 dishes: one of each of the kind's categories first, the rest at random."""
    pool = [(category, dish) for category in kind.categories for dish in CATALOGUE[category]]
    firsts = [(category, rng.choice(CATALOGUE[category])) for category in kind.categories]
    rest = [entry for entry in pool if entry not in firsts]
    size = rng.randint(8, 25)
    chosen = firsts[:size] + rng.sample(rest, max(0, size - len(firsts)))
    return [
        {
            "_id": ids.next(),
            "name": name,
            "price": max(10, price + rng.choice((-20, -10, -5, 0, 0, 0, 10, 20, 30))),
            "category": category,
        }
        for category, (name, price) in chosen
    ]


def _restaurants(rng: random.Random, count: int) -> list[dict[str, Any]]:
    ids = _ObjectIds(rng, datetime(2022, 4, 28, 12, 0, 15))
    menu_ids = _ObjectIds(rng, datetime(2022, 5, 7, 21, 22, 53))
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    names = {kind: rng.sample(kind.names, len(kind.names)) for kind in KINDS}
    seen: dict[RestaurantKind, int] = {}
    restaurants = []
    for kind in kinds:
        n = seen[kind] = seen.get(kind, 0) + 1
        pattern = names[kind][(n - 1) % len(kind.names)]
        name = pattern.format(n=n)
        if "{n}" not in pattern and n > len(kind.names):
            name += f" №{(n - 1) // len(kind.names) + 1}"
        restaurants.append(
            {
                "_id": ids.next(),
                "name": name,
                "menu": _menu(rng, kind, menu_ids),
                "update_ts_utc": _stamp(rng, ids.created),
            }
        )
    return restaurants


def sample_dictionaries(seed: int = 7, users: int = 400, restaurants: int = 30) -> Dictionaries:
    """Russian users and restaurants with menus; every id (users, restaurants and menu
    items) is unique, so they can share one Redis key space."""
    rng = random.Random(seed)
    return Dictionaries(users=_users(rng, users), restaurants=_restaurants(rng, restaurants))


def dictionary_entries(dictionaries: Dictionaries) -> dict[str, bytes]:
    """The Redis values: entity id -> JSON bytes."""
    return {
        entry["_id"]: encode_json(entry)
        for entry in (*dictionaries.users, *dictionaries.restaurants)
    }


def load_dictionaries_file(path: str | Path) -> Dictionaries:
    """Read ``{"users": [...], "restaurants": [...]}`` and check every entry strictly;
    a bad entry raises :class:`ValueError` naming the file and the entry."""
    try:
        document = json.loads(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if type(document) is not dict:
        raise ValueError(f'{path}: expected an object {{"users": [...], "restaurants": [...]}}')
    sections: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for section, parse in (("users", parse_user), ("restaurants", parse_restaurant)):
        entries = document.get(section)
        if type(entries) is not list:
            raise ValueError(f"{path}: {section!r} must be an array")
        for index, entry in enumerate(entries):
            try:
                entity_id = parse(encode_json(entry)).id
            except InvalidMessage as exc:
                raise ValueError(f"{path}: {section}[{index}]: {exc}") from None
            if entity_id in seen:
                raise ValueError(f"{path}: {section}[{index}]: duplicate id {entity_id!r}")
            seen.add(entity_id)
        sections[section] = entries
    return Dictionaries(users=sections["users"], restaurants=sections["restaurants"])
