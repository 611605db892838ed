"""The Data Vault 2.0 model of the DDS layer (docs/CONTRACT.md §3), built from enriched orders.

Five hubs, four links and five satellites. Each table is described once, by a spec, and
rows refer to their table by name; the storage adapters generate their statements from
the same specs, so the model is written down in one place.

* A hub key is :func:`~dwh_core.hashing.hash_key` of the business key (for
  ``h_order`` the business key is ``order_id``; ``order_dt`` is carried along).
* A link key is ``hash_key`` of the business keys of its two hubs, in the link's
  column order (``l_order_product``: order id, then product id).
* A satellite row carries the source ``update_ts`` of the order version it came from
  (column ``source_ts``). Per satellite and key the store keeps a small state: the
  hashdiff of the current row and the newest version seen (the watermark: a
  :class:`~dwh_core.versions.Version`, ``source_ts`` and its tie-break). A version newer
  than the watermark moves the watermark and adds a row only when its hashdiff differs
  from the current row's; a version at or below the watermark is stale or a replay and
  adds nothing. So the current row (the one with the greatest ``source_ts``) always
  reflects the newest version whatever the order of arrival, and a replay adds nothing.
  A stale version that arrives after a newer one is not written into the history:
  satellites are insert-only, and a row slipped in behind the current one would change
  what the history says was current afterwards. The one exception is a tie: a version
  with the same ``source_ts`` as the current row that wins the tie-break replaces that
  row (one row per key and ``source_ts``), since both describe the same moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from operator import attrgetter

from attrs import field, frozen

from dwh_core.hashing import hash_key, hashdiff
from dwh_core.orders import EnrichedOrder, KeyName, OrderFacts
from dwh_core.versions import Version


@frozen
class HubSpec:
    name: str
    table: str
    pk: str
    key_columns: tuple[str, ...]


@frozen
class LinkSpec:
    name: str
    table: str
    pk: str
    hubs: tuple[str, str]


@frozen
class SatelliteSpec:
    name: str
    table: str
    hub: str
    columns: tuple[str, ...]

    @property
    def hashdiff_column(self) -> str:
        return f"hk_{self.name}_hashdiff"


HUBS = {
    spec.name: spec
    for spec in (
        HubSpec("user", "h_user", "h_user_pk", ("user_id",)),
        HubSpec("product", "h_product", "h_product_pk", ("product_id",)),
        HubSpec("category", "h_category", "h_category_pk", ("category_name",)),
        HubSpec("restaurant", "h_restaurant", "h_restaurant_pk", ("restaurant_id",)),
        HubSpec("order", "h_order", "h_order_pk", ("order_id", "order_dt")),
    )
}
LINKS = {
    spec.name: spec
    for spec in (
        LinkSpec("order_product", "l_order_product", "hk_order_product_pk", ("order", "product")),
        LinkSpec(
            "product_restaurant",
            "l_product_restaurant",
            "hk_product_restaurant_pk",
            ("product", "restaurant"),
        ),
        LinkSpec(
            "product_category",
            "l_product_category",
            "hk_product_category_pk",
            ("product", "category"),
        ),
        LinkSpec("order_user", "l_order_user", "hk_order_user_pk", ("order", "user")),
    )
}
SATELLITES = {
    spec.name: spec
    for spec in (
        SatelliteSpec("user_names", "s_user_names", "user", ("username", "userlogin")),
        SatelliteSpec("product_names", "s_product_names", "product", ("name",)),
        SatelliteSpec("restaurant_names", "s_restaurant_names", "restaurant", ("name",)),
        SatelliteSpec("order_cost", "s_order_cost", "order", ("cost", "payment")),
        SatelliteSpec("order_status", "s_order_status", "order", ("status",)),
    )
}


@frozen
class Hub:
    """A hub row: ``values`` are the spec's key columns (the first is the business key)."""

    name: str
    pk: uuid.UUID
    values: tuple[object, ...]
    load_dt: datetime
    load_src: str


@frozen
class Link:
    name: str
    pk: uuid.UUID
    hub_pks: tuple[uuid.UUID, uuid.UUID]
    load_dt: datetime
    load_src: str


@frozen
class Satellite:
    name: str
    hub_pk: uuid.UUID
    values: tuple[object, ...]
    hashdiff: uuid.UUID
    source_ts: datetime
    tiebreak: bytes
    load_dt: datetime
    load_src: str

    @property
    def version(self) -> Version:
        return Version(self.source_ts, self.tiebreak)


@frozen
class VaultRows:
    """The rows of one or more orders, grouped by kind, keys unique within each table."""

    hubs: list[Hub] = field(factory=list)
    links: list[Link] = field(factory=list)
    satellites: list[Satellite] = field(factory=list)


# Users, products, categories and restaurants recur in almost every batch: their keys
# and name hashdiffs are cached. What is an order's own (its hub and link keys, its cost
# hashdiff) is not, so it cannot push the recurring ones out of the cache; a status
# hashdiff has a handful of values and is cached.
_recurring_key = lru_cache(maxsize=1 << 14)(hash_key)
_recurring_hashdiff = lru_cache(maxsize=1 << 14)(hashdiff)
_ORDER_KEYED = frozenset({"order", "order_user", "order_product", "order_cost"})


