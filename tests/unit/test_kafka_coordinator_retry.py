"""Offsets requests are asked again while a group's coordinator is not ready (a broker
that has just started answers NOT_COORDINATOR for a while); other errors are not."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from dwh_adapters.kafka import _clients
from dwh_adapters.kafka._clients import until_coordinator_ready


class Flaky:
    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return "answer"


def test_not_ready_coordinators_are_asked_again_until_they_answer() -> None:
    request = Flaky([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    assert until_coordinator_ready(request, "test") == "answer"
    assert request.calls == 3


def test_other_errors_are_raised_at_once() -> None:
    request = Flaky([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as raised:
        until_coordinator_ready(request, "test")
    assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert request.calls == 1


def test_a_coordinator_that_never_gets_ready_fails_with_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_clients, "COORDINATOR_WAIT_S", 0.2)
    request = Flaky([KafkaError.NOT_COORDINATOR] * 1000)
    with pytest.raises(KafkaException) as raised:
        until_coordinator_ready(request, "test")
    assert raised.value.args[0].code() == KafkaError.NOT_COORDINATOR
    assert 1 < request.calls < 1000


def test_no_wait_asks_once() -> None:
    request = Flaky([KafkaError.NOT_COORDINATOR])
    with pytest.raises(KafkaException):
        until_coordinator_ready(request, "test", wait_s=0)
    assert request.calls == 1
