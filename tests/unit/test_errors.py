"""Which failures are a message's (dead-lettered) and which the world's (retried)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from dwh_workers.errors import is_transient


@pytest.mark.parametrize(
    "error",
    [
        errors.ProgramLimitExceeded("index row size 10016 exceeds btree maximum 2704"),
        errors.CharacterNotInRepertoire("invalid byte sequence for encoding UTF8: 0x00"),
        errors.NumericValueOutOfRange("integer out of range"),
        errors.UniqueViolation("duplicate key value"),
        ValueError("counter below zero"),
    ],
)
def test_a_failure_caused_by_a_messages_data_is_the_messages(error: Exception) -> None:
    assert not is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.InsufficientPrivilege("permission denied to create temporary tables"),
        errors.DiskFull("could not extend file"),
        psycopg.OperationalError("connection refused"),
        ConnectionError("Redis is down"),
    ],
)
def test_a_dependency_that_is_down_or_misconfigured_is_transient(error: Exception) -> None:
    assert is_transient(error)
