"""THE NAIVE BASELINE. Not the product: a small re-implementation of the original
one-message-at-a-time design, kept only so that the benchmark can measure the workers
against it side by side. Nothing in ``src/`` imports it.

It keeps the original services' mechanics, which are what made them slow:

* ``consumer.poll()`` of one message, handled completely before the next;
* a **new PostgreSQL connection for every statement**, committed on its own;
* ``producer.flush()`` after every message produced;
* a Redis ``GET`` per lookup (the user, the restaurant).

Where it departs from the original, it is to do the same job as the workers, or in
its own favour: it runs continuously instead of on the original 25-second scheduler
tick; it follows the contract's semantics (satellites keep the newest version, the
counters are guarded by a per-order ledger so that replays, refunds and stale versions
leave exact numbers), so its marts can be checked against the oracle like ours; it
commits each message's offset synchronously, which is how the benchmark sees where it
is. Hash keys come from ``dwh_core.hashing``, the one function every service uses.

It writes empty copies of the warehouse tables in its own schemas (``bench_naive_stg``,
``bench_naive_dds``, ``bench_naive_cdm``, made by :func:`prepare`), so it never touches
the workers' tables. Run one layer with ``python -m bench.baseline stg|dds|cdm`` and the
workers' environment variables (``KAFKA_SOURCE_TOPIC``, ``KAFKA_DESTINATION_TOPIC``,
``KAFKA_CONSUMER_GROUP``, the connection settings); SIGTERM stops it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer

from bench.tables import copy_tables, drop_schema, recreate_schema
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_adapters.postgres.tables import CDM_TABLES, DDS_TABLES, STG_TABLES
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.vault import HUBS, LINKS, SATELLITES
from dwh_workers import config

SCHEMAS = {"stg": "bench_naive_stg", "dds": "bench_naive_dds", "cdm": "bench_naive_cdm"}
LOAD_SRC = "orders-system-kafka"
STG = SCHEMAS["stg"]
DDS = SCHEMAS["dds"]
CDM = SCHEMAS["cdm"]


def prepare(settings: PgSettings) -> None:
    """(Re)create the baseline's schemas with empty copies of the warehouse tables."""
    with connect(settings, autocommit=True) as conn:
        for layer, tables in (("stg", STG_TABLES), ("dds", DDS_TABLES), ("cdm", CDM_TABLES)):
            recreate_schema(conn, SCHEMAS[layer])
            copy_tables(conn, tables, SCHEMAS[layer])


def drop(settings: PgSettings) -> None:
    with connect(settings, autocommit=True) as conn:
        for schema in SCHEMAS.values():
            drop_schema(conn, schema)


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _hub_sql(name: str) -> str:
    spec = HUBS[name]
    columns = (spec.pk, *spec.key_columns, "load_dt", "load_src")
    return (
        f"INSERT INTO {DDS}.{spec.table} ({', '.join(columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING"
    )


def _link_sql(name: str) -> str:
    spec = LINKS[name]
    columns = (spec.pk, HUBS[spec.hubs[0]].pk, HUBS[spec.hubs[1]].pk, "load_dt", "load_src")
    return (
        f"INSERT INTO {DDS}.{spec.table} ({', '.join(columns)})"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    )


def _satellite_sql(name: str) -> tuple[str, str]:
    spec = SATELLITES[name]
    pk = HUBS[spec.hub].pk
    columns = (pk, *spec.columns, spec.hashdiff_column, "source_ts", "load_dt", "load_src")
    current = (
        f"SELECT {spec.hashdiff_column}, source_ts FROM {DDS}.{spec.table}"
        f" WHERE {pk} = %s ORDER BY source_ts DESC LIMIT 1"
    )
    insert = (
        f"INSERT INTO {DDS}.{spec.table} ({', '.join(columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING"
    )
    return current, insert


HUB_SQL = {name: _hub_sql(name) for name in HUBS}
LINK_SQL = {name: _link_sql(name) for name in LINKS}
SATELLITE_SQL = {name: _satellite_sql(name) for name in SATELLITES}


