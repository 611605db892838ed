"""The marts recomputed from the Data Vault, in SQL: what ``dwh marts verify`` compares
the ``cdm`` tables with, and what ``dwh marts rebuild`` writes into them.

**What is recomputed** (:data:`RECOMPUTE`, one ``WITH`` query over the ``dds`` tables
alone), per order of ``dds.h_order``:

* its newest version: ``update_ts`` and tie-break (docs/CONTRACT.md §7, below);
* whether it counts: the status of that version is exactly ``CLOSED`` (§4);
* its user: the user hub key of ``l_order_user``;
* its products: the product hub keys of ``l_order_product``, and their categories:
  the category hub keys of ``l_product_category``;
* its date: ``h_order.order_dt``.

From these, both marts as §4 defines them: per user and product (category), the number
of distinct counted orders containing it; the product's name is the one of the current
row of ``s_product_names`` (greatest ``source_ts``), the category's name the hub's
``category_name``. And the ledger row of each order (``cdm.order_contributions``): the
version, the user, the product and category keys if it counts (else empty arrays), the
date and the hash keys of its products' names.

**How the tie rule is reproduced.** DDS keeps, per satellite and hub key, the newest
version it has seen (``dds.satellite_state``: ``source_ts`` and ``tiebreak``), and moves
it only for a version with a greater ``(source_ts, tiebreak)``, compared as a row in
SQL: ``bytea`` compares bytewise, then by length, exactly as Python compares ``bytes``,
so that is the rule of :mod:`dwh_core.versions` (greater ``update_ts``, then rank of the
status, then MD5 digest). The newest version of an order is therefore the watermark of
its order satellites, taken here with ``DISTINCT ON (order) ORDER BY source_ts DESC,
tiebreak DESC`` over both of them (``order_status`` and ``order_cost`` see the same
versions). Its status is the current row of ``s_order_status`` (greatest
``source_ts``): a row is added only when the status changes, and at an equal
``source_ts`` the version that won the tie-break replaced the row, so the current row
holds the status of the newest version. :func:`vault_ambiguities` checks that: the
first byte of the newest version's tie-break is the rank of that status.

**What the vault cannot say** (so the recomputation assumes it, and
:func:`vault_ambiguities` counts the cases it can see): links are insert-only and
carry no version, so an order's products are those of *all* its versions, its user
the first one linked, and a product's categories all it ever had. The recomputation is
exact when an order's items and user do not change between its versions and a product
keeps its category, as in the feed; an order whose items changed between versions is
not detectable from the vault at all. ``h_order.order_dt`` is the date of the first
version loaded (the CDM worker writes the newest version's), and a product's name is
its newest name overall (the worker's is the name in the order's own version).

:func:`mart_differences` compares the stored tables with the recomputation (a ``FULL
OUTER JOIN`` per table, in SQL, in one ``REPEATABLE READ`` snapshot);
:func:`rebuild_marts` rewrites them from it, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import psycopg
from attrs import frozen
from psycopg import pq, sql
from psycopg.rows import TupleRow

from dwh_adapters.postgres.tag_store import recount_tags
from dwh_core.hashing import hash_key
from dwh_core.tags import TagUpdate
from dwh_core.vault import HUBS

Connection = psycopg.Connection[TupleRow]

# The query every statement here starts with: the recomputation, as CTEs. PostgreSQL
# evaluates only the CTEs a statement uses.
RECOMPUTE = """
WITH
order_versions AS (
    -- The newest version DDS saw of each order, per order satellite (a NULL source_ts
    -- is a claim placeholder, never committed).
    SELECT hub_pk AS order_key, source_ts AS update_ts, tiebreak
    FROM dds.satellite_state
    WHERE satellite IN ('order_status', 'order_cost') AND source_ts IS NOT NULL
),
newest AS (
    -- dwh_core.versions: the greater update_ts, then the greater tie-break (bytea
    -- compares as Python's bytes do).
    SELECT DISTINCT ON (order_key) order_key, update_ts, tiebreak
    FROM order_versions
    ORDER BY order_key, update_ts DESC, tiebreak DESC
),
current_status AS (
    SELECT DISTINCT ON (h_order_pk) h_order_pk AS order_key, status
    FROM dds.s_order_status
    ORDER BY h_order_pk, source_ts DESC
),
order_user AS (
    -- One user per order (the first linked, should an order ever have had two).
    SELECT DISTINCT ON (h_order_pk) h_order_pk AS order_key, h_user_pk AS user_key
    FROM dds.l_order_user
    ORDER BY h_order_pk, load_dt, h_user_pk
),
orders AS (
    SELECT o.h_order_pk AS order_key, o.order_id, o.order_dt, n.update_ts, n.tiebreak,
           s.status, u.user_key, s.status = 'CLOSED' AS counted
    FROM dds.h_order o
    JOIN newest n ON n.order_key = o.h_order_pk
    JOIN current_status s ON s.order_key = o.h_order_pk
    JOIN order_user u ON u.order_key = o.h_order_pk
),
order_products AS (
    -- The products of the counted orders (one link per order and product).
    SELECT DISTINCT o.order_key, o.user_key, l.h_product_pk AS product_key
    FROM orders o
    JOIN dds.l_order_product l ON l.h_order_pk = o.order_key
    WHERE o.counted
),
order_categories AS (
    SELECT DISTINCT p.order_key, p.user_key, l.h_category_pk AS category_key
    FROM order_products p
    JOIN dds.l_product_category l ON l.h_product_pk = p.product_key
),
product_names AS (
    SELECT DISTINCT ON (h_product_pk) h_product_pk AS product_key, name
    FROM dds.s_product_names
    ORDER BY h_product_pk, source_ts DESC
),
expected_products AS (
    SELECT p.user_key, p.product_key AS key, count(*)::int AS order_cnt, n.name
    FROM order_products p
    LEFT JOIN product_names n ON n.product_key = p.product_key
    GROUP BY p.user_key, p.product_key, n.name
),
expected_categories AS (
    SELECT c.user_key, c.category_key AS key, count(*)::int AS order_cnt, h.category_name AS name
    FROM order_categories c
    LEFT JOIN dds.h_category h ON h.h_category_pk = c.category_key
    GROUP BY c.user_key, c.category_key, h.category_name
),
expected_ledger AS (
    SELECT o.order_key, o.order_id, o.user_key, o.update_ts, o.tiebreak,
           o.order_dt AS order_date, o.counted,
           coalesce(p.keys, ARRAY[]::uuid[]) AS products,
           coalesce(c.keys, ARRAY[]::uuid[]) AS categories
    FROM orders o
    LEFT JOIN (SELECT order_key, array_agg(product_key ORDER BY product_key) AS keys
               FROM order_products GROUP BY order_key) p ON p.order_key = o.order_key
    LEFT JOIN (SELECT order_key, array_agg(category_key ORDER BY category_key) AS keys
               FROM order_categories GROUP BY order_key) c ON c.order_key = o.order_key
)
"""


@frozen
class _Mart:
    """A mart table, its key and name columns, its CTE in :data:`RECOMPUTE`, and the hub
    of its key (whose business key names a difference)."""

    table: str
    key: str
    name: str
    expected: str
    hub: str  # its name in dwh_core.HUBS

    @property
    def qualified(self) -> str:
        return f"cdm.{self.table}"

    def format(self, template: str) -> sql.Composed:
        return sql.SQL(RECOMPUTE + template).format(
            table=sql.Identifier("cdm", self.table),
            key=sql.Identifier(self.key),
            name=sql.Identifier(self.name),
            expected=sql.Identifier(self.expected),
            hub=sql.Identifier("dds", HUBS[self.hub].table),
            hub_pk=sql.Identifier(HUBS[self.hub].pk),
            business_key=sql.Identifier(HUBS[self.hub].key_columns[0]),
        )


_PRODUCTS = _Mart(
    "user_product_counters", "product_id", "product_name", "expected_products", "product"
)
_CATEGORIES = _Mart(
    "user_category_counters",
    "category_id",
    "category_name",
    "expected_categories",
    "category",
)
LEDGER_TABLE = "cdm.order_contributions"

# The stored mart rows against the recomputed ones. A missing row and a row of 0 are the
# same count (a counter that fell to 0 stays, with 0: docs/CONTRACT.md §4). Names are
# compared only where both rows exist, and are not differences.
_COMPARED_COUNTERS = """,
compared AS MATERIALIZED (
    SELECT coalesce(s.user_id, e.user_key) AS user_key, coalesce(s.{key}, e.key) AS key,
           s.id AS stored_id, s.order_cnt AS stored_cnt, e.order_cnt AS expected_cnt,
           s.{name} AS stored_name, e.name AS expected_name,
           coalesce(s.order_cnt, 0) <> coalesce(e.order_cnt, 0) AS differs
    FROM {table} s
    FULL OUTER JOIN {expected} e ON e.user_key = s.user_id AND e.key = s.{key}
)"""

_COUNTER_DIFFERENCES = (
    _COMPARED_COUNTERS
    + """,
totals AS (
    SELECT count(*) AS compared,
           count(*) FILTER (WHERE differs) AS differing,
           count(*) FILTER (WHERE NOT differs AND stored_name IS DISTINCT FROM expected_name
                            AND stored_cnt IS NOT NULL AND expected_cnt IS NOT NULL)
               AS names_differing
    FROM compared
)
SELECT t.compared, t.differing, t.names_differing,
       d.user_key, u.user_id, d.key, h.{business_key}, coalesce(d.expected_name, d.stored_name),
       d.stored_cnt, d.expected_cnt
FROM totals t
LEFT JOIN LATERAL (
    SELECT * FROM compared WHERE differs ORDER BY user_key, key LIMIT %(limit)s
) d ON true
LEFT JOIN dds.h_user u ON u.h_user_pk = d.user_key
LEFT JOIN {hub} h ON h.{hub_pk} = d.key
ORDER BY d.user_key, d.key
"""
)

# Under the lock of rebuild_marts: insert the missing rows, set the others to the
# recomputed count and name, and the rows the recomputation lacks to 0 (kept, named as
# they were).
_REWRITE_COUNTERS = (
    _COMPARED_COUNTERS
    + """,
inserted AS (
    INSERT INTO {table} (user_id, {key}, {name}, order_cnt)
    SELECT user_key, key, coalesce(expected_name, ''), expected_cnt
    FROM compared WHERE stored_id IS NULL
    ORDER BY user_key, key
    RETURNING 1
),
updated AS (
    UPDATE {table} t
    SET order_cnt = coalesce(c.expected_cnt, 0),
        {name} = coalesce(c.expected_name, t.{name})
    FROM compared c
    WHERE t.id = c.stored_id
      AND (t.order_cnt, t.{name})
          IS DISTINCT FROM (coalesce(c.expected_cnt, 0), coalesce(c.expected_name, t.{name}))
    RETURNING c.expected_cnt IS NULL AS zeroed
)
SELECT (SELECT count(*) FROM inserted),
       (SELECT count(*) FROM updated WHERE NOT zeroed),
       (SELECT count(*) FROM updated WHERE zeroed)
"""
)

_SAME_SET = "({a} @> {b} AND {a} <@ {b})"

# The stored ledger against the recomputed one: the user, counted or not (non-empty
# keys), the product and category key sets, and the version (update_ts, tiebreak).
# order_date and product_names are not compared.
_COMPARED_LEDGER = (
    """,
compared AS MATERIALIZED (
    SELECT coalesce(s.order_key, e.order_key) AS order_key, e.order_id,
           s.order_key IS NULL AS missing, e.order_key IS NULL AS extra,
           s.user_key IS DISTINCT FROM e.user_key AS user_differs,
           (s.update_ts, s.tiebreak) IS DISTINCT FROM (e.update_ts, e.tiebreak)
               AS version_differs,
           (cardinality(s.products) > 0) IS DISTINCT FROM (cardinality(e.products) > 0)
               AS counted_differs,
           NOT coalesce("""
    + _SAME_SET.format(a="s.products", b="e.products")
    + """, false) AS products_differ,
           NOT coalesce("""
    + _SAME_SET.format(a="s.categories", b="e.categories")
    + """, false) AS categories_differ
    FROM cdm.order_contributions s
    FULL OUTER JOIN expected_ledger e ON e.order_key = s.order_key
)"""
)

_LEDGER_DIFFERENCES = (
    _COMPARED_LEDGER
    + """,
differing AS (
    SELECT * FROM compared
    WHERE missing OR extra OR user_differs OR version_differs OR counted_differs
       OR products_differ OR categories_differ
),
totals AS (
    SELECT (SELECT count(*) FROM compared) AS compared,
           (SELECT count(*) FROM differing) AS differing
)
SELECT t.compared, t.differing, d.order_key, d.order_id, d.missing, d.extra,
       d.user_differs, d.version_differs, d.counted_differs, d.products_differ,
       d.categories_differ
FROM totals t
LEFT JOIN LATERAL (SELECT * FROM differing ORDER BY order_key LIMIT %(limit)s) d ON true
ORDER BY d.order_key
"""
)

# Under the lock of rebuild_marts: the ledger rows of the recomputation, with the hash
# keys of the products' names (computed in Python, passed in as two arrays). An order's
# date is kept when the ledger has one: the vault holds only the first version's date
# (h_order), the ledger the newest version's; a missing one (a row written before 0.3.0)
# is filled from the vault.
_REWRITE_LEDGER = (
    RECOMPUTE
    + """,
name_keys AS (
    SELECT * FROM unnest(%(products)s::uuid[], %(name_keys)s::uuid[]) AS n(product_key, name_key)
),
expected AS (
    SELECT e.order_key, e.user_key, e.update_ts, e.tiebreak, e.products, e.categories,
           e.order_date, coalesce(n.keys, ARRAY[]::uuid[]) AS product_names
    FROM expected_ledger e
    LEFT JOIN (SELECT p.order_key, array_agg(DISTINCT k.name_key ORDER BY k.name_key) AS keys
               FROM order_products p JOIN name_keys k ON k.product_key = p.product_key
               GROUP BY p.order_key) n ON n.order_key = e.order_key
),
inserted AS (
    INSERT INTO cdm.order_contributions
        (order_key, user_key, update_ts, tiebreak, products, categories, order_date,
         product_names)
    SELECT e.order_key, e.user_key, e.update_ts, e.tiebreak, e.products, e.categories,
           e.order_date, e.product_names
    FROM expected e
    WHERE NOT EXISTS (SELECT 1 FROM cdm.order_contributions s WHERE s.order_key = e.order_key)
    ORDER BY e.order_key
    RETURNING 1
),
updated AS (
    UPDATE cdm.order_contributions s
    SET user_key = e.user_key, update_ts = e.update_ts, tiebreak = e.tiebreak,
        products = e.products, categories = e.categories,
        order_date = coalesce(s.order_date, e.order_date), product_names = e.product_names
    FROM expected e
    WHERE s.order_key = e.order_key AND NOT coalesce(
        s.user_key = e.user_key AND s.update_ts = e.update_ts AND s.tiebreak = e.tiebreak
        AND """
    + _SAME_SET.format(a="s.products", b="e.products")
    + " AND "
    + _SAME_SET.format(a="s.categories", b="e.categories")
    + " AND "
    + _SAME_SET.format(a="s.product_names", b="e.product_names")
    + """
        AND (s.order_date IS NOT NULL OR e.order_date IS NULL), false)
    RETURNING 1
),
deleted AS (
    DELETE FROM cdm.order_contributions s
    WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.order_key = s.order_key)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated),
       (SELECT count(*) FROM deleted)
