"""What ``dwh`` shows people: the marts, the totals, the pipeline's status, the summary
of a run, replays and dead letters as text, and the board of ``dwh watch``. The data
comes from :mod:`dwh_workers.warehouse_queries`, :mod:`dwh_workers.pipeline_status`,
:mod:`dwh_workers.replay` and the Kafka adapter; nothing here reads it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from dwh_adapters.kafka import RedriveResult, StoredDeadLetter
from dwh_adapters.kafka.dead_letters import describe_refused
from dwh_adapters.postgres.marts import Totals
from dwh_adapters.postgres.recompute import (
    CounterDifference,
    LedgerComparison,
    MartComparison,
    MartDifferences,
    RebuildResult,
)
from dwh_workers.errors import OperatorError
from dwh_workers.pipeline_status import LayerState, PipelineProgress, Status, Summary
from dwh_workers.progress import Board
from dwh_workers.replay import Reset
from dwh_workers.topology import LAYER_NAMES
from dwh_workers.warehouse_queries import CategoryUsers, Marts, UserMarts, describe_ambiguities

# --- the warehouse -------------------------------------------------------------------------


def marts_report(marts: Marts, top: int) -> str:
    """``dwh marts``: one user's products and categories (the first ``top`` of each), the
    top users of a category, or the largest (user, category) counters."""
    if isinstance(marts, UserMarts):
        return user_marts_report(marts, top)
    if isinstance(marts, CategoryUsers):
        if not marts.users:
            return f"no counted orders in category {marts.category!r}"
        return "\n".join(
            [f"top users of {marts.category}:"]
            + [f"  {count:>5}  {name} ({login})" for name, login, count in marts.users]
        )
    return "\n".join(
        ["top (user, category) pairs:"]
        + [
            f"  {count:>5}  {name} ({login}): {category_name}"
            for name, login, category_name, count in marts.pairs
        ]
    )


def user_marts_report(marts: UserMarts, top: int) -> str:
    """A user's first ``top`` products and categories, as ``dwh marts --user`` shows them."""
    if not marts.products and not marts.categories:
        return f"user {marts.user.describe()}: no counted orders"
    return "\n".join(
        [f"user {marts.user.describe()}", "  products:"]
        + [f"    {count:>5}  {name}" for name, count in marts.products[:top]]
        + ["  categories:"]
        + [f"    {count:>5}  {name}" for name, count in marts.categories[:top]]
    )


def totals_report(totals: Totals) -> str:
    return "\n".join(
        [
            f"orders in the warehouse: {totals.orders:,} (stg.order_events)",
            f"orders counted in the marts (newest version CLOSED): {totals.counted_orders:,}",
            f"user x product counters: {totals.product_counters:,} "
            f"(order counts add up to {totals.product_count_sum:,})",
            f"user x category counters: {totals.category_counters:,} "
            f"(order counts add up to {totals.category_count_sum:,})",
        ]
    )


def verify_report(differences: MartDifferences) -> str:
    """``dwh marts verify``: one line when the marts and the ledger equal their
    recomputation from the vault; else, per table, how many rows differ and the first of
    them (as many as were read). Then notes on names and on what the vault cannot say."""
    products, categories, ledger = (
        differences.products,
        differences.categories,
        differences.ledger,
    )
    if differences.empty:
        lines = [
            f"marts verified: {products.compared:,} product rows, "
            f"{categories.compared:,} category rows, {ledger.compared:,} orders: no differences"
        ]
    else:
        lines = [
            *_mart_differences(products),
            *_mart_differences(categories),
            *_ledger_differences(ledger),
            "the marts differ from their recomputation from the vault: `dwh marts rebuild` "
            "rewrites them (a pipeline still catching up shows its backlog here: verify "
            "when every layer has caught up)",
        ]
    names = [
        f"{mart.names_differing:,} {mart.table} row(s)"
        for mart in (products, categories)
        if mart.names_differing
    ]
    if names:
        lines.append(
            f"note: {' and '.join(names)} have the right count under another name than the "
            "vault's newest (display names, not differences)"
        )
    if differences.ambiguities:
        lines.append(
            "warning: the vault cannot say exactly what the marts hold: "
            f"{describe_ambiguities(differences.ambiguities)}"
        )
    return "\n".join(lines)


