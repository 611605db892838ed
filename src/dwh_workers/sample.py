"""Built-in sample data: realistic dictionaries and a simulator of the order feed.

Everything is produced in the exact wire formats of CONTRACT.md §1 (§1.2 for the Redis
values, §1.1 for the order messages) and is deterministic for a seed: each generator
draws from its own ``random.Random(seed)``, never from the global one.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from attrs import frozen

from dwh_core.parsing import InvalidMessage, encode_json, parse_restaurant, parse_user

# --- Catalogue: categories, dishes and base prices -----------------------------------

CATALOGUE: dict[str, tuple[tuple[str, int], ...]] = {
    "Пицца": (
        ("Пицца «Маргарита»", 450),
        ('Пицца "Пепперони"', 520),
        ("Пицца «4 сыра»; 30 см", 590),
        ("Пицца «4 сыра»; 40 см", 790),
        ('Пицца "Гавайская" с ананасом', 540),
        ("Пицца «Дьябола»", 560),
        ('Пицца "Мясная"; 35 см', 690),
        ("Пицца с грибами и ветчиной", 510),
        ("Пицца «Карбонара»", 570),
        ('Пицца "Барбекю"', 610),
        ("Пицца «Вегетарианская»", 480),
        ("Пицца с морепродуктами; 30 см", 720),
        ("Кальцоне с ветчиной", 430),
        ("Пицца «Цезарь»", 580),
    ),
    "Салаты": (
        ('Салат "Цезарь" с курицей', 390),
        ("Салат «Цезарь» с креветками", 490),
        ('Салат "Греческий"', 320),
        ("Салат «Оливье»", 260),
        ("Винегрет", 190),
        ("Салат из свежих овощей", 210),
        ('Салат "Нисуаз" с тунцом', 450),
        ("Салат «Капрезе»", 380),
        ("Салат с тёплой говядиной", 470),
        ('Салат "Мимоза"', 240),
        ("Салат с киноа и авокадо", 420),
        ("Сельдь под шубой", 250),
        ("Салат «Чука»", 290),
    ),
    "Супы": (
        ("Борщ со сметаной", 290),
        ('Суп "Том Ям" с креветками', 520),
        ("Солянка мясная сборная", 340),
        ("Щи из квашеной капусты", 260),
        ("Куриный суп с лапшой", 230),
        ("Крем-суп из шампиньонов", 310),
        ("Уха «По-фински»; 300 мл", 390),
        ("Суп «Мисо»", 210),
        ("Рассольник", 250),
        ("Харчо", 320),
        ("Окрошка на квасе", 270),
        ("Гороховый суп с копчёностями", 240),
    ),
    "Выпечка": (
        ("Круассан классический", 120),
        ("Круассан с миндалём", 180),
        ("Пирожок с капустой", 70),
        ("Пирожок с мясом", 85),
        ('Булочка "Синнабон"', 190),
        ("Слойка с вишней", 110),
        ("Хачапури «По-аджарски»", 390),
        ("Чебурек с бараниной", 150),
        ('Пирог "Осетинский" с сыром; 1 кг', 890),
        ("Ватрушка с творогом", 95),
        ("Самса с курицей", 140),
        ("РОЛЛ С ТОФУ И ВЯЛЕНЫМИ ТОМАТАМИ", 180),
        ("Багет", 90),
        ("Курник", 320),
    ),
    "Напитки": (
        ("Капучино 0,3 л", 190),
        ("Латте 0,4 л", 220),
        ("Американо", 150),
        ("Эспрессо", 120),
        ("Раф «Лавандовый»", 260),
        ("Какао с маршмеллоу", 210),
        ("Чай «Иван-чай»; 500 мл", 180),
        ('Чай чёрный "Эрл Грей"', 150),
        ("Морс клюквенный 0,5 л", 160),
        ('Лимонад "Тархун"', 170),
        ("Апельсиновый фреш; 250 мл", 280),
        ("Кока-кола 0,33 л", 120),
        ('Вода минеральная "Боржоми"', 140),
        ("Квас хлебный", 110),
        ("Смузи «Манго-маракуйя»", 290),
    ),
    "Горячее": (
        ("Бефстроганов с пюре", 420),
        ("Котлета по-киевски", 390),
        ("Плов с бараниной", 360),
        ("Пельмени домашние; 15 шт.", 330),
        ("Вареники с картофелем", 280),
        ('Паста "Карбонара"', 450),
        ("Паста «Болоньезе»", 430),
        ('Стейк "Рибай"; 300 г', 1490),
        ("Шашлык из свинины", 520),
        ("Гречка с грибами", 210),
        ("Рис с лимоном", 175),
        ("Куриная грудка гриль с овощами", 380),
        ("Лосось на гриле", 890),
        ("Голубцы со сметаной", 340),
        ("Бургер «Классический»", 390),
        ("Вок с курицей и овощами", 370),
    ),
    "Десерты": (
        ('Чизкейк "Нью-Йорк"', 290),
        ("Тирамису", 320),
        ("Медовик", 260),
        ("Наполеон", 250),
        ("Эклер с заварным кремом", 140),
        ("Пирожное «Картошка»", 110),
        ("Мороженое пломбир; 2 шарика", 180),
        ("Брауни с вишней", 230),
        ("Панна-котта «Ягодная»", 240),
        ("Штрудель яблочный", 270),
        ("Моти «Манго»", 190),
        ('Торт "Прага"; 1 кусок', 280),
    ),
    "Роллы": (
        ('Ролл "Филадельфия"; 8 шт.', 590),
        ("Ролл «Калифорния»", 490),
        ("Ролл с угрём", 450),
        ('Ролл "Дракон"', 690),
        ("Ролл с лососем", 320),
        ("Ролл с огурцом", 180),
        ("Ролл «Запечённый с крабом»", 420),
        ('Ролл "Канада"', 560),
        ("Ролл темпура с креветкой", 480),
        ('Сет "Токио"; 32 шт.', 1890),
        ("Ролл «Бонито»", 410),
        ("Нигири с тунцом; 2 шт.", 260),
    ),
    "Завтраки": (
        ("Сырники со сметаной", 260),
        ("Омлет с ветчиной и сыром", 280),
        ("Каша овсяная с ягодами", 190),
        ("Блины с творогом", 230),
        ("Блины со сгущёнкой", 210),
        ("Яичница «Глазунья» из 3 яиц", 220),
        ("Драники со сметаной", 250),
        ("Английский завтрак", 450),
        ("Гранола с йогуртом", 270),
        ("Тост с авокадо и яйцом пашот", 340),
        ('Каша "Дружба"', 170),
        ("Шакшука", 310),
    ),
    "Закуски": (
        ("Картофель фри", 170),
        ("Наггетсы куриные; 9 шт.", 260),
        ('Крылышки "Баффало"', 390),
        ("Брускетта с томатами", 240),
        ("Сырные палочки", 280),
        ("Гренки чесночные", 150),
        ("Эдамаме", 230),
        ("Кесадилья с курицей", 340),
        ("Луковые кольца", 190),
        ("Сало с чесноком и бородинским хлебом", 290),
        ("Креветки «Темпура»; 6 шт.", 450),
        ("Хумус с питой", 260),
        ("Гёдза с курицей", 310),
    ),
}


@frozen
class _Kind:
    """A kind of restaurant: its names (``{n}`` is a running number) and its categories."""

    names: tuple[str, ...]
    categories: tuple[str, ...]


KINDS = (
    _Kind(("Кофейня №{n}",), ("Напитки", "Выпечка", "Десерты", "Завтраки")),
    _Kind(
        (
            'Пиццерия "Папа Карло"',
            "Пиццерия «Дольче Вита»",
            'Пиццерия "Маргарита"',
            "Пиццерия «Везувий»",
            'Пиццерия "Неаполь"',
        ),
        ("Пицца", "Салаты", "Закуски", "Напитки", "Десерты"),
    ),
    _Kind(
        ('Суши-бар "Токио"', "Суши-бар «Сакура»", 'Суши-бар "Васаби"', "Суши-бар «Фудзи»"),
        ("Роллы", "Супы", "Салаты", "Закуски", "Напитки"),
    ),
    _Kind(("Столовая №{n}",), ("Супы", "Горячее", "Салаты", "Выпечка", "Напитки")),
    _Kind(
        ('Кафе "Ромашка"', "Кафе «Уют»", 'Кафе "Бульвар"', "Кафе «Арбатский дворик»"),
        ("Завтраки", "Салаты", "Супы", "Горячее", "Десерты", "Напитки"),
    ),
    _Kind(
        ("Пекарня «Хлебница»", 'Пекарня "Колобок"', "Пекарня «Французский багет»"),
        ("Выпечка", "Десерты", "Напитки", "Завтраки"),
    ),
    _Kind(
        ('Ресторан "Онегин"', "Ресторан «Грузинский дворик»", 'Ресторан "Белуга"'),
        ("Закуски", "Салаты", "Супы", "Горячее", "Десерты", "Напитки"),
    ),
)

# --- People: surnames (masculine form), first names and patronymics ------------------

SURNAMES = (
    "Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов",
    "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
    "Павлов", "Котов", "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров",
    "Никитин", "Захаров", "Зайцев", "Соловьёв", "Борисов", "Яковлев", "Григорьев", "Романов",
    "Воробьёв", "Белов", "Вишневский", "Покровский", "Островский", "Толстой", "Черных",
    "Шевченко", "Седых", "Ковальчук",
)  # fmt: skip
MALE_NAMES = (
    "Александр", "Алексей", "Андрей", "Антон", "Артём", "Борис", "Вадим", "Валентин",
    "Василий", "Виктор", "Владимир", "Георгий", "Григорий", "Денис", "Дмитрий", "Евгений",
    "Егор", "Иван", "Игорь", "Кирилл", "Константин", "Максим", "Михаил", "Никита", "Николай",
    "Олег", "Павел", "Роман", "Сергей", "Станислав", "Фёдор", "Юрий", "Ярослав",
)  # fmt: skip
FEMALE_NAMES = (
    "Александра", "Алина", "Анастасия", "Анна", "Валентина", "Валерия", "Вера", "Виктория",
    "Галина", "Дарья", "Евгения", "Екатерина", "Елена", "Ирина", "Ксения", "Лариса",
    "Любовь", "Людмила", "Марина", "Мария", "Наталья", "Надежда", "Нина", "Ольга", "Полина",
    "Светлана", "София", "Татьяна", "Юлия", "Яна",
)  # fmt: skip
PATRONYMICS = (  # (masculine, feminine)
    ("Александрович", "Александровна"), ("Алексеевич", "Алексеевна"),
    ("Андреевич", "Андреевна"), ("Борисович", "Борисовна"), ("Вадимович", "Вадимовна"),
    ("Васильевич", "Васильевна"), ("Вениаминович", "Вениаминовна"),
    ("Викторович", "Викторовна"), ("Владимирович", "Владимировна"),
    ("Геннадьевич", "Геннадьевна"), ("Григорьевич", "Григорьевна"),
    ("Дмитриевич", "Дмитриевна"), ("Евгеньевич", "Евгеньевна"), ("Иванович", "Ивановна"),
    ("Игоревич", "Игоревна"), ("Ильич", "Ильинична"), ("Константинович", "Константиновна"),
    ("Кузьмич", "Кузьминична"), ("Леонидович", "Леонидовна"), ("Михайлович", "Михайловна"),
    ("Николаевич", "Николаевна"), ("Олегович", "Олеговна"), ("Павлович", "Павловна"),
    ("Петрович", "Петровна"), ("Романович", "Романовна"), ("Сергеевич", "Сергеевна"),
    ("Юрьевич", "Юрьевна"), ("Яковлевич", "Яковлевна"),
)  # fmt: skip

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

T = TypeVar("T")


@frozen
class Dictionaries:
    """Users and restaurants as the Redis values of CONTRACT.md §1.2 (plain JSON data)."""

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


def _menu(rng: random.Random, kind: _Kind, ids: _ObjectIds) -> list[dict[str, Any]]:
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
    seen: dict[_Kind, int] = {}
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


# --- The order feed -------------------------------------------------------------------

FLOW = ("OPEN", "COOKING", "DELIVERING", "CLOSED")
CANCELLED = "CANCELLED"
MEAN_ORDER_INTERVAL_S = 12.0  # the original feed: 5 orders per minute
REFUND_SHARE = 0.3  # of updated orders: CLOSED, then CANCELLED after a refund
STALE_SHARE = 0.15  # of updated orders: the older version arrives after the newer one
ITEM_COUNTS = (1, 1, 1, 2, 2, 2, 3, 3, 4, 5)
QUANTITIES = (1, 1, 1, 1, 2, 2, 3, 4)

_Version = list[tuple[str, int]]  # (status, seconds since start), oldest first


class OrderGenerator:
    """Simulates the order feed of CONTRACT.md §1.1 over the given dictionaries.

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

    def _pick(self, options: Sequence[T]) -> T:
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