class NaiveService:
    """One layer of the original design: a message at a time, a connection per row."""

    def __init__(self, layer: str) -> None:
        services = config.services()
        self._conninfo = services.postgres.conninfo()
        self._source = os.environ["KAFKA_SOURCE_TOPIC"]
        self._destination = os.environ.get("KAFKA_DESTINATION_TOPIC", "")
        self._redis = services.redis.client()
        self._consumer = Consumer(
            {
                **services.kafka.client_config(),
                "group.id": os.environ["KAFKA_CONSUMER_GROUP"],
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._producer = Producer(services.kafka.client_config())
        handlers: dict[str, Callable[[bytes], None]] = {
            "stg": self.stg,
            "dds": self.dds,
            "cdm": self.cdm,
        }
        self._handle = handlers[layer]
        self._stopping = False

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        self._consumer.subscribe([self._source])
        try:
            while not self._stopping:
                message = self._consumer.poll(1.0)
                if message is None:
                    continue
                if message.error():
                    print(f"consumer error: {message.error()}", file=sys.stderr)
                    continue
                value = message.value()
                if value is not None:
                    self._handle(value)
                self._consumer.commit(message=message, asynchronous=False)
        finally:
            self._consumer.close()

    def _execute(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement on a connection of its own, committed as it closes."""
        with psycopg.connect(self._conninfo) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def _send(self, key: str, document: dict[str, Any]) -> None:
        self._producer.produce(
            self._destination, key=key.encode(), value=json.dumps(document, ensure_ascii=False)
        )
        self._producer.flush()

    def _lookup(self, entity_id: str) -> Any:
        """A dictionary entry: one Redis GET per lookup."""
        raw = self._redis.get(entity_id)
        if raw is None:
            raise LookupError(f"{entity_id} is not in the dictionaries")
        return json.loads(raw)

    # --- STG: keep the order, enrich it from Redis, pass it on ----------------------------

    def stg(self, value: bytes) -> None:
        order = json.loads(value)
        payload = order["payload"]
        self._execute(
            f"INSERT INTO {STG}.order_events"
            " (object_id, payload, object_type, sent_dttm, update_ts)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (object_id) DO UPDATE SET"
            " payload = excluded.payload, object_type = excluded.object_type,"
            " sent_dttm = excluded.sent_dttm, update_ts = excluded.update_ts"
            " WHERE excluded.update_ts > order_events.update_ts",
            (
                order["object_id"],
                json.dumps(payload, ensure_ascii=False),
                order["object_type"],
                _timestamp(order["sent_dttm"]),
                _timestamp(payload["update_ts"]),
            ),
        )
        user = self._lookup(payload["user"]["id"])
        restaurant = self._lookup(payload["restaurant"]["id"])
        category = {item["_id"]: item["category"] for item in restaurant["menu"]}
        self._send(
            user["_id"],
            {
                "object_id": order["object_id"],
                "object_type": order["object_type"],
                "payload": {
                    "id": order["object_id"],
                    "date": payload["date"],
                    "cost": payload["cost"],
                    "payment": payload["payment"],
                    "status": payload["final_status"],
                    "update_ts": payload["update_ts"],
                    "restaurant": {"id": restaurant["_id"], "name": restaurant["name"]},
                    "user": {"id": user["_id"], "name": user["name"], "login": user["login"]},
                    "products": [
                        {
                            "id": item["id"],
                            "price": item["price"],
                            "quantity": item["quantity"],
                            "name": item["name"],
                            "category": category[item["id"]],
                        }
                        for item in payload["order_items"]
                    ],
                },
            },
        )

    # --- DDS: hubs, links and satellites, a row at a time -------------------------------

    def dds(self, value: bytes) -> None:
        payload = json.loads(value)["payload"]
        load_dt = datetime.now(UTC).replace(tzinfo=None)
        source_ts = _timestamp(payload["update_ts"])
        user_id, restaurant_id, order_id = (
            payload["user"]["id"],
            payload["restaurant"]["id"],
            payload["id"],
        )
        self._hub("user", user_id, load_dt)
        self._hub("restaurant", restaurant_id, load_dt)
        self._hub("order", order_id, load_dt, _timestamp(payload["date"]))
        self._link("order_user", order_id, user_id, load_dt)
        self._satellite(
            "user_names",
            user_id,
            (payload["user"]["name"], payload["user"]["login"]),
            source_ts,
            load_dt,
        )
        self._satellite(
            "restaurant_names", restaurant_id, (payload["restaurant"]["name"],), source_ts, load_dt
        )
        self._satellite(
            "order_cost", order_id, (payload["cost"], payload["payment"]), source_ts, load_dt
        )
        self._satellite("order_status", order_id, (payload["status"],), source_ts, load_dt)
        products: dict[str, str] = {}
        categories: dict[str, str] = {}
        for item in payload["products"]:
            product_id, category = item["id"], item["category"]
            self._hub("product", product_id, load_dt)
            self._hub("category", category, load_dt)
            self._link("order_product", order_id, product_id, load_dt)
            self._link("product_restaurant", product_id, restaurant_id, load_dt)
            self._link("product_category", product_id, category, load_dt)
            self._satellite("product_names", product_id, (item["name"],), source_ts, load_dt)
            products[str(hash_key(product_id))] = item["name"]
            categories[str(hash_key(category))] = category
        self._send(
            user_id,
            {
                "order_key": str(hash_key(order_id)),
                "user_key": str(hash_key(user_id)),
                "update_ts": payload["update_ts"],
                "status": payload["status"],
                "products": products,
                "categories": categories,
            },
        )

    def _hub(self, name: str, business_key: object, load_dt: datetime, *extra: object) -> None:
        self._execute(
            HUB_SQL[name], (hash_key(business_key), business_key, *extra, load_dt, LOAD_SRC)
        )

    def _link(self, name: str, first: object, second: object, load_dt: datetime) -> None:
        self._execute(
            LINK_SQL[name],
            (hash_key(first, second), hash_key(first), hash_key(second), load_dt, LOAD_SRC),
        )

    def _satellite(
        self,
        name: str,
        business_key: object,
        values: tuple[object, ...],
        source_ts: datetime,
        load_dt: datetime,
    ) -> None:
        current_sql, insert_sql = SATELLITE_SQL[name]
        pk, diff = hash_key(business_key), hashdiff(*values)
        current = self._execute(current_sql, (pk,))
        if current and (current[0][1] >= source_ts or current[0][0] == diff):
            return
        self._execute(insert_sql, (pk, *values, diff, source_ts, load_dt, LOAD_SRC))

    # --- CDM: the counters, guarded by the per-order ledger --------------------------------

    def cdm(self, value: bytes) -> None:
        facts = json.loads(value)
        order_key, user_key = uuid.UUID(facts["order_key"]), uuid.UUID(facts["user_key"])
        update_ts = _timestamp(facts["update_ts"])
        ledger = self._execute(
            f"SELECT update_ts, products, categories FROM {CDM}.order_contributions"
            " WHERE order_key = %s",
            (order_key,),
        )
        if ledger and ledger[0][0] >= update_ts:
            return  # a replay or a stale version
        counted = facts["status"] == "CLOSED"
        old_products, old_categories = (
            (set(ledger[0][1]), set(ledger[0][2])) if ledger else (set(), set())
        )
        products = {uuid.UUID(k): n for k, n in facts["products"].items()} if counted else {}
        categories = {uuid.UUID(k): n for k, n in facts["categories"].items()} if counted else {}
        for table, column, name_column, new, old in (
            ("user_product_counters", "product_id", "product_name", products, old_products),
            ("user_category_counters", "category_id", "category_name", categories, old_categories),
        ):
            for key in new.keys() - old:
                self._execute(
                    f"INSERT INTO {CDM}.{table} (user_id, {column}, {name_column}, order_cnt)"
                    f" VALUES (%s, %s, %s, 1) ON CONFLICT (user_id, {column}) DO UPDATE SET"
                    f" order_cnt = {table}.order_cnt + 1, {name_column} = excluded.{name_column}",
                    (user_key, key, new[key]),
                )
            for key in old - new.keys():
                self._execute(
                    f"UPDATE {CDM}.{table} SET order_cnt = order_cnt - 1"
                    f" WHERE user_id = %s AND {column} = %s",
                    (user_key, key),
                )
        self._execute(
            f"INSERT INTO {CDM}.order_contributions"
            " (order_key, user_key, update_ts, products, categories) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (order_key) DO UPDATE SET update_ts = excluded.update_ts,"
            " products = excluded.products, categories = excluded.categories",
            (order_key, user_key, update_ts, list(products), list(categories)),
        )


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SCHEMAS:
        print("usage: python -m bench.baseline stg|dds|cdm", file=sys.stderr)
        return 2
    service = NaiveService(argv[0])
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