class _RowBuilder:
    """Collects the rows of a batch, each key once: hubs and links by key (the first seen
    kept), satellites by (key, ``source_ts``) (the version that wins the tie-break kept).
    A row object is built only when it is kept, since users, restaurants, products and
    categories recur in most orders."""

    def __init__(self, load_dt: datetime, load_src: str) -> None:
        self._load_dt = load_dt
        self._load_src = load_src
        self.hubs: dict[tuple[str, uuid.UUID], Hub] = {}
        self.links: dict[tuple[str, uuid.UUID], Link] = {}
        self.satellites: dict[tuple[str, uuid.UUID, datetime], Satellite] = {}

    def hub(self, name: str, *values: object) -> uuid.UUID:
        pk = hash_key(values[0]) if name in _ORDER_KEYED else _recurring_key(values[0])
        if (name, pk) not in self.hubs:
            self.hubs[(name, pk)] = Hub(name, pk, values, self._load_dt, self._load_src)
        return pk

    def link(
        self, name: str, keys: tuple[object, object], pks: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        pk = hash_key(*keys) if name in _ORDER_KEYED else _recurring_key(*keys)
        if (name, pk) not in self.links:
            self.links[(name, pk)] = Link(name, pk, pks, self._load_dt, self._load_src)

    def satellite(self, name: str, hub_pk: uuid.UUID, version: Version, *values: object) -> None:
        key = (name, hub_pk, version.update_ts)
        seen = self.satellites.get(key)
        if seen is None or version.tiebreak > seen.tiebreak:
            digest = hashdiff(*values) if name in _ORDER_KEYED else _recurring_hashdiff(*values)
            self.satellites[key] = Satellite(
                name,
                hub_pk,
                values,
                digest,
                version.update_ts,
                version.tiebreak,
                self._load_dt,
                self._load_src,
            )

    def add(self, order: EnrichedOrder) -> None:
        payload = order.payload
        version = order.version
        user = self.hub("user", payload.user.id)
        restaurant = self.hub("restaurant", payload.restaurant.id)
        order_pk = self.hub("order", payload.id, payload.date)
        self.link("order_user", (payload.id, payload.user.id), (order_pk, user))
        self.satellite("user_names", user, version, payload.user.name, payload.user.login)
        self.satellite("restaurant_names", restaurant, version, payload.restaurant.name)
        self.satellite("order_cost", order_pk, version, payload.cost, payload.payment)
        self.satellite("order_status", order_pk, version, payload.status)
        for item in payload.products:
            product = self.hub("product", item.id)
            category = self.hub("category", item.category)
            self.link("order_product", (payload.id, item.id), (order_pk, product))
            self.link("product_restaurant", (item.id, payload.restaurant.id), (product, restaurant))
            self.link("product_category", (item.id, item.category), (product, category))
            self.satellite("product_names", product, version, item.name)

    def rows(self) -> VaultRows:
        return VaultRows(
            list(self.hubs.values()), list(self.links.values()), list(self.satellites.values())
        )


def vault_rows(orders: Iterable[EnrichedOrder], load_dt: datetime, load_src: str) -> VaultRows:
    """The hub, link and satellite rows of a batch of enriched order versions, each key
    once (satellites once per key and ``source_ts``; at equal ``source_ts`` the version
    that wins the tie-break of :mod:`dwh_core.versions` is kept)."""
    builder = _RowBuilder(load_dt, load_src)
    for order in orders:
        builder.add(order)
    return builder.rows()


@frozen
class SatelliteState:
    """Per satellite and key: the current row's hashdiff and the newest version seen."""

    name: str
    hub_pk: uuid.UUID
    hashdiff: uuid.UUID
    source_ts: datetime
    tiebreak: bytes

    @property
    def version(self) -> Version:
        return Version(self.source_ts, self.tiebreak)


@frozen
class SatelliteChanges:
    rows: list[Satellite]
    states: list[SatelliteState]


def satellite_changes(
    candidates: Iterable[Satellite],
    states: Mapping[tuple[str, uuid.UUID], SatelliteState],
) -> SatelliteChanges:
    """The satellite rows to insert and the states to store for a batch of candidate
    rows, given the stored states of their keys (the rule is in the module docstring)."""
    by_key: dict[tuple[str, uuid.UUID], list[Satellite]] = {}
    for candidate in candidates:
        by_key.setdefault((candidate.name, candidate.hub_pk), []).append(candidate)
    rows: list[Satellite] = []
    new_states: list[SatelliteState] = []
    for key, versions in by_key.items():
        state = states.get(key)
        current = state.hashdiff if state else None
        watermark = state.version if state else None
        if len(versions) > 1:
            versions.sort(key=attrgetter("source_ts", "tiebreak"))
        for candidate in versions:
            version = candidate.version
            if watermark is not None and version <= watermark:
                continue
            if candidate.hashdiff != current:
                rows.append(candidate)
                current = candidate.hashdiff
            watermark = version
        if (
            current is not None
            and watermark is not None
            and (state is None or watermark != state.version)
        ):
            new_states.append(
                SatelliteState(key[0], key[1], current, watermark.update_ts, watermark.tiebreak)
            )
    return SatelliteChanges(rows, new_states)


def order_facts(order: EnrichedOrder) -> OrderFacts:
    """What the marts need of one enriched order version: distinct products and
    categories by hub key, with their names."""
    payload = order.payload
    products = {_recurring_key(item.id): item.name for item in payload.products}
    categories = {_recurring_key(item.category): item.category for item in payload.products}
    return OrderFacts(
        order_key=hash_key(payload.id),
        order_id=payload.id,
        user_key=_recurring_key(payload.user.id),
        user_id=payload.user.id,
        update_ts=payload.update_ts,
        status=payload.status,
        products=[KeyName(key, name) for key, name in products.items()],
        categories=[KeyName(key, name) for key, name in categories.items()],
        content_hash=payload.content_hash,
        date=payload.date,
    )
