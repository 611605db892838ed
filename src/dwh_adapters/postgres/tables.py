"""The warehouse tables by layer, qualified (``schema.table``)."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_core.vault import HUBS, LINKS, SATELLITES

STG_TABLES = ("stg.order_events",)
SATELLITE_TABLES = tuple(f"dds.{spec.table}" for spec in SATELLITES.values())
DDS_TABLES = (
    *(f"dds.{spec.table}" for spec in HUBS.values()),
    *(f"dds.{spec.table}" for spec in LINKS.values()),
    *SATELLITE_TABLES,
    "dds.satellite_state",
)
CDM_TABLES = (
    "cdm.user_product_counters",
    "cdm.user_category_counters",
    "cdm.order_contributions",
)
TAG_TABLES = (
    "cdm.tag_rules",
    "cdm.user_tag_counters",
    "cdm.user_tag_events",
)
WAREHOUSE_TABLES = (*STG_TABLES, *DDS_TABLES, *CDM_TABLES, *TAG_TABLES)
# Where each layer keeps one row per order: how far a backlog has come, in orders.
ORDERS_TABLES = {
    "stg": STG_TABLES[0],
    "dds": f"dds.{HUBS['order'].table}",
    "cdm": "cdm.order_contributions",
}


def identifier(qualified: str) -> sql.Identifier:
    """``"schema.table"`` as a quoted SQL identifier."""
    return sql.Identifier(*qualified.split("."))


def truncate_all(conn: psycopg.Connection[TupleRow]) -> None:
    """Empty every warehouse table (tests and benchmarks only), the tag rules in force
    too (a worker reloads them: the revision moves), and commit."""
    with conn.transaction():
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(identifier(table) for table in WAREHOUSE_TABLES)
            )
        )
        conn.execute(
            "UPDATE cdm.tag_control SET ruleset_version = 0, revision = revision + 1,"
            " applied_at = NULL, rules_source = ''"
        )
