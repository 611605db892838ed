"""Enriched orders into hubs, links and satellites."""

from __future__ import annotations

from datetime import datetime

from dwh_core.enrichment import Catalog, enrich
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.parsing import parse_order
from dwh_core.vault import (
    HUBS,
    LINKS,
    SATELLITES,
    Satellite,
    SatelliteState,
    satellite_changes,
    vault_rows,
)
from tests.support.builders import order, to_bytes
from tests.support.pipeline import sample_pipeline

T0 = datetime(2023, 4, 1, 12, 0, 0)


def test_the_model_has_five_hubs_four_links_and_five_satellites() -> None:
    assert sorted(spec.table for spec in HUBS.values()) == [
        "h_category",
        "h_order",
        "h_product",
        "h_restaurant",
        "h_user",
    ]
    assert sorted(spec.table for spec in LINKS.values()) == [
        "l_order_product",
        "l_order_user",
        "l_product_category",
        "l_product_restaurant",
    ]
    assert sorted(spec.table for spec in SATELLITES.values()) == [
        "s_order_cost",
        "s_order_status",
        "s_product_names",
        "s_restaurant_names",
        "s_user_names",
    ]


def test_an_order_becomes_hubs_links_and_satellites_with_load_time_and_source() -> None:
    pipeline, users, restaurants = sample_pipeline()
    pipeline.feed([to_bytes(order(7, users[0]["_id"], restaurants[0], [0, 3], "CLOSED", 1))])
    pipeline.run()
    vault = pipeline.vault
    assert vault.hubs["order"][hash_key(7)].values[0] == 7
    assert set(vault.hubs["product"]) == {
        hash_key(restaurants[0]["menu"][i]["_id"]) for i in (0, 3)
    }
    assert set(vault.hubs["category"]) == {hash_key("Пицца")}
    link = vault.links["order_user"][hash_key(7, users[0]["_id"])]
    assert link.hub_pks == (hash_key(7), hash_key(users[0]["_id"]))
    status = vault.current("order_status", hash_key(7))
    assert status is not None
    assert status.values == ("CLOSED",)
    assert status.hashdiff == hashdiff("CLOSED")
    assert (status.load_src, status.load_dt) == ("stg-service-orders", datetime(2023, 4, 1, 18, 0))


def sat(status: str, minute: int) -> Satellite:
    return Satellite(
        "order_status",
        hash_key(1),
        (status,),
        hashdiff(status),
        T0.replace(minute=minute),
        b"",
        T0,
        "test",
    )


def test_a_satellite_row_is_added_only_when_the_hashdiff_changes() -> None:
    changes = satellite_changes([sat("OPEN", 1), sat("OPEN", 2), sat("CLOSED", 3)], {})
    assert [row.values for row in changes.rows] == [("OPEN",), ("CLOSED",)]
    assert changes.states == [
        SatelliteState("order_status", hash_key(1), hashdiff("CLOSED"), T0.replace(minute=3), b"")
    ]


def test_a_stale_or_replayed_version_adds_no_row() -> None:
    state = SatelliteState(
        "order_status", hash_key(1), hashdiff("CLOSED"), T0.replace(minute=5), b""
    )
    changes = satellite_changes(
        [sat("OPEN", 1), sat("CLOSED", 5)], {(state.name, state.hub_pk): state}
    )
    assert changes.rows == []
    assert changes.states == []


def test_a_newer_version_with_the_same_content_moves_only_the_watermark() -> None:
    state = SatelliteState("order_status", hash_key(1), hashdiff("OPEN"), T0.replace(minute=1), b"")
    changes = satellite_changes([sat("OPEN", 2)], {(state.name, state.hub_pk): state})
    assert changes.rows == []
    assert changes.states == [
        SatelliteState("order_status", hash_key(1), hashdiff("OPEN"), T0.replace(minute=2), b"")
    ]


def test_order_rows_hold_every_product_of_the_order() -> None:
    pipeline, users, restaurants = sample_pipeline()

    enriched = enrich(
        parse_order(to_bytes(order(3, users[2]["_id"], restaurants[1], [0, 1, 2], "CLOSED", 1))),
        Catalog(pipeline.dictionaries.entries),
        "",
    )
    rows = vault_rows([enriched], T0, "src")
    assert len([h for h in rows.hubs if h.name == "product"]) == 3
    assert len([link for link in rows.links if link.name == "product_category"]) == 3
    assert all(hub.load_dt == T0 and hub.load_src == "src" for hub in rows.hubs)
    assert all(link.load_dt == T0 and link.load_src == "src" for link in rows.links)
