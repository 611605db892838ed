"""Settings from the environment: the one place configuration is read.

The names are those of CONTRACT.md §6 (the original services' names) plus ``DWH_*``
names of ours; docs/configuration.md lists every one with its default. A bad or
missing value raises :class:`ConfigError` whose message names the variable, and the
worker prints that one line and exits.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping

from attrs import frozen

from dwh_adapters.kafka import KafkaSettings
from dwh_adapters.kafka.settings import MIN_SESSION_TIMEOUT_MS, valid_instance_id
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.redis import RedisSettings

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """A setting is missing or invalid; ``str()`` is one line naming it."""


@frozen
class Layer:
    """A layer's defaults: what it reads, what it writes, its consumer group."""

    name: str
    source_topic: str
    destination_topic: str | None
    consumer_group: str


LAYERS = {
    "stg": Layer("stg", "order-service_orders", "stg-service-orders", "stg-service"),
    "dds": Layer("dds", "stg-service-orders", "dds-service-orders", "dds-service"),
    "cdm": Layer("cdm", "dds-service-orders", None, "cdm-service"),
}


@frozen
class WorkerSettings:
    layer: str
    source_topic: str
    destination_topic: str | None
    consumer_group: str
    instance_id: str
    session_timeout_ms: int
    batch_size: int
    batch_wait_s: float
    http_port: int
    log_format: str
    log_level: str


@frozen
class Settings:
    kafka: KafkaSettings
    redis: RedisSettings
    postgres: PgSettings
    worker: WorkerSettings


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or default

    def required(self, name: str, default: str) -> str:
        value = self.text(name, default)
        assert value is not None
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.required(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is out of range ({low}..{high})")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.required(name, default)
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.required(name, "true" if default else "false").lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name}={raw!r} must be true or false")
        return raw in ("true", "1", "yes")

    def existing_file(self, name: str) -> str | None:
        path = self.text(name)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{name}={path!r}: no such file")
        return path


def kafka_settings(env: _Env) -> KafkaSettings:
    host = env.required("KAFKA_HOST", "127.0.0.1")
    port = env.integer("KAFKA_PORT", 9092, 1, 65535)
    username = env.text("KAFKA_CONSUMER_USERNAME")
    password = env.text("KAFKA_CONSUMER_PASSWORD")
    protocol = env.choice(
        "KAFKA_SECURITY_PROTOCOL", "SASL_SSL" if username else "PLAINTEXT", SECURITY_PROTOCOLS
    )
    if protocol.startswith("SASL") and not (username and password):
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_CONSUMER_USERNAME and "
            "KAFKA_CONSUMER_PASSWORD"
        )
    servers = host if ":" in host else f"{host}:{port}"
    return KafkaSettings(
        bootstrap_servers=servers,
        security_protocol=protocol,
        sasl_mechanism=env.required("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        username=username,
        password=password,
        ssl_ca_location=env.existing_file("KAFKA_SSL_CA_LOCATION"),
    )


def redis_settings(env: _Env) -> RedisSettings:
    return RedisSettings(
        host=env.required("REDIS_HOST", "127.0.0.1"),
        port=env.integer("REDIS_PORT", 6379, 1, 65535),
        password=env.text("REDIS_PASSWORD"),
        ssl=env.flag("REDIS_SSL", False),
        ssl_ca_file=env.existing_file("REDIS_SSL_CA_FILE"),
    )


def postgres_settings(env: _Env) -> PgSettings:
    return PgSettings(
        host=env.required("PG_WAREHOUSE_HOST", "127.0.0.1"),
        port=env.integer("PG_WAREHOUSE_PORT", 5432, 1, 65535),
        dbname=env.required("PG_WAREHOUSE_DBNAME", "de"),
        user=env.required("PG_WAREHOUSE_USER", "dwh"),
        password=env.required("PG_WAREHOUSE_PASSWORD", "dwh"),
        sslmode=env.choice("PG_WAREHOUSE_SSLMODE", "prefer", SSL_MODES),
        sslrootcert=env.existing_file("PG_WAREHOUSE_SSLROOTCERT"),
    )


def default_instance_id(env: _Env, layer: str) -> str:
    """``<host>-<layer>``: the host name (a pod's name in Kubernetes) survives a crash
    and a restart in place, and differs between pods; the layer keeps the three workers
    of one host apart. Characters Kafka refuses become ``-``."""
    host = env.text("HOSTNAME") or socket.gethostname() or "localhost"
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{host}-{layer}")[-249:]


def instance_id(env: _Env, layer: str) -> str:
    value = env.required("DWH_INSTANCE_ID", default_instance_id(env, layer))
    if not valid_instance_id(value):
        raise ConfigError(
            f"DWH_INSTANCE_ID={value!r} must be 1 to 249 of the characters a-z A-Z 0-9 . _ -"
        )
    return value


def worker_settings(env: _Env, layer_name: str) -> WorkerSettings:
    layer = LAYERS[layer_name]
    return WorkerSettings(
        layer=layer.name,
        source_topic=env.required("KAFKA_SOURCE_TOPIC", layer.source_topic),
        destination_topic=env.text("KAFKA_DESTINATION_TOPIC", layer.destination_topic),
        consumer_group=env.required("KAFKA_CONSUMER_GROUP", layer.consumer_group),
        instance_id=instance_id(env, layer.name),
        session_timeout_ms=env.integer(
            "DWH_SESSION_TIMEOUT_MS", 30_000, MIN_SESSION_TIMEOUT_MS, 300_000
        ),
        batch_size=env.integer("DWH_BATCH_SIZE", 2000, 1, 100_000),
        batch_wait_s=env.integer("DWH_BATCH_WAIT_MS", 200, 1, 60_000) / 1000,
        http_port=env.integer("DWH_HTTP_PORT", 8000, 0, 65535),
        log_format=env.choice(
            "DWH_LOG_FORMAT", "text" if sys.stderr.isatty() else "json", LOG_FORMATS
        ),
        log_level=env.choice("DWH_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )


@frozen
class Services:
    kafka: KafkaSettings
    redis: RedisSettings
    postgres: PgSettings


def services(environ: Mapping[str, str] | None = None) -> Services:
    """The connection settings alone, for the ``dwh`` command."""
    env = _Env(os.environ if environ is None else environ)
    return Services(kafka_settings(env), redis_settings(env), postgres_settings(env))


def load(layer: str, environ: Mapping[str, str] | None = None) -> Settings:
    """All settings of a worker of ``layer`` (``stg``, ``dds``, ``cdm``)."""
    env = _Env(os.environ if environ is None else environ)
    return Settings(
        kafka=kafka_settings(env),
        redis=redis_settings(env),
        postgres=postgres_settings(env),
        worker=worker_settings(env, layer),
    )