def _mart_differences(mart: MartComparison) -> list[str]:
    if not mart.differing:
        return [f"{mart.table}: no differences ({mart.compared:,} rows)"]
    return [
        f"{mart.table}: {mart.differing:,} of {mart.compared:,} rows differ",
        *(f"  {_counter_difference(row)}" for row in mart.rows),
        *_more(mart.differing, len(mart.rows)),
    ]


def _counter_difference(row: CounterDifference) -> str:
    user = row.user_id or f"key {row.user_key}"
    what = row.name or row.business_key or f"key {row.key}"
    if row.business_key and row.business_key != what:
        what = f"{what} ({row.business_key})"
    stored = "no row" if row.stored is None else f"{row.stored:,}"
    return f"{row.kind:<7}  user {user}  {what}: stored {stored}, recomputed {row.expected:,}"


def _ledger_differences(ledger: LedgerComparison) -> list[str]:
    if not ledger.differing:
        return [f"cdm.order_contributions: no differences ({ledger.compared:,} orders)"]
    return [
        f"cdm.order_contributions: {ledger.differing:,} of {ledger.compared:,} orders differ",
        *(
            f"  order {row.order_id if row.order_id is not None else row.order_key}: "
            f"{', '.join(row.aspects)}"
            for row in ledger.rows
        ),
        *_more(ledger.differing, len(ledger.rows)),
    ]


def _more(total: int, shown: int) -> list[str]:
    return [f"  ... and {total - shown:,} more"] if total > shown else []


def rebuild_report(result: RebuildResult) -> str:
    """``dwh marts rebuild``: the rows written to each table."""
    if not result.rows_written:
        return "the marts already equal their recomputation from the vault: nothing rewritten"
    return "\n".join(
        [f"rewrote the marts from the vault: {result.rows_written:,} rows written"]
        + [
            f"  {writes.table}: {writes.inserted:,} inserted, {writes.updated:,} updated, "
            f"{writes.removed:,} {removed}"
            for writes, removed in (
                (result.ledger, "deleted (orders not in the vault)"),
                (result.products, "set to 0"),
                (result.categories, "set to 0"),
            )
        ]
    )


# --- the pipeline --------------------------------------------------------------------------


def status_report(status: Status) -> str:
    """Per layer: members of its consumer group (workers connected anywhere), what the
    local worker's ``/readyz`` answers, lag, messages in its topic and its dead-letter
    topic; then rows per warehouse table."""
    lines = [
        f"{'layer':<5} {'workers':>7} {'local':>10} {'lag':>9} {'in topic':>10} "
        f"{'dead letters':>13}  group"
    ]
    for state in status.layers:
        name = state.layer.name
        local = status.local.get(name, "-")
        lines.append(
            f"{name:<5} {state.members:>7} {local:>10} {state.lag:>9,} {state.in_topic:>10,} "
            f"{state.dead_letters:>13,}  {state.layer.consumer_group}"
        )
    lines.append(
        "workers: members of the layer's consumer group; local: /readyz of the worker "
        f"on 127.0.0.1:{', '.join(str(port) for port in status.ports.values()) or '-'} "
        "(scripts/pipeline)"
    )
    lines.append("")
    lines.append(f"{'table':<34} {'rows':>10}")
    lines.extend(f"{table:<34} {rows:>10,}" for table, rows in sorted(status.row_counts.items()))
    return "\n".join(lines)


def watch(
    progress: Iterable[PipelineProgress],
    until_caught_up: bool,
    timeout_s: float | None,
    stream: TextIO | None = None,
) -> float:
    """Show each layer's progress through its topic, one board per reading of
    ``progress``, until every consumer group has committed everything and the marts
    stopped changing (``until_caught_up``), or until interrupted, or ``timeout_s``; the
    seconds it watched. Raises :class:`OperatorError` at the timeout."""
    board = Board(list(LAYER_NAMES), stream=stream)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    previous: tuple[object, ...] | None = None
    try:
        for reading in progress:
            for state in reading.layers:
                note = _watch_note(state, reading.orders_stored[state.layer.name])
                board.set(state.layer.name, state.processed, state.in_topic, note)
            board.refresh()
            now = (reading.lags, reading.totals)
            if until_caught_up and not any(reading.lags) and now == previous:
                return board.elapsed()
            previous = now
            if deadline is not None and time.monotonic() > deadline:
                raise OperatorError(
                    f"not caught up after {timeout_s:g}s: {_behind(reading.layers)}"
                )
        return board.elapsed()
    finally:
        board.finish()  # the last rows, also when interrupted or failing


