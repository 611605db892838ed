"""What flows in and between the layers: orders, dictionaries, enriched orders, facts.

Field names follow the wire formats of docs/CONTRACT.md §1 and §2; parsing and encoding live
in :mod:`dwh_core.parsing`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NewType

from attrs import frozen

from dwh_core.versions import Version, tiebreak

CLOSED = "CLOSED"

# An order id: stored as PostgreSQL ``int``, so parsing accepts only -2^31 <= id < 2^31.
OrderId = NewType("OrderId", int)


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
    """One version of an order, as the order feed sends it (docs/CONTRACT.md §1.1)."""

    object_id: OrderId
    object_type: str
    sent_dttm: datetime
    payload: OrderPayload


@frozen
class User:
    """A user from the dictionaries (Redis), docs/CONTRACT.md §1.2."""

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
    """A restaurant and its menu from the dictionaries (Redis), docs/CONTRACT.md §1.2."""

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
    id: OrderId
    date: datetime
    cost: int
    payment: int
    status: str
    update_ts: datetime
    restaurant: NamedRef
    user: EnrichedUser
    products: list[Product]
    # The hash of the message STG received (dwh_core.versions); empty from older producers.
    content_hash: str = ""


@frozen
class EnrichedOrder:
    """An order with names, logins and categories from the dictionaries (STG -> DDS)."""

    object_id: OrderId
    object_type: str
    payload: EnrichedPayload

    @property
    def version(self) -> Version:
        return Version(
            self.payload.update_ts, tiebreak(self.payload.status, self.payload.content_hash)
        )


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
    order_id: OrderId
    user_key: uuid.UUID
    user_id: str
    update_ts: datetime
    status: str
    products: list[KeyName]
    categories: list[KeyName]
    content_hash: str = ""
    # The order's date (for tag rules with a window); None from older producers.
    date: datetime | None = None

    @property
    def version(self) -> Version:
        return Version(self.update_ts, tiebreak(self.status, self.content_hash))

    @property
    def is_counted(self) -> bool:
        """Whether this version adds to the marts: only a ``CLOSED`` order counts."""
        return self.status == CLOSED