"""
)

_CURRENT_PRODUCT_NAMES = RECOMPUTE + "SELECT product_key, name FROM product_names"

_AMBIGUITIES = (
    RECOMPUTE
    + """
SELECT
    (SELECT count(*) FROM (SELECT FROM dds.l_order_user
                           GROUP BY h_order_pk HAVING count(*) > 1) x),
    (SELECT count(*) FROM (SELECT FROM dds.l_product_category
                           GROUP BY h_product_pk HAVING count(*) > 1) y),
    -- The rank of a status in the tie-break (docs/CONTRACT.md §7; 0 outside the lifecycle).
    (SELECT count(*) FROM orders
     WHERE length(tiebreak) > 0
       AND get_byte(tiebreak, 0) <> coalesce(array_position(
           ARRAY['OPEN', 'COOKING', 'DELIVERING', 'CLOSED', 'CANCELLED'], status), 0))
"""
)

# The CDM worker's writes: the ledger first (its claims), then the counters, so that a
# worker in the middle of a batch and a rebuild wait for each other, never deadlock.
_LOCK = sql.SQL("LOCK TABLE {}, {}, {} IN SHARE ROW EXCLUSIVE MODE").format(
    sql.Identifier("cdm", "order_contributions"),
    sql.Identifier("cdm", _PRODUCTS.table),
    sql.Identifier("cdm", _CATEGORIES.table),
)


@frozen
class CounterDifference:
    """A (user, product) or (user, category) whose stored count is not the recomputed
    one. ``stored`` is None when the table has no row; ``expected`` is 0 when the
    recomputation has none. ``user_id`` and ``business_key`` (the product's source id,
    the category's name) are the hubs', None if a key has no hub row; ``name`` is the
    recomputed name, else the stored one."""

    user_key: uuid.UUID
    user_id: str | None
    key: uuid.UUID
    business_key: str | None
    name: str | None
    stored: int | None
    expected: int

    @property
    def kind(self) -> str:
        """``missing`` (no row, should count), ``extra`` (counts, should not), or
        ``count`` (both count, differently)."""
        if self.stored is None:
            return "missing"
        if self.expected == 0:
            return "extra"
        return "count"


@frozen
class MartComparison:
    """One mart against the recomputation: ``compared`` rows (stored or recomputed, both
    counted once), of which ``differing`` have another count; ``rows``: the first of
    them by (user key, key), all unless a limit was given. ``names_differing``: rows
    with the right count and another name, which are not differences (names are display
    names, docs/CONTRACT.md §4 and §7)."""

    table: str
    compared: int
    differing: int
    rows: tuple[CounterDifference, ...]
    names_differing: int


@frozen
class LedgerDifference:
    """An order whose ledger row is not the recomputed one; ``aspects`` say how:
    ``missing`` (no ledger row), ``extra`` (no such order in the vault), else some of
    ``user``, ``version``, ``counted`` (non-empty keys or not), ``products``,
    ``categories`` (sets of keys; not repeated when ``counted`` differs)."""

    order_key: uuid.UUID
    order_id: int | None
    aspects: tuple[str, ...]


@frozen
class LedgerComparison:
    compared: int
    differing: int
    rows: tuple[LedgerDifference, ...]


@frozen
class VaultAmbiguities:
    """What the vault shows of the cases the recomputation cannot get right: orders
    linked to several users, products linked to several categories, and orders whose
    current status is not the one of their newest version's tie-break (a vault out of
    step with itself). All 0 in a vault the feed's rules produced."""

    orders_with_several_users: int
    products_with_several_categories: int
    statuses_off_their_version: int

    def __bool__(self) -> bool:
        return any(
            (
                self.orders_with_several_users,
                self.products_with_several_categories,
                self.statuses_off_their_version,
            )
        )


