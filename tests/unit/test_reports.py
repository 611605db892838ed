"""What ``dwh`` prints, from plain data: no services needed."""

from __future__ import annotations

import io
import itertools
import uuid

import attrs
import pytest

from dwh_adapters.kafka import StoredDeadLetter
from dwh_adapters.postgres.marts import Totals, UserRef
from dwh_adapters.postgres.recompute import (
    CounterDifference,
    LedgerComparison,
    LedgerDifference,
    MartComparison,
    MartDifferences,
    RebuildResult,
    TableWrites,
    VaultAmbiguities,
)
from dwh_adapters.postgres.tables import ORDERS_TABLES
from dwh_workers import reports
from dwh_workers.errors import OperatorError
from dwh_workers.pipeline_status import LayerState, PipelineProgress, Status, Summary
from dwh_workers.replay import Reset, replay_targets
from dwh_workers.topology import LAYER_NAMES, LAYERS
from dwh_workers.warehouse_queries import CategoryUsers, TopPairs, UserMarts

ANNA = UserRef("6276e8cd0cf48b4cded00870", "Anna", "anna_k")


def states(lag: int = 0) -> list[LayerState]:
    return [
        LayerState(layer, members=1, in_topic=10, lag=lag, dead_letters=0)
        for layer in LAYERS.values()
    ]


def test_every_layer_has_a_table_of_the_orders_it_stored() -> None:
    assert tuple(ORDERS_TABLES) == LAYER_NAMES


def test_a_users_marts_show_the_first_top_products_and_categories() -> None:
    marts = UserMarts(ANNA, [("Пицца Маргарита", 3), ("Суп", 1)], [("Пицца", 3), ("Супы", 1)])

    assert reports.marts_report(marts, top=1) == (
        "user Anna (anna_k, 6276e8cd0cf48b4cded00870)\n"
        "  products:\n"
        "        3  Пицца Маргарита\n"
        "  categories:\n"
        "        3  Пицца"
    )
    assert reports.marts_report(UserMarts(ANNA, [], []), top=5) == (
        "user Anna (anna_k, 6276e8cd0cf48b4cded00870): no counted orders"
    )


def test_the_top_users_of_a_category_and_the_top_pairs() -> None:
    assert reports.marts_report(CategoryUsers("Супы", []), top=5) == (
        "no counted orders in category 'Супы'"
    )
    assert reports.marts_report(CategoryUsers("Супы", [("Anna", "anna_k", 12)]), top=5) == (
        "top users of Супы:\n     12  Anna (anna_k)"
    )
    assert reports.marts_report(TopPairs([("Anna", "anna_k", "Супы", 12)]), top=5) == (
        "top (user, category) pairs:\n     12  Anna (anna_k): Супы"
    )


def test_status_shows_what_the_probed_workers_answer_and_a_dash_for_the_others() -> None:
    status = Status(states(lag=1234), {"stg": 9001}, {"stg": "down"}, {"stg.order_events": 5000})

    lines = reports.status_report(status).splitlines()

    assert lines[1] == "stg         1       down     1,234         10             0  stg-service"
    assert lines[2].split()[2] == "-"
    assert "local: /readyz of the worker on 127.0.0.1:9001 (scripts/pipeline)" in lines[4]
    assert lines[-1] == "stg.order_events                        5,000"


def reading(lag: int, orders: int) -> PipelineProgress:
    stored = dict.fromkeys(LAYER_NAMES, orders)
    return PipelineProgress(states(lag=lag), stored, Totals(orders, orders, 0, 0, 0, 0))


def test_watch_ends_when_no_layer_lags_and_the_marts_stopped_changing() -> None:
    readings = [reading(5, 1), reading(0, 2), reading(0, 3), reading(0, 3), reading(0, 9)]
    stream = io.StringIO()
    taken = iter(readings)

    reports.watch(taken, until_caught_up=True, timeout_s=None, stream=stream)

    assert next(taken) == readings[4]  # stopped at the first repeat without lag
    assert "lag 0" in stream.getvalue()


def test_watch_gives_up_at_its_timeout_naming_who_is_behind() -> None:
    forever = itertools.repeat(reading(7, 1))
    with pytest.raises(OperatorError, match=r"not caught up after 0s: stg lag 7 \(1 worker"):
        reports.watch(forever, until_caught_up=True, timeout_s=0, stream=io.StringIO())


def test_a_summary_compares_with_the_baseline() -> None:
    totals = Totals(5, 4, 3, 9, 2, 6)
    summary = Summary(totals, {"stg": 0, "dds": 2, "cdm": 0}, [UserMarts(ANNA, [], [])])

    text = reports.summary_report(summary, baseline=totals, top=5)

    assert "compared with before this run: unchanged" in text
    assert "dead letters: stg 0, dds 2, cdm 0" in text
    assert text.endswith("\n\nuser Anna (anna_k, 6276e8cd0cf48b4cded00870): no counted orders")


