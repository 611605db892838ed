"""The user tags on PostgreSQL (docs/TAGS.md): the rules in force (``cdm.tag_rules``
under the one row of ``cdm.tag_control``), the count and standing of every user in
every tag (``cdm.user_tag_counters``, claimed like the ledger:
:mod:`~dwh_adapters.postgres.claims`; the view ``cdm.user_tags`` shows the members) and every
transition (``cdm.user_tag_events``), which :func:`deliver_pending` publishes after
the commit.

Who locks what: a CDM batch reads the rules under ``FOR SHARE`` of the control row, so
batches run side by side; a rule change or a window sweep takes it ``FOR UPDATE``, so
it waits for the batches in flight and they wait for it. Each then locks the tag
counters it moves, in key order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

import psycopg
from attrs import frozen
from psycopg import pq, sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.claims import ClaimedTable, Claims
from dwh_adapters.postgres.connection import ConnectionOwner
from dwh_adapters.postgres.ledger import counted_rows
from dwh_adapters.postgres.statements import arrays_of
from dwh_core.tags import (
    AppliedRule,
    RuleChange,
    RuleIndex,
    TagEvent,
    TagRule,
    TagState,
    TagStep,
    TagUpdate,
    count_matches,
    fold_steps,
    recount,
    rule_change,
    window_start_at,
    window_steps,
)

TagKey = tuple[uuid.UUID, str]

_CONTROL = sql.SQL("SELECT ruleset_version, revision FROM cdm.tag_control")
_RULES = sql.SQL(
    "SELECT tag_id, tag_name, target, target_name, at_least, within_days, window_start,"
    " since_version FROM cdm.tag_rules ORDER BY tag_id"
)
_STATE_COLUMNS = "user_id, tag_id, user_source_id, order_cnt, sequence, entered_at"
_KEYS = "unnest(%b::uuid[], %b::varchar[])"

_TAG_CLAIMS = ClaimedTable(
    claim=sql.SQL(
        "INSERT INTO cdm.user_tag_counters (user_id, tag_id, user_source_id, order_cnt)"
        " SELECT u, t, '', NULL FROM (SELECT %b::uuid) AS placeholder,"
        f' {_KEYS} AS k(u, t) ORDER BY u, t COLLATE "C" ON CONFLICT DO NOTHING'
    ),
    lock=sql.SQL(
        f"SELECT {_STATE_COLUMNS} FROM cdm.user_tag_counters"
        f" WHERE (user_id, tag_id) IN (SELECT * FROM {_KEYS})"
        ' ORDER BY user_id, tag_id COLLATE "C" FOR UPDATE'
    ),
    release=sql.SQL(
        "DELETE FROM cdm.user_tag_counters WHERE order_cnt IS NULL"
        f" AND (user_id, tag_id) IN (SELECT * FROM {_KEYS})"
    ),
    key_width=2,
    version_column=3,  # order_cnt
    order=lambda key: (key[0].int, key[1].encode()),
)
_SAVE_STATES = sql.SQL(
    f"INSERT INTO cdm.user_tag_counters AS t ({_STATE_COLUMNS})"
    " SELECT * FROM unnest(%b::uuid[], %b::varchar[], %b::varchar[], %b::int[], %b::int[],"
    " %b::timestamp[])"
    " ON CONFLICT (user_id, tag_id) DO UPDATE SET user_source_id = excluded.user_source_id,"
    " order_cnt = excluded.order_cnt, sequence = excluded.sequence,"
    " entered_at = excluded.entered_at"
)
_SAVE_EVENTS = sql.SQL(
    "INSERT INTO cdm.user_tag_events"
    " (user_id, user_source_id, tag_id, tag_name, event, at, sequence, order_cnt,"
    " ruleset_version)"
    " SELECT u, s, t, n, e, a, q, c, %b FROM unnest(%b::uuid[], %b::varchar[], %b::varchar[],"
    " %b::varchar[], %b::varchar[], %b::timestamp[], %b::int[], %b::int[])"
    " WITH ORDINALITY AS x(u, s, t, n, e, a, q, c, i) ORDER BY i"
)


def read_rules(conn: psycopg.Connection[TupleRow]) -> RuleIndex:
    """The rules in force, with the ruleset version and revision."""
    control = conn.execute(_CONTROL).fetchone()
    version, revision = control if control else (0, 0)
    rows = conn.execute(_RULES).fetchall()
    return RuleIndex(
        (
            AppliedRule(TagRule(tag_id, name, target, target_name, at_least, days), start, since)
            for tag_id, name, target, target_name, at_least, days, start, since in rows
        ),
        version=version,
        revision=revision,
    )


class RuleCache:
    """The rules of the last revision seen, so a batch reads them only when they moved."""

    def __init__(self) -> None:
        self._rules = RuleIndex((), version=0, revision=-1)

    def current(self, conn: psycopg.Connection[TupleRow]) -> RuleIndex:
        """The rules in force, holding the control row ``FOR SHARE`` until the commit."""
        row = conn.execute(sql.SQL("{} FOR SHARE").format(_CONTROL)).fetchone()
        revision = row[1] if row else 0
        if revision != self._rules.revision:
            self._rules = read_rules(conn)
        return self._rules


class TagTables:
    """The tag tables inside one database transaction."""

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self._conn = conn
        self._claims = Claims(conn, _TAG_CLAIMS)

    def states(self, keys: Collection[TagKey]) -> dict[TagKey, TagState]:
        """The states of these (user, tag) pairs, locked until the transaction ends."""
        return {(row[0], row[1]): TagState(*row) for row in self._claims.lock(list(keys))}

    def states_of_tags(self, tag_ids: Collection[str], lock: bool = True) -> list[TagState]:
        """Every stored state of these tags (a rule change recounts them all), locked
        unless ``lock`` is false (a dry run)."""
        rows = self._conn.execute(
            sql.SQL(
                f"SELECT {_STATE_COLUMNS} FROM cdm.user_tag_counters"
                " WHERE tag_id = ANY(%b::varchar[]) AND order_cnt IS NOT NULL"
                ' ORDER BY user_id, tag_id COLLATE "C"' + (" FOR UPDATE" if lock else "")
            ),
            [list(tag_ids)],
        )
        return [TagState(*row) for row in rows]

    def save(self, update: TagUpdate, ruleset_version: int) -> None:
        """Store the states as they now are (and so the members), and the transitions
        in order."""
        states = update.states
        self._claims.replaced((s.user_key, s.tag_id) for s in states)
        with self._conn.cursor() as cursor:
            if states:
                cursor.execute(
                    _SAVE_STATES,
                    arrays_of(
                        (s.user_key, s.tag_id, s.user_id, s.order_cnt, s.sequence, s.entered_at)
                        for s in states
                    ),
                )
            if update.events:
                cursor.execute(
                    _SAVE_EVENTS,
                    [
                        ruleset_version,
                        *arrays_of(
                            (
                                e.user_key,
                                e.user_id,
                                e.tag_id,
                                e.tag_name,
                                e.event,
                                e.at,
                                e.sequence,
                                e.order_cnt,
                            )
                            for e in update.events
                        ),
                    ],
                )

    def release_placeholders(self) -> None:
        self._claims.release()


_LOCK_KEY = 0x6477685F74616773  # "dwh_tags": held by one deliverer at a time
DELIVERY_BATCH = 5_000


def deliver_pending(
    transaction: Callable[[], AbstractContextManager[psycopg.Connection[TupleRow]]],
    send: Callable[[Sequence[TagEvent]], None],
) -> int:
    """Send every transition not yet published, oldest first, with ``send`` (which
    returns once they are delivered), then mark them published; the number sent.

    One deliverer at a time holds the lock, so each user's transitions leave in the
    order they were recorded. A crash between the delivery and the mark sends them
    again; a consumer drops those by ``(user_id, tag_id, sequence)``.
    """
    sent = 0
    while True:
        with transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%b)", [_LOCK_KEY])
            rows = conn.execute(
                "SELECT event_id, user_id, user_source_id, tag_id, tag_name, event, at,"
                " sequence, order_cnt FROM cdm.user_tag_events WHERE NOT published"
                " ORDER BY event_id LIMIT %b",
                [DELIVERY_BATCH],
            ).fetchall()
            if not rows:
                return sent
            send([TagEvent(*row[1:]) for row in rows])
            conn.execute(
                "UPDATE cdm.user_tag_events SET published = true"
                " WHERE event_id = ANY(%b::bigint[])",
                [[row[0] for row in rows]],
            )
            sent += len(rows)


def _lock_control(conn: psycopg.Connection[TupleRow]) -> None:
    conn.execute(sql.SQL("{} FOR UPDATE").format(_CONTROL))


def _user_ids(
    conn: psycopg.Connection[TupleRow], keys: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The source ids of users, from the vault's user hub."""
    rows = conn.execute(
        "SELECT h_user_pk, user_id FROM dds.h_user WHERE h_user_pk = ANY(%b::uuid[])",
        [list(keys)],
    )
    return dict(rows.fetchall())


