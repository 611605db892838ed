"""The dictionaries (docs/CONTRACT.md §1.2) in Redis: one key space of users and restaurants,
each value the entity's JSON as stored."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

import redis
from attrs import field, frozen
from redis.backoff import NoBackoff
from redis.retry import Retry

from dwh_adapters.lifecycle import Closeable

_TIMEOUT_S = 5.0


@frozen
class RedisSettings:
    """Where the dictionaries are; production listens with TLS (port 6380, a CA file, a
    password). The password never appears in ``repr`` or :meth:`describe`."""

    host: str
    port: int
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_file: str | None = None

    def describe(self) -> str:
        parts = [f"{self.host}:{self.port}", "tls" if self.ssl else "plain"]
        if self.ssl_ca_file:
            parts.append(f"ca={self.ssl_ca_file}")
        if self.password:
            parts.append("password=***")
        return " ".join(parts)

    def client(self) -> redis.Redis:
        """A new client; it connects on its first command. Values come back as bytes."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            ssl=self.ssl,
            ssl_ca_certs=self.ssl_ca_file,
            # The default since redis-py 6; said here so that an older one checks it too.
            ssl_check_hostname=self.ssl,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
        )


class _RedisClient(Closeable):
    """A lazily created client, closed by ``close()`` or at the end of a ``with``."""

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._redis: redis.Redis | None = None

    def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            client.close()

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = self._settings.client()
        return self._redis


class RedisDictionaryReader(_RedisClient):
    """:class:`~dwh_core.ports.DictionaryReader` on Redis: one ``MGET`` per batch.
    Connection errors propagate (the worker retries the batch)."""

    def fetch(self, ids: Collection[str]) -> Mapping[str, bytes]:
        """The raw value of each id that exists; absent ids are left out."""
        keys = sorted(ids)
        if not keys:
            return {}
        values = self._client().mget(keys)
        return {
            key: _as_bytes(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }


class RedisDictionaryScanner(_RedisClient):
    """For ``dwh tags check``: every entry of the key space, ``SCAN`` by ``SCAN``."""

    CHUNK = 500

    def values(self) -> Iterator[bytes]:
        client = self._client()
        keys = list(client.scan_iter(count=self.CHUNK))
        for start in range(0, len(keys), self.CHUNK):
            for value in client.mget(keys[start : start + self.CHUNK]):
                if value is not None:
                    yield _as_bytes(value)


class RedisDictionaryWriter(_RedisClient):
    """For the dictionary loader: writes entries as given, in one ``MSET``."""

    def put_many(self, entries: Mapping[str, bytes]) -> None:
        if entries:
            self._client().mset(dict(entries))


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


class RedisProbe(_RedisClient):
    """``PING`` on a client of the probe's own, for a worker's readiness; redis-py
    reconnects on the next one. One attempt: redis-py's default retries would take 4 s
    to tell (measured)."""

    def check(self) -> None:
        """Raise unless Redis answers; :class:`RedisUnreachable` when the cause is one a
        setting can fix."""
        if self._redis is None:
            self._client().set_retry(Retry(NoBackoff(), 0))
        try:
            self._client().ping()
        except redis.RedisError as exc:
            why = explain(self._settings, exc)
            if why is None:
                raise
            raise RedisUnreachable(f"{self._settings.describe()}: {why}") from exc


class RedisUnreachable(redis.ConnectionError):
    """Redis refused us for a reason a setting can fix; ``str()`` names it."""


def explain(settings: RedisSettings, exc: BaseException) -> str | None:
    """What to fix when ``exc`` comes from a wrong password, CA or TLS setting; None for
    other errors (a server that is down says so itself)."""
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) and "invalid" in text:
        return "authentication failed: the server refused REDIS_PASSWORD"
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text:
        return "the server requires a password: set REDIS_PASSWORD"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        trusted = (
            f"the CA in REDIS_SSL_CA_FILE={settings.ssl_ca_file}"
            if settings.ssl_ca_file
            else "the system's CAs (REDIS_SSL_CA_FILE is not set)"
        )
        return (
            f"its TLS certificate could not be verified with {trusted}; point "
            "REDIS_SSL_CA_FILE at the CA that signed it (and check that the certificate "
            "holds the host name in REDIS_HOST)"
        )
    if not settings.ssl and ("reset by peer" in text or "Connection closed by server" in text):
        return (
            "the server closed the connection at once: the port probably expects TLS "
            "(set REDIS_SSL=true and REDIS_SSL_CA_FILE)"
        )
    if settings.ssl and isinstance(exc, redis.TimeoutError):
        return (
            f"no answer to the TLS handshake within {_TIMEOUT_S:g}s: the port may speak "
            "plaintext (check REDIS_PORT and REDIS_SSL)"
        )
    return None
