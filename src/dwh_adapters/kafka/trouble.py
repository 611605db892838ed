"""Why a Kafka client cannot talk to the cluster, in words that say what to fix.

librdkafka retries connections on its own; a request that cannot reach a broker only
times out with "Broker transport failure". The cause (a refused password, a certificate
no trusted CA signed, TLS against a plaintext port) comes through the client's error
callback and log. Every client of ours records it here, per connection settings, and
:func:`explain` turns librdkafka's text into one line naming the setting to check.
"""

from __future__ import annotations

import re
import threading
import time

from confluent_kafka import KafkaError, KafkaException

from dwh_adapters.kafka.settings import KafkaSettings

RECENT_S = 60.0
_TIMING = re.compile(r"\s*\(after \d+ms in state \w+\)")
_BROKER = re.compile(r"^(?:\w+://)?[^\s/]+:\d+/(?:bootstrap|\d+): ")
_MECHANISMS = re.compile(r"broker's supported mechanisms: (\S[^()]*)")


class KafkaUnreachable(KafkaException):
    """The cluster did not answer; ``str()`` says why, or that it stayed silent."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Kafka did not answer"


_lock = threading.Lock()
_recent: dict[KafkaSettings, tuple[float, str]] = {}


def record(settings: KafkaSettings, text: str) -> None:
    """Keep what librdkafka said of a failed connection with these settings."""
    with _lock:
        _recent[settings] = (time.monotonic(), text)


def forget(settings: KafkaSettings) -> None:
    """The clients with these settings reached the cluster: what failed before is past."""
    with _lock:
        _recent.pop(settings, None)


def record_error(settings: KafkaSettings, error: KafkaError) -> None:
    """An error event of a client: "all brokers are down" says nothing new."""
    if error.code() != KafkaError._ALL_BROKERS_DOWN:
        record(settings, str(error.str()))


def cause(settings: KafkaSettings, within_s: float = RECENT_S) -> str | None:
    """Why the clients with these settings last failed to connect, explained, if they did
    within the last ``within_s`` seconds."""
    with _lock:
        found = _recent.get(settings)
    if found is None or time.monotonic() - found[0] > within_s:
        return None
    return explain(settings, found[1])


def explain(settings: KafkaSettings, text: str) -> str:
    """librdkafka's text of a connection failure as the cause and the setting to check.
    Text it does not know is returned as it is, without the broker prefix and timing."""
    bare = _BROKER.sub("", _TIMING.sub("", text).strip())
    if "invalid credentials" in bare:
        return (
            f"authentication failed: the broker refused user {settings.username!r} with "
            f"{settings.sasl_mechanism}; check KAFKA_CONSUMER_USERNAME and "
            "KAFKA_CONSUMER_PASSWORD"
        )
    if mechanisms := _MECHANISMS.search(bare):
        return (
            f"the broker does not accept SASL mechanism {settings.sasl_mechanism} (it "
            f"accepts {mechanisms[1].strip()}); set KAFKA_SASL_MECHANISM"
        )
    if "certificate verify failed" in bare:
        trusted = (
            f"the CA in KAFKA_SSL_CA_LOCATION={settings.ssl_ca_location}"
            if settings.ssl_ca_location
            else "the system's CAs (KAFKA_SSL_CA_LOCATION is not set)"
        )
        return (
            f"the broker's TLS certificate could not be verified with {trusted}; point "
            "KAFKA_SSL_CA_LOCATION at the CA that signed it (and check that the certificate "
            "holds the host name in KAFKA_HOST)"
        )
    if "connecting to a PLAINTEXT broker listener" in bare:
        return (
            "the TLS handshake failed: the port speaks plaintext; check KAFKA_PORT and "
            "KAFKA_SECURITY_PROTOCOL"
        )
    if (
        "Disconnected" in bare
        and "APIVERSION_QUERY" in text
        and not settings.security_protocol.endswith("SSL")
    ):
        return (
            f"the broker closed the connection at once: the port probably expects TLS "
            f"(KAFKA_SECURITY_PROTOCOL={settings.security_protocol}; production is SASL_SSL "
            "with KAFKA_SSL_CA_LOCATION)"
        )
    if "Connection refused" in bare:
        return (
            f"nothing listens at {settings.bootstrap_servers} (connection refused); check "
            "KAFKA_HOST and KAFKA_PORT"
        )
    return bare
