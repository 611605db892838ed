"""Claims: locking keys that may not have a row yet, for the vault and counter stores.

``SELECT ... FOR UPDATE`` locks only rows that exist, so two replicas reading a key that
has no row yet (no satellite state, no ledger entry) would both take it for new: two
satellite rows for one change, an order counted twice. A transaction therefore claims
such keys first, in one transaction with the batch that writes them:

1. **Claim.** One ``INSERT`` of a placeholder row per key that needs it, in key
   order, ``ON CONFLICT DO NOTHING``. A key that already has a committed row inserts
   nothing. A key that another transaction has just inserted (its placeholder or its
   real row, not yet committed) makes this insert wait on the primary key until that
   transaction ends, then it inserts nothing if that transaction committed a row for
   the key, else its own placeholder (the other rolled back, or released its claim
   unsaved).
2. **Lock.** One ``SELECT ... ORDER BY key FOR UPDATE`` of every key of the batch, the
   unclaimed ones too: the transaction now holds the row lock of each key that has a
   row, and waits for any other transaction holding one. Rows whose version is NULL are
   its own placeholders (no input has a NULL version: every timestamp, even 0001-01-01,
   is a real one); they are remembered and left out of the answer, so the caller sees
   only real rows.
3. **Write.** The store writes the batch; a real row saved for a claimed key replaces
   its placeholder (:meth:`Claims.replaced`).
4. **Release.** Before the commit, one ``DELETE`` of the placeholders that nothing
   replaced (keys asked about but not saved), so no placeholder is ever committed; a
   rollback takes them away too.

Every statement takes the keys sorted (strings by value, UUIDs by their 128 bits, which
is PostgreSQL's order of ``uuid``) and locks them in key order, and the claims are taken
when a transaction first reads the states or the ledger, which the layer services
(:mod:`dwh_core.layers`) do before they write anything else, so two replicas whose
batches share keys wait for each other instead of deadlocking.

The claimed tables are ``dds.satellite_state`` (:mod:`~dwh_adapters.postgres.vault_store`,
which claims only the keys of satellites that replicas share) and
``cdm.order_contributions`` (:mod:`~dwh_adapters.postgres.counter_store`, every key);
each store keeps its own statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any

import psycopg
from attrs import frozen
from psycopg import sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.statements import Row, arrays_of

Statement = sql.SQL | sql.Composed
ClaimKey = tuple[Any, ...]
"""A key as the values of its columns, in the order of the table's key columns."""

# The value of the NOT NULL uuid column a placeholder row must fill (the hashdiff of a
# satellite state, the user of a ledger entry); what marks a placeholder is its NULL
# version.
PLACEHOLDER_KEY = uuid.UUID(int=0)


def _every_key(key: ClaimKey) -> bool:
    return True


@frozen
class ClaimedTable:
    """A table whose keys are claimed: its three statements, which take the keys as one
    array per key column (``unnest(%b::type[], ...)``), and where its rows hold their
    key and version."""

    claim: Statement
    """Insert a placeholder row per key, in key order, ``ON CONFLICT DO NOTHING``; takes
    :data:`PLACEHOLDER_KEY` before the key arrays."""
    lock: Statement
    """Select the row of every key ``ORDER BY`` key ``FOR UPDATE``."""
    release: Statement
    """Delete the placeholder rows of the keys."""
    key_width: int
    """The number of key columns, which are the first columns of a locked row."""
    version_column: int
    """The position, in a locked row, of the version that is NULL in a placeholder."""
    order: Callable[[ClaimKey], Any]
    """The sort key of a key: the table's key order (a UUID by its 128 bits). Each table
    gives its own, written for its key's columns: it runs on every key of every batch."""
    needs_claim: Callable[[ClaimKey], bool] = _every_key
    """Which keys are claimed (the rest are only locked, if they have a row)."""


class Claims:
    """The claims of one database transaction on one :class:`ClaimedTable`."""

    def __init__(self, conn: psycopg.Connection[TupleRow], table: ClaimedTable) -> None:
        self._conn = conn
        self._table = table
        self._placeholders: set[ClaimKey] = set()

    def lock(self, keys: Collection[ClaimKey]) -> list[Row]:
        """Claim the keys that need it, then lock every key's row; the locked rows that
        are real (placeholders are remembered for :meth:`release`, not returned)."""
        if not keys:
            return []
        table = self._table
        ordered = sorted(keys, key=table.order)
        claimed = [key for key in ordered if table.needs_claim(key)]
        if claimed:
            self._conn.execute(table.claim, [PLACEHOLDER_KEY, *arrays_of(claimed)])
        rows = self._conn.execute(table.lock, arrays_of(ordered)).fetchall()
        self._placeholders |= {
            row[: table.key_width] for row in rows if row[table.version_column] is None
        }
        return [row for row in rows if row[table.version_column] is not None]

    def replaced(self, keys: Iterable[ClaimKey]) -> None:
        """Keys whose real row the transaction writes, over its placeholder."""
        self._placeholders -= set(keys)

    def release(self) -> None:
        """Delete the placeholders that nothing replaced; call it before the commit."""
        if self._placeholders:
            placeholders = sorted(self._placeholders, key=self._table.order)
            self._conn.execute(self._table.release, arrays_of(placeholders))