def change_rules(
    conn: psycopg.Connection[TupleRow],
    wanted: Sequence[TagRule],
    source: str,
    clock: datetime,
    apply: bool,
    first: bool = False,
) -> tuple[RuleChange, TagUpdate, int]:
    """Put ``wanted`` in force (``apply``) or only say what that would do: the change,
    the transitions it makes (at ``clock``), and the ruleset version afterwards. The
    counts of new and changed rules are counted afresh from the whole ledger; the
    members of removed rules exit. Runs in the caller's transaction; with ``apply``,
    the batches of running workers wait for it, and it for them. ``first``: only if no
    rules are in force yet (two workers starting at once put theirs in force once)."""
    if apply:
        _lock_control(conn)
    current = read_rules(conn)
    if first and current.version != 0:
        unchanged = rule_change(current, [a.rule for a in current.rules.values()], clock)
        return unchanged, TagUpdate(), current.version
    change = rule_change(current, wanted, clock)
    if change.is_empty:
        return change, TagUpdate(), current.version
    recounted = change.recounted
    counts = count_matches(recounted, counted_rows(conn)) if recounted else {}
    tables = TagTables(conn)
    states = tables.states_of_tags(
        [a.rule.tag_id for a in recounted] + [r.tag_id for r in change.removed], lock=apply
    )
    known = {(s.user_key, s.tag_id) for s in states}
    user_ids = _user_ids(conn, {user for user, tag in counts if (user, tag) not in known})
    update = recount(recounted, change.removed, counts, states, user_ids, clock)
    version = current.version + 1
    if apply:
        tables.save(update, version)
        conn.execute("DELETE FROM cdm.tag_rules")
        if change.rules:
            conn.execute(
                "INSERT INTO cdm.tag_rules (tag_id, tag_name, target, target_name, at_least,"
                " within_days, window_start, since_version)"
                " SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[],"
                " %b::varchar[], %b::int[], %b::int[], %b::timestamp[], %b::int[])",
                arrays_of(
                    (
                        a.rule.tag_id,
                        a.rule.name,
                        a.rule.target,
                        a.rule.target_name,
                        a.rule.at_least,
                        a.rule.within_days,
                        a.window_start,
                        a.since_version if a.rule.tag_id in change.unchanged else version,
                    )
                    for a in change.rules
                ),
            )
        conn.execute(
            "UPDATE cdm.tag_control SET ruleset_version = %b, revision = revision + 1,"
            " applied_at = %b, rules_source = %b",
            [version, clock, source],
        )
    return change, update, version