@frozen
class MartDifferences:
    """The stored marts and ledger against their recomputation from the vault."""

    products: MartComparison
    categories: MartComparison
    ledger: LedgerComparison
    ambiguities: VaultAmbiguities

    @property
    def empty(self) -> bool:
        """No count and no ledger row differs (names aside)."""
        return not (self.products.differing or self.categories.differing or self.ledger.differing)


@frozen
class TableWrites:
    """What a rebuild wrote to one table: rows ``inserted``, ``updated`` (to another
    count or name; in the ledger, to the recomputed row), and ``removed``: in a mart,
    rows the recomputation lacks, set to 0 and kept (docs/CONTRACT.md §4); in the
    ledger, rows of orders the vault lacks, deleted."""

    table: str
    inserted: int
    updated: int
    removed: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.removed


@frozen
class RebuildResult:
    products: TableWrites
    categories: TableWrites
    ledger: TableWrites
    tags: TagUpdate = attrs.Factory(TagUpdate)
    """The user tags counted afresh from the rewritten ledger (their transitions)."""

    @property
    def rows_written(self) -> int:
        return self.products.total + self.categories.total + self.ledger.total


def recomputed_marts(
    conn: Connection,
) -> tuple[dict[tuple[uuid.UUID, uuid.UUID], int], dict[tuple[uuid.UUID, uuid.UUID], int]]:
    """The recomputed marts: (user key, product key) -> count and (user key, category
    key) -> count, rows of 0 left out (the shape of
    :meth:`~dwh_adapters.postgres.marts.PostgresMarts.product_counts`)."""
    with _snapshot(conn, read_only=True):
        products = conn.execute(
            RECOMPUTE + "SELECT user_key, key, order_cnt FROM expected_products"
        )
        product_counts = {(user, key): count for user, key, count in products}
        categories = conn.execute(
            RECOMPUTE + "SELECT user_key, key, order_cnt FROM expected_categories"
        )
        category_counts = {(user, key): count for user, key, count in categories}
    return product_counts, category_counts


