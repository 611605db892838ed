from __future__ import annotations

import pytest

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
