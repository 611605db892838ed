"""How to reach the Kafka cluster (docs/CONTRACT.md §6): the broker list and its security;
and how a consumer is a member of its group."""

from __future__ import annotations

import re
from typing import Any

from attrs import field, frozen
from attrs.validators import in_

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@frozen
class KafkaSettings:
    """Connection settings shared by every client. SASL credentials are used only with a
    ``SASL_*`` protocol; the password never appears in ``repr`` or :meth:`describe`."""

    bootstrap_servers: str
    security_protocol: str = field(default="PLAINTEXT", validator=in_(SECURITY_PROTOCOLS))
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def client_config(self) -> dict[str, Any]:
        """The connection part of a confluent-kafka (librdkafka) configuration."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.username or ""
            config["sasl.password"] = self.password or ""
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config

    def describe(self) -> str:
        """One line for logs and health output, without the password."""
        parts = [self.bootstrap_servers, self.security_protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} user={self.username or '(none)'}")
        if self.ssl_ca_location:
            parts.append(f"ca={self.ssl_ca_location}")
        return " ".join(parts)


# Kafka's rules for a group.instance.id (the same as a topic name's).
INSTANCE_ID_PATTERN = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
MIN_SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms default
MAX_HEARTBEAT_INTERVAL_MS = 3_000


def valid_instance_id(value: str) -> bool:
    """Whether Kafka takes ``value`` as a ``group.instance.id``."""
    return bool(INSTANCE_ID_PATTERN.match(value)) and value not in {".", ".."}


def _instance_id(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None and not valid_instance_id(value):
        raise ValueError(f"group.instance.id {value!r} is not a valid Kafka instance id")


@frozen
class GroupMembership:
    """How a consumer is a member of its group.

    ``instance_id`` makes it a static member (KIP-345): when a member killed without
    leaving comes back with the same id within ``session_timeout_ms``, the broker hands
    it its partitions at once, without a rebalance; without an id it waits out the
    dead member's session first. A member that is really gone keeps its partitions
    unconsumed for ``session_timeout_ms`` either way. Two live consumers with the same
    id fence each other: the older one gets ``FENCED_INSTANCE_ID``."""

    instance_id: str | None = field(default=None, validator=_instance_id)
    session_timeout_ms: int = 30_000

    @property
    def heartbeat_interval_ms(self) -> int:
        """A third of the session at most, so that two lost heartbeats never expire it."""
        return min(MAX_HEARTBEAT_INTERVAL_MS, self.session_timeout_ms // 3)

    def client_config(self) -> dict[str, Any]:
        """The group part of a librdkafka consumer configuration."""
        config: dict[str, Any] = {
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
        }
        if self.instance_id:
            config["group.instance.id"] = self.instance_id
        return config
