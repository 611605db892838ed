"""An order plus the dictionaries: names, logins and product categories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from dwh_core.messages import shorten
from dwh_core.orders import (
    EnrichedOrder,
    EnrichedPayload,
    EnrichedUser,
    NamedRef,
    Order,
    Product,
    Restaurant,
    User,
)
from dwh_core.parsing import InvalidMessage, parse_restaurant, parse_user

T = TypeVar("T", User, Restaurant)


class UnknownReference(LookupError):
    """The order names a user, restaurant or menu item the dictionaries lack or cannot
    read; ``str()`` is the reason. Such an order waits in the dead-letter topic until the
    dictionaries are fixed and it is re-driven."""


class Catalog:
    """The dictionary entries one batch needs, parsed on first use."""

    def __init__(self, raw: Mapping[str, bytes]) -> None:
        self._raw = raw
        self._parsed: dict[tuple[str, str], object] = {}

    def user(self, user_id: str) -> User:
        return self._entry("user", user_id, parse_user)

    def restaurant(self, restaurant_id: str) -> Restaurant:
        return self._entry("restaurant", restaurant_id, parse_restaurant)

    def _entry(self, kind: str, entry_id: str, parse: Callable[[bytes], T]) -> T:
        key = (kind, entry_id)
        if key not in self._parsed:
            self._parsed[key] = self._parse(kind, entry_id, parse)
        entry = self._parsed[key]
        if isinstance(entry, UnknownReference):
            raise UnknownReference(str(entry))
        return entry  # type: ignore[return-value]

    def _parse(self, kind: str, entry_id: str, parse: Callable[[bytes], T]) -> object:
        raw = self._raw.get(entry_id)
        if raw is None:
            return UnknownReference(f"unknown {kind} {entry_id}: not in the dictionaries")
        try:
            entry = parse(raw)
        except InvalidMessage as exc:
            return UnknownReference(f"{kind} {entry_id}: unreadable dictionary entry: {exc}")
        # The key is the id (docs/CONTRACT.md §1.2): an entry that names another id would put
        # the order under someone else's hub key.
        if entry.id != entry_id:
            found = shorten(entry.id)
            return UnknownReference(
                f"{kind} {entry_id}: dictionary entry has _id {found}, not its key"
            )
        return entry


def enrich(order: Order, catalog: Catalog, content_hash: str) -> EnrichedOrder:
    """The enriched order (docs/CONTRACT.md §2), carrying the ``content_hash`` of the message
    it came from (:mod:`dwh_core.versions`); raises :class:`UnknownReference`."""
    payload = order.payload
    user = catalog.user(payload.user.id)
    restaurant = catalog.restaurant(payload.restaurant.id)
    products = []
    for item in payload.order_items:
        menu_item = restaurant.menu_item(item.id)
        if menu_item is None:
            raise UnknownReference(f"unknown menu item {item.id} in restaurant {restaurant.id}")
        products.append(
            Product(
                id=item.id,
                price=item.price,
                quantity=item.quantity,
                name=item.name,
                category=menu_item.category,
            )
        )
    return EnrichedOrder(
        object_id=order.object_id,
        object_type=order.object_type,
        payload=EnrichedPayload(
            id=order.object_id,
            date=payload.date,
            cost=payload.cost,
            payment=payload.payment,
            status=payload.final_status,
            update_ts=payload.update_ts,
            restaurant=NamedRef(restaurant.id, restaurant.name),
            user=EnrichedUser(user.id, user.name, user.login),
            products=products,
            content_hash=content_hash,
        ),
    )
