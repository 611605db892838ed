"""Messages as the layers see them: what came in, what goes out, what is rejected."""

from __future__ import annotations

from attrs import field, frozen


@frozen
class InMessage:
    """One message read from a topic, with where it came from."""

    value: bytes | None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


@frozen
class OutMessage:
    """One message for a topic; between the layers it is keyed by the source user id
    (the order feed itself sends no key)."""

    key: bytes | None
    value: bytes


def _one_line(text: str) -> str:
    return " ".join(text.split())


@frozen
class DeadLetter:
    """A message that can never succeed as it is: the original, unchanged, with why.

    ``stage`` is the layer that rejected it (``stg``, ``dds``, ``cdm``); ``reason`` is one
    line. The original bytes go to ``<source topic>-dlq`` with these in headers.
    """

    message: InMessage
    stage: str
    reason: str = field(converter=_one_line)

    @property
    def topic(self) -> str:
        return dead_letter_topic(self.message.topic)


def dead_letter_topic(source_topic: str) -> str:
    return f"{source_topic}-dlq"