def recount_tags(conn: psycopg.Connection[TupleRow], clock: datetime) -> TagUpdate:
    """Count every tag in force afresh from the ledger (``dwh marts rebuild`` does, in
    its transaction, once it rewrote the ledger): the members that differ enter or exit
    at ``clock``. Locks as a rule change does; windows stay where they are."""
    _lock_control(conn)
    rules = read_rules(conn)
    applied = list(rules.rules.values())
    counts = count_matches(applied, counted_rows(conn))
    tables = TagTables(conn)
    states = tables.states_of_tags(list(rules.rules))
    known = {(s.user_key, s.tag_id) for s in states}
    user_ids = _user_ids(conn, {user for user, tag in counts if (user, tag) not in known})
    update = recount(applied, (), counts, states, user_ids, clock)
    tables.save(update, rules.version)
    return update


def sweep_windows(conn: psycopg.Connection[TupleRow], clock: datetime) -> TagUpdate:
    """Move the window of every rule that has one to ``clock``: the orders that leave
    it are -1 steps, in the order they aged out, and the members that fall below the
    threshold exit. Runs in the caller's transaction, locking as a rule change does."""
    _lock_control(conn)
    rules = read_rules(conn)
    steps: list[TagStep] = []
    moved: dict[str, datetime] = {}
    for applied in rules.rules.values():
        start = window_start_at(applied.rule, clock)
        if start is None or applied.window_start is None or start <= applied.window_start:
            continue
        moved[applied.rule.tag_id] = start
        steps += window_steps(applied, start, counted_rows(conn, applied.window_start, start))
    if not moved:
        return TagUpdate()
    steps.sort(key=lambda s: (s.at, s.user_key.int, s.tag_id))
    tables = TagTables(conn)
    update = fold_steps(steps, tables.states({(s.user_key, s.tag_id) for s in steps}), rules)
    tables.save(update, rules.version)
    tables.release_placeholders()
    conn.execute(
        "UPDATE cdm.tag_rules AS r SET window_start = m.start"
        " FROM unnest(%b::varchar[], %b::timestamp[]) AS m(tag_id, start)"
        " WHERE r.tag_id = m.tag_id",
        arrays_of(moved.items()),
    )
    conn.execute("UPDATE cdm.tag_control SET revision = revision + 1")
    return update


