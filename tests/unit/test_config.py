from __future__ import annotations

import pytest

from dwh_adapters.kafka.settings import GroupMembership
from dwh_workers.config import ConfigError, load


def test_defaults_are_the_local_stack_and_the_layer_topics() -> None:
    settings = load("dds", {})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert (settings.worker.source_topic, settings.worker.destination_topic) == (
        "stg-service-orders",
        "dds-service-orders",
    )
    assert settings.worker.consumer_group == "dds-service"
    assert settings.postgres.dbname == "de"
    assert load("cdm", {}).worker.destination_topic is None


def test_the_original_names_configure_production() -> None:
    settings = load(
        "stg",
        {
            "KAFKA_HOST": "rc1a.mdb.example",
            "KAFKA_PORT": "9091",
            "KAFKA_CONSUMER_USERNAME": "producer_consumer",
            "KAFKA_CONSUMER_PASSWORD": "secret",
            "KAFKA_CONSUMER_GROUP": "main-consumer-group",
            "KAFKA_SOURCE_TOPIC": "order-service_orders",
            "KAFKA_DESTINATION_TOPIC": "stg-service-orders",
            "REDIS_HOST": "redis.example",
            "REDIS_PORT": "6380",
            "REDIS_PASSWORD": "pw",
            "REDIS_SSL": "true",
            "PG_WAREHOUSE_HOST": "pg.example",
            "PG_WAREHOUSE_PORT": "6432",
            "PG_WAREHOUSE_DBNAME": "sprint9dwh",
            "PG_WAREHOUSE_USER": "db_user",
            "PG_WAREHOUSE_PASSWORD": "pw",
            "PG_WAREHOUSE_SSLMODE": "require",
        },
    )
    assert settings.kafka.bootstrap_servers == "rc1a.mdb.example:9091"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.client_config()["sasl.username"] == "producer_consumer"
    assert settings.redis.ssl
    assert settings.postgres.sslmode == "require"
    assert "secret" not in settings.kafka.describe()
    assert "pw" not in settings.postgres.describe()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DWH_BATCH_WAIT_MS": "0"}, "DWH_BATCH_WAIT_MS=0 is out of range"),
        ({"DWH_LOG_FORMAT": "xml"}, "DWH_LOG_FORMAT='xml' must be one of json, text"),
        ({"REDIS_SSL": "maybe"}, "REDIS_SSL='maybe' must be true or false"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load("stg", environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_instance_id_is_the_host_and_the_layer_unless_set() -> None:
    assert (
        load("stg", {"HOSTNAME": "dwh-stg-7f9c-x2b"}).worker.instance_id == "dwh-stg-7f9c-x2b-stg"
    )
    assert load("cdm", {"HOSTNAME": "box"}).worker.instance_id == "box-cdm"
    assert (
        load("dds", {"HOSTNAME": "box", "DWH_INSTANCE_ID": "dds-1"}).worker.instance_id == "dds-1"
    )
    assert load("dds", {"HOSTNAME": "my box!"}).worker.instance_id == "my-box--dds"


def test_an_instance_id_kafka_would_refuse_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^DWH_INSTANCE_ID='a b' must be 1 to 249"):
        load("stg", {"DWH_INSTANCE_ID": "a b"})


def test_the_session_timeout_reaches_the_consumer_with_a_heartbeat_a_third_of_it_at_most() -> None:
    settings = load("stg", {"DWH_SESSION_TIMEOUT_MS": "6000", "DWH_INSTANCE_ID": "stg-0"})
    membership = GroupMembership(settings.worker.instance_id, settings.worker.session_timeout_ms)
    assert membership.client_config() == {
        "group.instance.id": "stg-0",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
    }
    assert load("stg", {}).worker.session_timeout_ms == 30_000
    assert GroupMembership(None, 30_000).client_config()["heartbeat.interval.ms"] == 3000
    with pytest.raises(ConfigError, match="DWH_SESSION_TIMEOUT_MS=5000 is out of range"):
        load("stg", {"DWH_SESSION_TIMEOUT_MS": "5000"})