def _watch_note(state: LayerState, orders_stored: int) -> str:
    parts = [f"lag {state.lag:,}", f"{orders_stored:,} orders stored"]
    if state.dead_letters:
        parts.append(f"{state.dead_letters:,} dead letters")
    if not state.members:
        parts.append("no worker in the group!")
    return " · ".join(parts)


def _behind(states: Iterable[LayerState]) -> str:
    behind = [
        f"{s.layer.name} lag {s.lag:,} ({s.members} worker(s) in {s.layer.consumer_group})"
        for s in states
        if s.lag
    ]
    return "; ".join(behind) or "the marts were still changing"


def summary_report(summary: Summary, baseline: Totals | None, top: int = 5) -> str:
    """The quickstart's closing words: orders, marts, dead letters, and the marts of the
    busiest users exactly as ``dwh marts --user <login> --top <top>`` shows them."""
    letters = ", ".join(f"{name} {count:,}" for name, count in summary.dead_letters.items())
    lines = [totals_report(summary.totals)]
    if baseline is not None:
        lines.append(f"compared with before this run: {_compared(baseline, summary.totals)}")
    if summary.tag_members:
        tags = ", ".join(f"{tag} {count:,}" for tag, count in summary.tag_members.items())
        lines.append(f"tag members: {tags} (dwh tags list; dwh tags --user <login>)")
    lines += [
        f"dead letters: {letters} (dwh dead-letters list --topic <source topic>-dlq)",
        "",
        f"the {len(summary.busiest)} users with the most counted orders "
        f"(as `dwh marts --user <login> --top {top}` shows them):",
    ]
    for marts in summary.busiest:
        lines.extend(["", user_marts_report(marts, top)])
    return "\n".join(lines)


def _compared(baseline: Totals, totals: Totals) -> str:
    if baseline == totals:
        return "unchanged (every layer is idempotent: what was replayed added nothing)"
    return (
        f"{totals.orders - baseline.orders:+,} orders in the warehouse, "
        f"{totals.counted_orders - baseline.counted_orders:+,} counted in the marts"
    )


# --- repairs -------------------------------------------------------------------------------


def replay_report(resets: Iterable[Reset]) -> str:
    return "\n".join(
        [
            f"{reset.group}: back to the beginning of {reset.topic} "
            f"({reset.partitions} partition(s), {reset.messages:,} messages to read again)"
            for reset in resets
        ]
        + ["start the workers to replay (scripts/pipeline start); the marts end the same"]
    )


def dead_letters_report(letters: Sequence[StoredDeadLetter], topic: str) -> str:
    """A line per letter (where it is, the stage that rejected it, where it came from,
    why), then how many there are."""
    lines = []
    for letter in letters:
        headers = letter.headers
        source = ":".join(
            headers.get(f"dwh.source.{part}", "?") for part in ("topic", "partition", "offset")
        )
        redriven = "  (redriven)" if letter.redriven else ""
        lines.append(
            f"{letter.partition}:{letter.offset}  stage={headers.get('dwh.stage', '?')}  "
            f"from={source}  reason={letter.reason}{redriven}"
        )
    lines.append(f"{len(letters)} dead letter(s) in {topic}")
    return "\n".join(lines)


def redrive_report(result: RedriveResult, topic: str, source: str) -> str:
    """What a redrive of ``topic`` back to ``source`` did, and the first letters it
    refused."""
    lines = [
        f"re-drove {result.sent} dead letter(s) from {topic} to {source}; "
        f"{result.skipped} left pending (reason did not match)"
    ]
    if result.refused:
        shown = "; ".join(describe_refused(letter) for letter in result.refused[:10])
        more = f"; and {len(result.refused) - 10} more" if len(result.refused) > 10 else ""
        lines.append(
            f"refused {len(result.refused)} letter(s) whose dwh.source.topic is not {source}, "
            f"left pending: {shown}{more}"
        )
    return "\n".join(lines)
