"""Messages as the layers see them: what came in, what goes out, what is rejected."""

from __future__ import annotations

import re

from attrs import field, frozen


@frozen
class InMessage:
    """One message read from a topic, with where it came from."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    key: bytes | None = None  # the order service sends none


@frozen
class OutMessage:
    """One message for a topic; between the layers it is keyed by the source user id
    (the order feed itself sends no key)."""

    key: bytes | None
    value: bytes


def shorten(value: object, limit: int = 60) -> str:
    """``repr(value)`` in at most about ``limit`` characters: a longer one keeps its
    first ``limit`` characters and says how long the whole is (``'xxxx… (5,242,882
    characters)``), so that a reason quoting a huge value stays short."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


MAX_REASON = 500
"""The most characters a dead letter's reason has (at most 2,000 bytes of UTF-8), so
that a letter is never much larger than the message it carries."""
_WORD = re.compile(r"\S+")


def bounded_reason(text: str, limit: int = MAX_REASON) -> str:
    """``text`` as one line of at most ``limit`` characters: runs of whitespace become one
    space, and a longer text keeps its start and says how long the whole was."""
    words: list[str] = []
    length = -1
    # Word by word, and only as far as needed: a reason of megabytes is never split whole.
    for word in _WORD.finditer(text):
        words.append(word.group())
        length += len(words[-1]) + 1
        if length > limit:
            break
    line = " ".join(words)
    if len(line) <= limit:
        return line
    marker = f"… ({len(text):,} characters)"
    return line[: limit - len(marker)] + marker


@frozen
class DeadLetter:
    """A message that can never succeed as it is: the original, unchanged, with why.

    ``stage`` is the layer that rejected it (``stg``, ``dds``, ``cdm``); ``reason`` is one
    line of at most :data:`MAX_REASON` characters (:func:`bounded_reason`: a longer one
    is cut, whatever it quotes), so that the letter fits wherever its original fitted.
    The original bytes go to ``<source topic>-dlq`` with these in headers.
    """

    message: InMessage
    stage: str
    reason: str = field(converter=bounded_reason)

    @property
    def topic(self) -> str:
        return dead_letter_topic(self.message.topic)


DEAD_LETTER_SUFFIX = "-dlq"


def dead_letter_topic(source_topic: str) -> str:
    """Where the letters of ``source_topic`` go: ``<source topic>-dlq``."""
    return f"{source_topic}{DEAD_LETTER_SUFFIX}"


def source_of_dead_letters(topic: str) -> str | None:
    """The source topic whose dead letters ``topic`` holds (its name without ``-dlq``),
    or None if it is not a dead-letter topic."""
    if not topic.endswith(DEAD_LETTER_SUFFIX) or topic == DEAD_LETTER_SUFFIX:
        return None
    return topic.removesuffix(DEAD_LETTER_SUFFIX)
