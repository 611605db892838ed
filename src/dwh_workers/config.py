"""Settings from the environment: the one place configuration is read.

The names are those of docs/CONTRACT.md §6 (the original services' names) plus ``DWH_*``
names of ours; docs/configuration.md lists every one with its default. A bad or
missing value raises :class:`ConfigError` whose message names the variable, and the
worker prints that one line and exits.

A security setting is never dropped silently: credentials, a CA file or a root
certificate that the chosen protocol or mode would not use is a :class:`ConfigError`
naming both variables. What is allowed but unverified on the network (plain text, or
TLS that does not check both the server's certificate and its host name, to a host
other than the loopback) is listed by
:func:`insecure_connections`, which a worker logs as one warning at start.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Mapping
from importlib.resources import files

from attrs import frozen

from dwh_adapters.kafka import KafkaSettings
from dwh_adapters.kafka.settings import MIN_SESSION_TIMEOUT_MS, valid_instance_id
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.redis import RedisSettings
from dwh_workers.topology import LAYERS

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PG_MAY_SKIP_TLS = ("disable", "allow", "prefer")  # sslmodes that may end in plain text
# The one sslmode that is verified TLS: verify-ca (and require with a root certificate)
# checks the chain against the CA but not the host name, so any certificate that CA
# signed, for whatever host, passes.
PG_VERIFIED_MODE = "verify-full"
LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """A setting is missing or invalid; ``str()`` is one line naming it."""


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
    # The user tags (CDM): the rules file, and how often rules with a window are swept.
    tag_rules: str = ""
    tag_sweep_interval_s: float = 60.0


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
        "KAFKA_SECURITY_PROTOCOL",
        "SASL_SSL" if username or password else "PLAINTEXT",
        SECURITY_PROTOCOLS,
    )
    if protocol.startswith("SASL"):
        if not (username and password):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_CONSUMER_USERNAME and "
                "KAFKA_CONSUMER_PASSWORD"
            )
    elif username or password:
        # Without SASL librdkafka never sends the credentials: the worker would connect
        # anonymously (and, under PLAINTEXT, unencrypted) to a cluster its operator
        # meant it to log in to. Refused, rather than dropped silently.
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} would ignore KAFKA_CONSUMER_USERNAME and "
            "KAFKA_CONSUMER_PASSWORD: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) "
            "to log in with them, or unset them"
        )
    ca_location = env.existing_file("KAFKA_SSL_CA_LOCATION")
    if ca_location and protocol not in TLS_PROTOCOLS:
        # A CA names the brokers to trust; without TLS nothing is verified and the
        # connection is plain text: an error, not a CA silently unused.
        raise ConfigError(
            f"KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no "
            "TLS: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL), or unset KAFKA_SSL_CA_LOCATION"
        )
    servers = host if ":" in host else f"{host}:{port}"
    return KafkaSettings(
        bootstrap_servers=servers,
        security_protocol=protocol,
        sasl_mechanism=env.required("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        username=username,
        password=password,
        ssl_ca_location=ca_location,
    )


def redis_settings(env: _Env) -> RedisSettings:
    ssl = env.flag("REDIS_SSL", False)
    ca_file = env.existing_file("REDIS_SSL_CA_FILE")
    if ca_file and not ssl:
        # redis-py ignores the CA without ssl and talks plain text. An error, and TLS is
        # not switched on by the CA alone either: REDIS_SSL's default is false (the local
        # stack), and a CA with the plain port would fail later with an obscure TLS error.
        raise ConfigError(
            "REDIS_SSL_CA_FILE is set but REDIS_SSL is false, so the CA would be unused and "
            "the connection plain text: set REDIS_SSL=true (the TLS port, usually 6380), or "
            "unset REDIS_SSL_CA_FILE"
        )
    return RedisSettings(
        host=env.required("REDIS_HOST", "127.0.0.1"),
        port=env.integer("REDIS_PORT", 6379, 1, 65535),
        password=env.text("REDIS_PASSWORD"),
        ssl=ssl,
        ssl_ca_file=ca_file,
    )


def postgres_settings(env: _Env) -> PgSettings:
    sslmode = env.choice("PG_WAREHOUSE_SSLMODE", "prefer", SSL_MODES)
    rootcert = env.existing_file("PG_WAREHOUSE_SSLROOTCERT")
    if rootcert and sslmode in PG_MAY_SKIP_TLS:
        # disable never uses TLS; allow and prefer fall back to plain text when the server
        # (or a man in the middle) offers no TLS: the CA would be ignored, or bypassed by a
        # downgrade. With require the CA is not ignored: libpq then checks the server's
        # chain against it (as verify-ca, documented), so that is accepted; its host name
        # is not checked, which the insecure-connections warning names.
        raise ConfigError(
            f"PG_WAREHOUSE_SSLROOTCERT is set but PG_WAREHOUSE_SSLMODE={sslmode} may connect "
            "without TLS and never use it: set PG_WAREHOUSE_SSLMODE=verify-full (or "
            "verify-ca), or unset PG_WAREHOUSE_SSLROOTCERT"
        )
    return PgSettings(
        host=env.required("PG_WAREHOUSE_HOST", "127.0.0.1"),
        port=env.integer("PG_WAREHOUSE_PORT", 5432, 1, 65535),
        dbname=env.required("PG_WAREHOUSE_DBNAME", "de"),
        user=env.required("PG_WAREHOUSE_USER", "dwh"),
        password=env.required("PG_WAREHOUSE_PASSWORD", "dwh"),
        sslmode=sslmode,
        sslrootcert=rootcert,
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
        tag_rules=env.existing_file("DWH_TAG_RULES") or default_tag_rules(),
        tag_sweep_interval_s=env.integer("DWH_TAG_SWEEP_INTERVAL_S", 60, 1, 86_400),
    )


def default_tag_rules() -> str:
    """The rules file that ships with the workers (``dwh_workers/tag_rules.toml``)."""
    return str(files("dwh_workers").joinpath("tag_rules.toml"))


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback: ``localhost``, 127.0.0.0/8 or ::1. No name is resolved. A path
    (a PostgreSQL Unix socket directory) is local too."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.startswith(("/", "@")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _kafka_hosts(bootstrap_servers: str) -> list[str]:
    """The hosts of a librdkafka broker list: ``[proto://]host[:port]``, comma-separated."""
    hosts = []
    for entry in bootstrap_servers.split(","):
        server = entry.strip().rpartition("://")[2]
        if server.startswith("["):  # [::1]:9092
            hosts.append(server[1:].partition("]")[0])
        elif server.count(":") == 1:  # host:port
            hosts.append(server.partition(":")[0])
        else:  # a bare host, or a bare IPv6 address
            hosts.append(server)
    return [host for host in hosts if host]


def insecure_connections(settings: Settings | Services) -> list[str]:
    """One short text per service reached without verified TLS on a host other than
    this machine's loopback (``localhost``, 127.0.0.0/8, ::1): Kafka over a protocol
    without SSL, Redis without TLS, PostgreSQL with an sslmode other than verify-full
    (verify-ca, and require with a root certificate, check the CA but not the host
    name). Empty when every connection is verified or local. Pure: nothing is
    resolved or connected."""
    found = []
    kafka = settings.kafka
    remote = [h for h in _kafka_hosts(kafka.bootstrap_servers) if not is_loopback(h)]
    if remote and kafka.security_protocol not in TLS_PROTOCOLS:
        found.append(f"Kafka {','.join(remote)} over {kafka.security_protocol}, without TLS")
    redis = settings.redis
    if not redis.ssl and not is_loopback(redis.host):
        found.append(f"Redis {redis.host}:{redis.port} without TLS")
    postgres = settings.postgres
    remote = [h for h in postgres.host.split(",") if h and not is_loopback(h)]
    if remote and postgres.sslmode != PG_VERIFIED_MODE:
        ca_checked = postgres.sslmode == "verify-ca" or (
            postgres.sslmode == "require" and bool(postgres.sslrootcert)
        )
        unverified = (
            "the CA checked, not the host name" if ca_checked else "the server not verified"
        )
        found.append(f"PostgreSQL {','.join(remote)} with sslmode={postgres.sslmode}, {unverified}")
    return found