def mart_differences(conn: Connection, limit: int | None = None) -> MartDifferences:
    """The rows of ``cdm.user_product_counters``, ``cdm.user_category_counters`` and
    ``cdm.order_contributions`` that differ from the recomputation (each table compared
    with a ``FULL OUTER JOIN``, in SQL), the first ``limit`` of each (all by default),
    with the totals, and the vault's ambiguities.

    Counts are compared, not names: a mart's names are display names that depend on
    which order last changed the row, so only the number of rows with the right count
    and another name is given (``names_differing``). In the ledger, the user, the
    version, counted or not, and the product and category key sets are compared;
    ``order_date`` and ``product_names`` (what the tag rules read) are not.

    On a connection with no transaction open, it reads one ``REPEATABLE READ``
    snapshot; inside a transaction, the caller's. A pipeline still working through its
    topics shows its backlog as differences: verify a quiet one."""
    with _snapshot(conn, read_only=True):
        return MartDifferences(
            products=_compare_counters(conn, _PRODUCTS, limit),
            categories=_compare_counters(conn, _CATEGORIES, limit),
            ledger=_compare_ledger(conn, limit),
            ambiguities=_ambiguities(conn),
        )


def vault_ambiguities(conn: Connection) -> VaultAmbiguities:
    """What the vault shows of the cases the recomputation cannot get right."""
    with _snapshot(conn, read_only=True):
        return _ambiguities(conn)