def test_replay_and_dead_letters_read_a_line_each() -> None:
    assert reports.replay_report([Reset("stg-service", "orders", 3, 1200)]) == (
        "stg-service: back to the beginning of orders (3 partition(s), 1,200 messages to read "
        "again)\nstart the workers to replay (scripts/pipeline start); the marts end the same"
    )
    letter = StoredDeadLetter(
        None, None, {"dwh.stage": "stg", "dwh.source.topic": "orders"}, 0, 7, redriven=True
    )
    assert reports.dead_letters_report([letter], "orders-dlq") == (
        "0:7  stage=stg  from=orders:?:?  reason=  (redriven)\n1 dead letter(s) in orders-dlq"
    )


def test_a_group_or_topic_goes_with_one_layer() -> None:
    assert replay_targets("dds", group="g", topic=None) == [("g", LAYERS["dds"].source_topic)]
    assert len(replay_targets("all", group=None, topic=None)) == len(LAYER_NAMES)
    with pytest.raises(OperatorError, match="--group and --topic name one layer's group"):
        replay_targets("all", group="g", topic=None)


# --- marts verify and rebuild ----------------------------------------------------------------


def comparison(
    table: str,
    compared: int,
    rows: tuple[CounterDifference, ...] = (),
    differing: int | None = None,
    names: int = 0,
) -> MartComparison:
    return MartComparison(
        table, compared, len(rows) if differing is None else differing, rows, names
    )


NO_AMBIGUITY = VaultAmbiguities(0, 0, 0)
USER_KEY, PRODUCT_KEY, ORDER_KEY = (uuid.UUID(int=n) for n in (1, 2, 3))


def test_verified_marts_are_one_line_and_names_and_ambiguities_add_a_note() -> None:
    clean = MartDifferences(
        comparison("cdm.user_product_counters", 1200),
        comparison("cdm.user_category_counters", 300),
        LedgerComparison(5000, 0, ()),
        NO_AMBIGUITY,
    )

    assert reports.verify_report(clean) == (
        "marts verified: 1,200 product rows, 300 category rows, 5,000 orders: no differences"
    )
    named = attrs.evolve(
        clean,
        categories=comparison("cdm.user_category_counters", 300, names=2),
        ambiguities=VaultAmbiguities(0, 1, 0),
    )
    assert reports.verify_report(named).splitlines()[1:] == [
        "note: 2 cdm.user_category_counters row(s) have the right count under another name "
        "than the vault's newest (display names, not differences)",
        "warning: the vault cannot say exactly what the marts hold: 1 product(s) linked to "
        "several categories",
    ]


def test_differences_are_listed_per_table_with_how_many_more() -> None:
    rows = (
        CounterDifference(USER_KEY, "6276e8cd0cf48b4cded00870", PRODUCT_KEY, "a01", "Суп", 3, 2),
        CounterDifference(USER_KEY, None, PRODUCT_KEY, None, None, None, 1),
    )
    differences = MartDifferences(
        comparison("cdm.user_product_counters", 40, rows, differing=25),
        comparison("cdm.user_category_counters", 30),
        LedgerComparison(
            100,
            2,
            (
                LedgerDifference(ORDER_KEY, 1371198, ("user", "products")),
                LedgerDifference(ORDER_KEY, None, ("extra",)),
            ),
        ),
        NO_AMBIGUITY,
    )

    assert reports.verify_report(differences).splitlines() == [
        "cdm.user_product_counters: 25 of 40 rows differ",
        "  count    user 6276e8cd0cf48b4cded00870  Суп (a01): stored 3, recomputed 2",
        f"  missing  user key {USER_KEY}  key {PRODUCT_KEY}: stored no row, recomputed 1",
        "  ... and 23 more",
        "cdm.user_category_counters: no differences (30 rows)",
        "cdm.order_contributions: 2 of 100 orders differ",
        "  order 1371198: user, products",
        f"  order {ORDER_KEY}: extra",
        "the marts differ from their recomputation from the vault: `dwh marts rebuild` "
        "rewrites them (a pipeline still catching up shows its backlog here: verify when "
        "every layer has caught up)",
    ]


def test_a_rebuild_says_what_it_wrote_per_table() -> None:
    nothing = RebuildResult(
        TableWrites("cdm.user_product_counters", 0, 0, 0),
        TableWrites("cdm.user_category_counters", 0, 0, 0),
        TableWrites("cdm.order_contributions", 0, 0, 0),
    )
    assert reports.rebuild_report(nothing) == (
        "the marts already equal their recomputation from the vault: nothing rewritten"
    )
    some = attrs.evolve(
        nothing,
        products=TableWrites("cdm.user_product_counters", 1, 2, 3),
        ledger=TableWrites("cdm.order_contributions", 1000, 0, 1),
    )
    assert reports.rebuild_report(some) == (
        "rewrote the marts from the vault: 1,007 rows written\n"
        "  cdm.order_contributions: 1,000 inserted, 0 updated, 1 deleted (orders not in the vault)\n"
        "  cdm.user_product_counters: 1 inserted, 2 updated, 3 set to 0\n"
        "  cdm.user_category_counters: 0 inserted, 0 updated, 0 set to 0"
    )
