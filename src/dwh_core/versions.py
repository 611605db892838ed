"""Which of two versions of one order is the newer: the rule every layer applies.

A version is newer when its ``update_ts`` is greater. Two versions with the **same**
``update_ts`` and different content are told apart by a tie-break, so that every layer
picks the same winner whatever the order of arrival, and a rebuild from scratch equals
the incremental result (docs/CONTRACT.md §7):

1. the later final status in the lifecycle wins:
   OPEN < COOKING < DELIVERING < CLOSED < CANCELLED (any other status ranks below OPEN);
2. then the greater **content hash**: the MD5 digest, compared as bytes, of the order
   message's bytes exactly as received.

The bytes, not a re-serialisation of what was parsed: they are what the warehouse
stores, they hold every number exactly (a JSON parser may turn a 20-digit integer into
a float), and hashing them cannot fail however deep the document is nested. A replay
has the same bytes, so it is never a tie; two messages with the same content written
differently (other key order or escaping) are a tie whose winner has that same content,
so the result is the same whichever wins. The STG layer computes the content hash and
passes it on (field ``content_hash``, 32 hex digits), so DDS and CDM apply the same
rule without the original message. The tie-break is stored as bytes (one rank byte,
then the 16 digest bytes), which PostgreSQL's ``bytea`` orders exactly as Python orders
``bytes``.

This rule is a compatibility promise, like :mod:`dwh_core.hashing`: never change it
silently.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from attrs import frozen

LIFECYCLE = ("OPEN", "COOKING", "DELIVERING", "CLOSED", "CANCELLED")
_RANK = {status: rank for rank, status in enumerate(LIFECYCLE, start=1)}


def content_hash(message: bytes) -> str:
    """The MD5 of a message's bytes, as 32 hex digits."""
    return hashlib.md5(message, usedforsecurity=False).hexdigest()


def tiebreak(status: str, content_hash: str) -> bytes:
    """What decides between two versions with the same ``update_ts``: the greater wins.

    A ``content_hash`` that is not hex (or empty, from a producer that predates it)
    counts as no digest at all, so it loses to every version with one."""
    try:
        digest = bytes.fromhex(content_hash)
    except ValueError:
        digest = b""
    return bytes((_RANK.get(status, 0),)) + digest


@frozen(order=True)
class Version:
    """The position of one order version: compare two with ``<`` and ``>``."""

    update_ts: datetime
    tiebreak: bytes