class PostgresTagAdmin(ConnectionOwner):
    """Rule changes and window sweeps, each in a transaction of its own (for the CDM
    worker's upkeep and the ``dwh tags`` commands)."""

    def rules(self) -> RuleIndex:
        with self._transaction() as conn:
            return read_rules(conn)

    def change(
        self,
        wanted: Sequence[TagRule],
        source: str,
        clock: datetime,
        apply: bool,
        first: bool = False,
    ) -> tuple[RuleChange, TagUpdate, int]:
        """:func:`change_rules`; a dry run (``apply`` false) writes nothing."""
        result: tuple[RuleChange, TagUpdate, int] | None = None
        with self._transaction() as conn:
            result = change_rules(conn, wanted, source, clock, apply, first)
            if not apply:
                raise psycopg.Rollback()
        assert result is not None
        return result

    def sweep(self, clock: datetime) -> TagUpdate:
        """:func:`sweep_windows`."""
        with self._transaction() as conn:
            return sweep_windows(conn, clock)

    def deliver(self, send: Callable[[Sequence[TagEvent]], None]) -> int:
        return deliver_pending(self._transaction, send)

    def known_names(self) -> tuple[set[str], set[str]]:
        """The category and product names the vault has seen (its category hub and the
        products' name satellite)."""
        with self._transaction() as conn:
            categories = {
                name for (name,) in conn.execute("SELECT category_name FROM dds.h_category")
            }
            products = {
                name for (name,) in conn.execute("SELECT DISTINCT name FROM dds.s_product_names")
            }
        return categories, products


@frozen
class TagDifference:
    """A user's standing in a tag that is not what a recount from scratch gives."""

    user_key: uuid.UUID
    tag_id: str
    what: str
    expected: object
    found: object


def tag_differences(conn: psycopg.Connection[TupleRow]) -> tuple[int, list[TagDifference]]:
    """Every tag counted again from scratch (from the ledger; a lifetime rule on a
    category from the category mart too), against the stored counts and members: the
    number of (user, tag) pairs compared, and the differences. Reads one snapshot (on a
    connection with no transaction open), so a batch landing meanwhile is no difference."""
    own = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction():
        if own:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _tag_differences(conn)


def _tag_differences(conn: psycopg.Connection[TupleRow]) -> tuple[int, list[TagDifference]]:
    rules = read_rules(conn)
    expected = count_matches(rules.rules.values(), counted_rows(conn))
    stored = {
        (user, tag): (count, entered)
        for user, tag, count, entered in conn.execute(
            "SELECT user_id, tag_id, order_cnt, entered_at FROM cdm.user_tag_counters"
            " WHERE order_cnt IS NOT NULL"
        )
    }
    found: list[TagDifference] = []
    keys = stored.keys() | expected.keys()
    for user, tag in sorted(keys, key=lambda k: (k[1], k[0].int)):
        count = expected.get((user, tag), 0)
        stored_count, entered = stored.get((user, tag), (0, None))
        applied = rules.rules.get(tag)
        if applied is None:
            if entered is not None:
                found.append(TagDifference(user, tag, "member of a tag not in force", None, True))
            continue
        if stored_count != count:
            found.append(TagDifference(user, tag, "orders counted", count, stored_count))
        member = count >= applied.rule.at_least
        if member != (entered is not None):
            found.append(TagDifference(user, tag, "member", member, entered is not None))
    found += _against_the_category_mart(conn, rules, expected)
    return len(keys), found


def _against_the_category_mart(
    conn: psycopg.Connection[TupleRow], rules: RuleIndex, expected: Mapping[TagKey, int]
) -> list[TagDifference]:
    """A lifetime rule on a category counts what the category mart counts."""
    found: list[TagDifference] = []
    for applied in rules.rules.values():
        rule = applied.rule
        if rule.target != "category" or rule.within_days is not None:
            continue
        mart: dict[uuid.UUID, int] = dict(
            conn.execute(
                "SELECT user_id, order_cnt FROM cdm.user_category_counters"
                " WHERE category_id = %b AND order_cnt > 0",
                [rule.target_key],
            ).fetchall()
        )
        counted = {user: n for (user, tag), n in expected.items() if tag == rule.tag_id and n}
        for user in sorted(mart.keys() | counted.keys(), key=lambda u: u.int):
            if mart.get(user, 0) != counted.get(user, 0):
                found.append(
                    TagDifference(
                        user,
                        rule.tag_id,
                        "orders in the category mart",
                        counted.get(user, 0),
                        mart.get(user, 0),
                    )
                )
    return found
