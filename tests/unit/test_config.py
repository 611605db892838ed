from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dwh_adapters.kafka.settings import GroupMembership
from dwh_workers import app
from dwh_workers.config import ConfigError, insecure_connections, is_loopback, load, services


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
    assert load("cdm", {}).worker.destination_topic == "cdm-service-user-tags"


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
        ({"DWH_TAG_RULES": "/no/rules.toml"}, "DWH_TAG_RULES='/no/rules.toml': no such file"),
        ({"DWH_TAG_SWEEP_INTERVAL_S": "0"}, "DWH_TAG_SWEEP_INTERVAL_S=0 is out of range"),
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


# --------------------------------------------------------------------------- security


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load("stg", environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


CREDENTIALS = {"KAFKA_CONSUMER_USERNAME": "dwh", "KAFKA_CONSUMER_PASSWORD": "pw"}


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
@pytest.mark.parametrize(
    "credentials",
    [CREDENTIALS, {"KAFKA_CONSUMER_USERNAME": "dwh"}, {"KAFKA_CONSUMER_PASSWORD": "pw"}],
    ids=["both", "user", "password"],
)
def test_kafka_credentials_a_protocol_without_sasl_would_drop_are_an_error(
    protocol: str, credentials: dict[str, str]
) -> None:
    message = config_error({"KAFKA_SECURITY_PROTOCOL": protocol, **credentials})
    assert message.startswith(f"KAFKA_SECURITY_PROTOCOL={protocol} would ignore ")
    assert "KAFKA_CONSUMER_USERNAME and KAFKA_CONSUMER_PASSWORD" in message
    assert "set KAFKA_SECURITY_PROTOCOL=SASL_SSL" in message


def test_kafka_credentials_choose_sasl_ssl_unless_a_sasl_protocol_is_given() -> None:
    assert load("stg", CREDENTIALS).kafka.security_protocol == "SASL_SSL"
    explicit = load("stg", {**CREDENTIALS, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert explicit.kafka.client_config()["sasl.username"] == "dwh"
    # A password alone asks for SASL too, and SASL then wants the user.
    assert config_error({"KAFKA_CONSUMER_PASSWORD": "pw"}).startswith(
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_CONSUMER_USERNAME"
    )


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_a_kafka_ca_without_tls_is_an_error(protocol: str, ca_file: str) -> None:
    environ = {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SSL_CA_LOCATION": ca_file}
    if protocol.startswith("SASL"):
        environ |= CREDENTIALS
    message = config_error(environ)
    assert message.startswith(
        f"KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS"
    )
    tls = {"KAFKA_SSL_CA_LOCATION": ca_file, "KAFKA_SECURITY_PROTOCOL": "SSL"}
    assert load("stg", tls).kafka.client_config()["ssl.ca.location"] == ca_file
    sasl_ssl = tls | CREDENTIALS | {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    assert load("stg", sasl_ssl).kafka.ssl_ca_location == ca_file


@pytest.mark.parametrize("ssl", [None, "false", "0"])
def test_a_redis_ca_without_redis_ssl_is_an_error(ssl: str | None, ca_file: str) -> None:
    environ = {"REDIS_SSL_CA_FILE": ca_file} | ({"REDIS_SSL": ssl} if ssl else {})
    message = config_error(environ)
    assert message.startswith("REDIS_SSL_CA_FILE is set but REDIS_SSL is false")
    assert "set REDIS_SSL=true" in message
    redis = load("stg", environ | {"REDIS_SSL": "true"}).redis
    assert (redis.ssl, redis.ssl_ca_file) == (True, ca_file)


@pytest.mark.parametrize("sslmode", ["disable", "allow", "prefer"])
def test_a_postgres_root_cert_with_a_mode_that_may_skip_tls_is_an_error(
    sslmode: str, ca_file: str
) -> None:
    message = config_error({"PG_WAREHOUSE_SSLMODE": sslmode, "PG_WAREHOUSE_SSLROOTCERT": ca_file})
    assert message.startswith(
        f"PG_WAREHOUSE_SSLROOTCERT is set but PG_WAREHOUSE_SSLMODE={sslmode} may connect "
        "without TLS"
    )
    assert "set PG_WAREHOUSE_SSLMODE=verify-full" in message
    # Without a root certificate those modes are the user's choice (and warned about).
    assert load("stg", {"PG_WAREHOUSE_SSLMODE": sslmode}).postgres.sslmode == sslmode


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_postgres_root_cert_is_used_by_require_and_the_verifying_modes(
    sslmode: str, ca_file: str
) -> None:
    # libpq checks the chain against the root certificate under require too.
    postgres = load(
        "stg", {"PG_WAREHOUSE_SSLMODE": sslmode, "PG_WAREHOUSE_SSLROOTCERT": ca_file}
    ).postgres
    assert (postgres.sslmode, postgres.sslrootcert) == (sslmode, ca_file)
    assert f"sslrootcert={ca_file}" in postgres.conninfo()


def test_a_postgres_root_cert_must_exist() -> None:
    assert config_error({"PG_WAREHOUSE_SSLROOTCERT": "/no/such/ca.crt"}).startswith(
        "PG_WAREHOUSE_SSLROOTCERT='/no/such/ca.crt': no such file"
    )


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["kafka", "10.0.0.1", "128.0.0.1", "::2", "localhost.example.net", "0.0.0.0"]
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


REMOTE_PLAIN = {
    "KAFKA_HOST": "kafka",
    "REDIS_HOST": "redis.example.net",
    "PG_WAREHOUSE_HOST": "10.1.2.3",
}


def test_local_defaults_and_verified_tls_are_not_insecure(ca_file: str) -> None:
    assert insecure_connections(load("stg", {})) == []
    assert insecure_connections(services({"PG_WAREHOUSE_SSLMODE": "disable"})) == []
    secure = {
        "KAFKA_HOST": "rc1a.example.net:9091,rc1b.example.net:9091",
        **CREDENTIALS,
        "KAFKA_SSL_CA_LOCATION": ca_file,
        "REDIS_HOST": "redis.example.net",
        "REDIS_PORT": "6380",
        "REDIS_SSL": "true",
        "PG_WAREHOUSE_HOST": "pg.example.net",
        "PG_WAREHOUSE_SSLMODE": "verify-full",
    }
    assert insecure_connections(load("cdm", secure)) == []
    assert insecure_connections(services(secure | {"PG_WAREHOUSE_SSLROOTCERT": ca_file})) == []


def test_each_unverified_remote_connection_is_one_text() -> None:
    assert insecure_connections(load("stg", REMOTE_PLAIN)) == [
        "Kafka kafka over PLAINTEXT, without TLS",
        "Redis redis.example.net:6379 without TLS",
        "PostgreSQL 10.1.2.3 with sslmode=prefer, the server not verified",
    ]
    sasl = load(
        "stg",
        {
            "KAFKA_HOST": "127.0.0.1:9092,broker-2:9092,[::1]:9093",
            **CREDENTIALS,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        },
    )
    assert insecure_connections(sasl) == ["Kafka broker-2 over SASL_PLAINTEXT, without TLS"]


def test_postgres_require_and_verify_ca_are_named_with_what_they_check(ca_file: str) -> None:
    # Only verify-full checks the host name: require with a root certificate and
    # verify-ca check the chain alone, and are warned about alike.
    remote = {"PG_WAREHOUSE_HOST": "pg.example.net", "PG_WAREHOUSE_SSLMODE": "require"}
    assert insecure_connections(services(remote)) == [
        "PostgreSQL pg.example.net with sslmode=require, the server not verified"
    ]
    with_ca = services(remote | {"PG_WAREHOUSE_SSLROOTCERT": ca_file})
    assert insecure_connections(with_ca) == [
        "PostgreSQL pg.example.net with sslmode=require, the CA checked, not the host name"
    ]
    for rootcert in ({}, {"PG_WAREHOUSE_SSLROOTCERT": ca_file}):
        verify_ca = services(remote | {"PG_WAREHOUSE_SSLMODE": "verify-ca", **rootcert})
        assert insecure_connections(verify_ca) == [
            "PostgreSQL pg.example.net with sslmode=verify-ca, the CA checked, not the host name"
        ]
    verify_full = services(remote | {"PG_WAREHOUSE_SSLMODE": "verify-full"})
    assert insecure_connections(verify_full) == []
    socket_dir = services({"PG_WAREHOUSE_HOST": "/var/run/postgresql"})
    assert insecure_connections(socket_dir) == []


class _Stop(Exception):
    pass


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _start_until_the_container(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DWH_LOG_FORMAT", "text")

    def stop(**_: object) -> None:
        raise _Stop

    monkeypatch.setattr(app, "CONTAINERS", {"stg": stop})
    with pytest.raises(_Stop):
        app.main("stg")


@pytest.mark.usefixtures("restored_logging")
def test_a_worker_warns_once_at_start_about_unverified_remote_connections(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _start_until_the_container(monkeypatch, REMOTE_PLAIN)
    lines = capsys.readouterr().err.splitlines()
    (warning,) = [line for line in lines if "WARNING" in line]
    assert "connections without verified TLS to a remote host: " in warning
    assert "Kafka kafka over PLAINTEXT" in warning
    assert "Redis redis.example.net:6379 without TLS" in warning
    assert "PostgreSQL 10.1.2.3 with sslmode=prefer" in warning


@pytest.mark.usefixtures("restored_logging")
def test_a_worker_on_the_local_stack_does_not_warn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*REMOTE_PLAIN, "KAFKA_SECURITY_PROTOCOL", "REDIS_SSL", "PG_WAREHOUSE_SSLMODE"):
        monkeypatch.delenv(name, raising=False)
    _start_until_the_container(monkeypatch, {"KAFKA_HOST": "localhost"})
    assert "WARNING" not in capsys.readouterr().err
