"""What ``dwh`` reads from the warehouse (PostgreSQL), as plain data: one user's marts,
the top users of a category, the largest (user, category) counters, the totals, and
totals saved before; and the marts against their recomputation from the vault, which
``dwh marts rebuild`` writes. Their text for people is :mod:`dwh_workers.reports`."""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

from dwh_adapters.postgres import recompute
from dwh_adapters.postgres.marts import PostgresMarts, Totals, UserRef
from dwh_adapters.postgres.recompute import MartDifferences, RebuildResult, VaultAmbiguities
from dwh_adapters.postgres.settings import PgSettings, connect
from dwh_workers.errors import OperatorError


@frozen
class UserMarts:
    """One user's counters: (product name, orders) and (category name, orders), largest
    first, all of them."""

    user: UserRef
    products: list[tuple[str, int]]
    categories: list[tuple[str, int]]


@frozen
class CategoryUsers:
    """The top users of a category: (name, login, orders), largest first."""

    category: str
    users: list[tuple[str, str, int]]


@frozen
class TopPairs:
    """The largest (user, category) counters: (name, login, category name, orders)."""

    pairs: list[tuple[str, str, str, int]]


Marts = UserMarts | CategoryUsers | TopPairs


def read_marts(postgres: PgSettings, user: str | None, category: str | None, top: int) -> Marts:
    """One user's marts (by source id or login), or the ``top`` users of a category, or
    the ``top`` largest (user, category) counters when neither is given. Names, not hash
    keys. Raises :class:`OperatorError` for a user not found or a login not unique."""
    with PostgresMarts(postgres) as warehouse:
        if user:
            return read_user_marts(warehouse, _find_user(warehouse, user))
        if category:
            return CategoryUsers(category, warehouse.top_users(category, top))
        return TopPairs(warehouse.top_categories(top))


def _find_user(warehouse: PostgresMarts, id_or_login: str) -> UserRef:
    """The one user with this source id or login."""
    found = warehouse.find_users(id_or_login)
    if not found:
        raise OperatorError(f"no user with the id or login {id_or_login!r} in the warehouse")
    if len(found) > 1:
        ids = ", ".join(ref.user_id for ref in found)
        raise OperatorError(f"the login {id_or_login!r} belongs to several users: {ids}")
    return found[0]


def read_user_marts(warehouse: PostgresMarts, user: UserRef) -> UserMarts:
    return UserMarts(
        user, warehouse.user_products(user.user_id), warehouse.user_categories(user.user_id)
    )


def read_totals(postgres: PgSettings) -> Totals:
    with PostgresMarts(postgres) as warehouse:
        return warehouse.totals()


def read_baseline(path: str | Path) -> Totals | None:
    """Totals saved by ``dwh marts --totals --json``, or None if the file is absent."""
    file = Path(path)
    if not file.exists():
        return None
    try:
        return Totals.from_json(file.read_text())
    except (ValueError, TypeError) as exc:
        raise OperatorError(f"{path}: not a totals file of `dwh marts --totals --json`") from exc


def verify_marts(postgres: PgSettings, limit: int | None) -> MartDifferences:
    """The marts and the ledger against their recomputation from the vault, the first
    ``limit`` differences of each table
    (:func:`~dwh_adapters.postgres.recompute.mart_differences`)."""
    with connect(postgres) as connection:
        return recompute.mart_differences(connection, limit=limit)


def rebuild_marts(postgres: PgSettings, force: bool) -> RebuildResult:
    """Rewrite the marts and the ledger from the vault
    (:func:`~dwh_adapters.postgres.recompute.rebuild_marts`). Raises
    :class:`OperatorError`, writing nothing, when the vault holds cases the
    recomputation cannot get right, unless ``force``."""
    with connect(postgres) as connection:
        ambiguities = recompute.vault_ambiguities(connection)
        if ambiguities and not force:
            raise OperatorError(
                "the vault cannot say exactly what the marts hold: "
                f"{describe_ambiguities(ambiguities)}; nothing rewritten "
                "(--force rewrites the marts from the vault all the same)"
            )
        return recompute.rebuild_marts(connection)


def describe_ambiguities(ambiguities: VaultAmbiguities) -> str:
    """The cases the recomputation cannot get right, in a few words each."""
    parts = [
        f"{count:,} {what}"
        for count, what in (
            (ambiguities.orders_with_several_users, "order(s) linked to several users"),
            (
                ambiguities.products_with_several_categories,
                "product(s) linked to several categories",
            ),
            (
                ambiguities.statuses_off_their_version,
                "order(s) whose current status is not their newest version's",
            ),
        )
        if count
    ]
    return ", ".join(parts) or "none"