def rebuild_marts(conn: Connection, clock: datetime | None = None) -> RebuildResult:
    """Rewrite both marts and the ledger to the recomputation, in one transaction, and
    say how many rows were written (none when they already equal it).

    The marts and the ledger are locked first (``SHARE ROW EXCLUSIVE``, the ledger
    before the counters, in the order the CDM worker writes them), so a worker's batch
    waits for the rebuild, or the rebuild for the batch; then one ``REPEATABLE READ``
    snapshot, taken once the locks are held, is read for all three tables, so the ledger
    and the counters agree with each other and with one state of the vault. Order facts
    the CDM worker has yet to read are then no newer than the ledger, or newer and
    applied as the difference from it, as ever.

    A mart row the recomputation lacks is set to 0 and kept; a ledger row of an order
    the vault lacks is deleted. The hash keys of the products' names are computed in
    Python (:func:`dwh_core.hashing.hash_key`), not with ``md5(upper(trim(name)))``:
    PostgreSQL's ``upper()`` follows the database's ``LC_CTYPE`` (under ``C.UTF-8`` it
    agrees with ``str.upper()`` on the Cyrillic sample names, but ``ß`` stays ``ß``
    where Python makes ``SS``), and ``trim()`` strips spaces only, ``str.strip()`` all
    white space. In the same transaction, the user tags are counted afresh from the
    rewritten ledger (:func:`~dwh_adapters.postgres.tag_store.recount_tags`, its
    transitions at ``clock``): the tags' control row is locked before everything else,
    as the CDM worker's batches take it first. Needs a connection with no transaction
    open."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("rebuild_marts needs a connection with no transaction open")
    with _snapshot(conn, read_only=False, lock=True):
        names = conn.execute(_CURRENT_PRODUCT_NAMES).fetchall()
        products = [product for product, _ in names]
        name_keys = [hash_key(name) for _, name in names]
        ledger = conn.execute(
            _REWRITE_LEDGER, {"products": products, "name_keys": name_keys}
        ).fetchone()
        writes = [TableWrites(LEDGER_TABLE, *_counts(ledger))]
        for mart in (_PRODUCTS, _CATEGORIES):
            row = conn.execute(mart.format(_REWRITE_COUNTERS)).fetchone()
            writes.append(TableWrites(mart.qualified, *_counts(row)))
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        tags = recount_tags(conn, clock or now)
    ledger_writes, product_writes, category_writes = writes
    return RebuildResult(product_writes, category_writes, ledger_writes, tags)


@contextmanager
def _snapshot(conn: Connection, read_only: bool, lock: bool = False) -> Iterator[None]:
    """A transaction reading one snapshot: ``REPEATABLE READ`` when the connection has no
    transaction open (taken after the lock of the marts and the ledger, if asked), else
    a savepoint in the caller's transaction."""
    own = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction():
        if own:
            mode = "READ ONLY" if read_only else "READ WRITE"
            conn.execute(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, {mode}")
        if lock:
            # No snapshot is taken by LOCK TABLE: the one read is taken after the locks.
            conn.execute("LOCK TABLE cdm.tag_control IN EXCLUSIVE MODE")
            conn.execute(_LOCK)
        yield


def _counts(row: Sequence[Any] | None) -> tuple[int, int, int]:
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _compare_counters(conn: Connection, mart: _Mart, limit: int | None) -> MartComparison:
    rows = conn.execute(mart.format(_COUNTER_DIFFERENCES), {"limit": limit}).fetchall()
    compared, differing, names = rows[0][:3]
    differences = tuple(
        CounterDifference(user_key, user_id, key, business_key, name, stored, expected or 0)
        for user_key, user_id, key, business_key, name, stored, expected in (
            row[3:] for row in rows
        )
        if user_key is not None
    )
    return MartComparison(mart.qualified, compared, differing, differences, names)


def _compare_ledger(conn: Connection, limit: int | None) -> LedgerComparison:
    statement = RECOMPUTE + _LEDGER_DIFFERENCES
    rows = conn.execute(statement, {"limit": limit}).fetchall()
    compared, differing = rows[0][:2]
    differences = tuple(
        LedgerDifference(row[2], row[3], _aspects(*row[4:])) for row in rows if row[2] is not None
    )
    return LedgerComparison(compared, differing, differences)


def _aspects(
    missing: bool,
    extra: bool,
    user: bool,
    version: bool,
    counted: bool,
    products: bool,
    categories: bool,
) -> tuple[str, ...]:
    if missing:
        return ("missing",)
    if extra:
        return ("extra",)
    flags = {"user": user, "version": version, "counted": counted}
    if not counted:
        flags |= {"products": products, "categories": categories}
    return tuple(name for name, differs in flags.items() if differs)


def _ambiguities(conn: Connection) -> VaultAmbiguities:
    row = conn.execute(_AMBIGUITIES).fetchone()
    assert row is not None
    return VaultAmbiguities(*row)
