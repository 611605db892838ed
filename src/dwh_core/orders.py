"""What flows in and between the layers: orders, dictionaries, enriched orders, facts.

Field names follow the wire formats of CONTRACT.md §1 and §2; parsing and encoding live
in :mod:`dwh_core.parsing`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from attrs import frozen

CLOSED = "CLOSED"
CANCELLED = "CANCELLED"


@frozen
class Ref:
    id: str


@frozen
class OrderItem:
    id: str
    name: str
    price: int
    quantity: int


@frozen
class StatusChange:
    status: str
    dttm: datetime


@frozen
class OrderPayload:
    restaurant: Ref
    date: datetime
    user: Ref
    order_items: list[OrderItem]
    bonus_payment: int
    cost: int
    payment: int
    bonus_grant: int
    statuses: list[StatusChange]
    final_status: str
    update_ts: datetime


@frozen
class Order:
    """One version of an order, as the order feed sends it (CONTRACT.md §1.1)."""

    object_id: int
    object_type: str
    sent_dttm: datetime
    payload: OrderPayload


@frozen
class User:
    """A user from the dictionaries (Redis), CONTRACT.md §1.2."""

    id: str
    name: str
    login: str
    update_ts_utc: datetime


@frozen
class MenuItem:
    id: str
    name: str
    price: int
    category: str


@frozen
class Restaurant:
    """A restaurant and its menu from the dictionaries (Redis), CONTRACT.md §1.2."""

    id: str
    name: str
    menu: list[MenuItem]
    update_ts_utc: datetime

    def menu_item(self, item_id: str) -> MenuItem | None:
        return next((item for item in self.menu if item.id == item_id), None)


@frozen
class NamedRef:
    id: str
    name: str


@frozen
class EnrichedUser:
    id: str
    name: str
    login: str


@frozen
class Product:
    id: str
    price: int
    quantity: int
    name: str
    category: str


@frozen
class EnrichedPayload:
    id: int
    date: datetime
    cost: int
    payment: int
    status: str
    update_ts: datetime
    restaurant: NamedRef
    user: EnrichedUser
    products: list[Product]


@frozen
class EnrichedOrder:
    """An order with names, logins and categories from the dictionaries (STG -> DDS)."""

    object_id: int
    object_type: str
    payload: EnrichedPayload


@frozen
class KeyName:
    key: uuid.UUID
    name: str


@frozen
class OrderFacts:
    """What the marts need of one order version (DDS -> CDM).

    ``products`` and ``categories`` are distinct hub keys with their names.
    """

    order_key: uuid.UUID
    order_id: int
    user_key: uuid.UUID
    user_id: str
    update_ts: datetime
    status: str
    products: list[KeyName]
    categories: list[KeyName]

    @property
    def counts(self) -> bool:
        return self.status == CLOSED
