"""How to reach the Kafka cluster (CONTRACT.md §6): the broker list and its security."""

from __future__ import annotations

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
