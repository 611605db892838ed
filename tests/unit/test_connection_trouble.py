"""What librdkafka and redis-py say of a refused connection, turned into the cause and
the setting to check. The texts are those the clients gave against the secure stack."""

from __future__ import annotations

import pytest
import redis

from dwh_adapters.kafka import KafkaSettings, trouble
from dwh_adapters.redis import RedisSettings, explain

SASL = KafkaSettings(
    "127.0.0.1:9094", "SASL_SSL", "SCRAM-SHA-512", "dwh", "secret", "/etc/dwh/ca/ca.crt"
)
PREFIX = "sasl_ssl://127.0.0.1:9094/bootstrap: "


@pytest.mark.parametrize(
    ("settings", "text", "cause"),
    [
        (
            SASL,
            PREFIX + "SASL authentication error: Authentication failed during authentication "
            "due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 321ms in "
            "state AUTH_REQ)",
            "authentication failed: the broker refused user 'dwh' with SCRAM-SHA-512; check "
            "KAFKA_CONSUMER_USERNAME and KAFKA_CONSUMER_PASSWORD",
        ),
        (
            KafkaSettings("127.0.0.1:9094", "SASL_SSL", "SCRAM-SHA-256", "dwh", "secret"),
            PREFIX + "SASL SCRAM-SHA-256 mechanism handshake failed: Broker: Unsupported SASL "
            "mechanism: broker's supported mechanisms: SCRAM-SHA-512 (after 302ms in state "
            "AUTH_HANDSHAKE)",
            "the broker does not accept SASL mechanism SCRAM-SHA-256 (it accepts "
            "SCRAM-SHA-512); set KAFKA_SASL_MECHANISM",
        ),
        (
            SASL,
            PREFIX + "SSL handshake failed: error:0A000086:SSL routines::certificate verify "
            "failed: broker certificate could not be verified (after 5ms in state "
            "SSL_HANDSHAKE)",
            "the broker's TLS certificate could not be verified with the CA in "
            "KAFKA_SSL_CA_LOCATION=/etc/dwh/ca/ca.crt;",
        ),
        (
            KafkaSettings("127.0.0.1:9094", "SASL_SSL", username="dwh", password="x"),
            PREFIX + "SSL handshake failed: error:0A000086:SSL routines::certificate verify "
            "failed (after 5ms in state SSL_HANDSHAKE)",
            "with the system's CAs (KAFKA_SSL_CA_LOCATION is not set)",
        ),
        (
            SASL,
            "sasl_ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: SSL "
            "connection closed by peer: connecting to a PLAINTEXT broker listener? (after 4ms "
            "in state SSL_HANDSHAKE)",
            "the TLS handshake failed: the port speaks plaintext",
        ),
        (
            KafkaSettings("127.0.0.1:9094"),
            "127.0.0.1:9094/bootstrap: Disconnected: connection closed by peer: receive 0 "
            "after POLLIN (after 1ms in state APIVERSION_QUERY)",
            "the broker closed the connection at once: the port probably expects TLS "
            "(KAFKA_SECURITY_PROTOCOL=PLAINTEXT;",
        ),
        (
            SASL,
            PREFIX + "Connect to ipv4#127.0.0.1:9094 failed: Connection refused (after 0ms in "
            "state CONNECT)",
            "nothing listens at 127.0.0.1:9094 (connection refused)",
        ),
        (SASL, PREFIX + "Something new (after 3ms in state UP)", "Something new"),
    ],
    ids=[
        "password",
        "mechanism",
        "wrong-ca",
        "no-ca",
        "tls-on-plain",
        "plain-on-tls",
        "refused",
        "unknown",
    ],
)
def test_a_kafka_connection_failure_is_explained_with_the_setting_to_check(
    settings: KafkaSettings, text: str, cause: str
) -> None:
    explained = trouble.explain(settings, text)

    assert cause in explained
    assert "after" not in explained and "bootstrap" not in explained
    assert "secret" not in explained


def test_only_a_recent_failure_of_the_same_settings_is_the_cause() -> None:
    settings = KafkaSettings("127.0.0.1:19094", "SASL_SSL", username="u", password="p")
    other = KafkaSettings("127.0.0.1:19094", "SASL_SSL", username="u", password="q")
    trouble.record(settings, "x: Connect to ipv4#127.0.0.1:19094 failed: Connection refused")

    assert trouble.cause(settings) is not None
    assert trouble.cause(other) is None
    assert trouble.cause(settings, within_s=-1) is None


TLS = RedisSettings("127.0.0.1", 6380, "secret", ssl=True, ssl_ca_file="/etc/dwh/ca/ca.crt")


@pytest.mark.parametrize(
    ("settings", "error", "cause"),
    [
        (
            TLS,
            redis.AuthenticationError("invalid username-password pair or user is disabled."),
            "authentication failed: the server refused REDIS_PASSWORD",
        ),
        (
            TLS,
            redis.AuthenticationError("HELLO must be called with the client already authenticated"),
            "the server requires a password: set REDIS_PASSWORD",
        ),
        (
            TLS,
            redis.ConnectionError(
                "Error 1 connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] "
                "certificate verify failed: self-signed certificate in certificate chain"
            ),
            "could not be verified with the CA in REDIS_SSL_CA_FILE=/etc/dwh/ca/ca.crt",
        ),
        (
            RedisSettings("127.0.0.1", 6380),
            redis.ConnectionError(
                "Error while reading from 127.0.0.1:6380 : (104, 'Connection reset by peer')"
            ),
            "the port probably expects TLS (set REDIS_SSL=true and REDIS_SSL_CA_FILE)",
        ),
        (TLS, redis.TimeoutError("Timeout connecting to server"), "the port may speak plaintext"),
    ],
    ids=["password", "no-password", "wrong-ca", "plain-on-tls", "tls-on-plain"],
)
def test_a_redis_connection_failure_is_explained_with_the_setting_to_check(
    settings: RedisSettings, error: redis.RedisError, cause: str
) -> None:
    assert cause in (explain(settings, error) or "")


def test_a_redis_server_that_is_down_is_left_to_say_so_itself() -> None:
    error = redis.ConnectionError("Error 111 connecting to 127.0.0.1:6380. Connection refused.")

    assert explain(TLS, error) is None
