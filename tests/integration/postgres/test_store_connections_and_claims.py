"""What the PostgreSQL stores share: the connection lifecycle
(:mod:`dwh_adapters.postgres.connection`) and the key claims of the vault and counter
stores (:mod:`dwh_adapters.postgres.claims`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import attrs
import psycopg
import pytest

from dwh_adapters.postgres.counter_store import PostgresCounterStore
from dwh_adapters.postgres.raw_events import PostgresRawEventStore
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.postgres.vault_store import PostgresVaultStore
from dwh_core.hashing import hash_key
from tests.support.stores import T0, Connection, event, select

pytestmark = pytest.mark.integration


def test_keys_claimed_but_not_saved_leave_no_placeholder_rows(
    settings: PgSettings, db: Connection
) -> None:
    """Shared satellite keys and order keys are claimed with placeholder rows so that
    two replicas cannot both take them for new; what a transaction claimed and did not
    save is released before it commits."""
    product = ("product_names", hash_key("a product no order has"))
    with PostgresVaultStore(settings) as vault, vault.transaction() as transaction:
        assert transaction.satellite_states({product}) == {}
    with PostgresCounterStore(settings) as store, store.transaction() as counters:
        assert counters.ledger({hash_key(424242)}) == {}
    assert select(db, "SELECT count(*) FROM dds.satellite_state") == [(0,)]
    assert select(db, "SELECT count(*) FROM cdm.order_contributions") == [(0,)]


def test_a_store_reconnects_on_the_next_call_after_its_connection_is_lost(
    settings: PgSettings, db: Connection
) -> None:
    name = f"dwh-test-{uuid.uuid4().hex[:12]}"
    with PostgresRawEventStore(attrs.evolve(settings, application_name=name)) as store:
        store.save([event(1, 1)])
        select(
            db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            name,
        )

        with pytest.raises(psycopg.OperationalError):
            store.save([event(1, 2)])
        store.save([event(1, 3)])

    assert select(db, "SELECT update_ts FROM stg.order_events") == [(T0 + timedelta(minutes=3),)]


def test_a_store_opens_no_connection_until_it_is_used() -> None:
    unreachable = PgSettings("127.0.0.1", 1, "nowhere", "nobody", "secret")
    with PostgresVaultStore(unreachable), PostgresCounterStore(unreachable):
        pass
    assert "secret" not in repr(unreachable) and "secret" not in unreachable.describe()
