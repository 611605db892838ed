"""The ``dwh`` command's parts that need no services: progress output, the feed's
arithmetic, argument checks and a refusal before any network (how errors read:
test_error_messages)."""

from __future__ import annotations

import io
import json

import pytest

from dwh_adapters.postgres.marts import Totals
from dwh_workers import cli
from dwh_workers.feed import Feed
from dwh_workers.progress import Board, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(**changes: object) -> Feed:
    values: dict[str, object] = {
        "orders": 50,
        "seed": 3,
        "dictionary_seed": 7,
        "cancelled_share": 0.1,
        "update_share": 0.2,
        "duplicate_share": 0.05,
    }
    return Feed(**{**values, **changes})  # type: ignore[arg-type]


# --- progress -------------------------------------------------------------------------------


def test_progress_off_a_terminal_is_plain_lines_with_the_count_and_rate() -> None:
    stream = io.StringIO()
    progress = Progress("producing", total=10, stream=stream, interval_s=0)

    progress.update(4)
    progress.finish()

    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("producing:         4/10  40.0%")
    assert "ETA" in lines[0]
    assert lines[-1].startswith("producing:         4/10  40.0%")
    assert "ETA" not in lines[-1]
    assert "\x1b" not in stream.getvalue()


def test_a_board_on_a_terminal_redraws_its_rows_in_place_with_bars() -> None:
    stream = Terminal()
    board = Board(["stg", "dds", "cdm"], stream=stream, interval_s=0)
    for done in (1, 2):
        for label in ("stg", "dds", "cdm"):
            board.set(label, done, total=2, note="lag 0")
        board.refresh()
    board.finish()

    text = stream.getvalue()
    assert text.count("\x1b[2F") == 2  # back up two rows before each redrawing
    assert "[########################] stg:         2/2 100.0%" in text
    assert text.endswith("lag 0\x1b[K\n")


def test_the_rate_counts_only_the_work_done_while_watching() -> None:
    stream = io.StringIO()
    board = Board(["stg"], stream=stream, interval_s=3600)
    board.set("stg", 1_000_000, total=2_000_000)

    board.finish()

    assert "        0/s" in stream.getvalue()


# --- the feed -------------------------------------------------------------------------------


def test_a_live_feed_is_rate_times_duration_messages_of_orders_after_the_backlog() -> None:
    backlog = [json.loads(value)["object_id"] for value in feed().messages()]
    live = [
        json.loads(value)["object_id"]
        for value in feed(rate=4.0, duration_s=2.5, after=50).messages()
    ]

    assert len(live) == feed(rate=4.0, duration_s=2.5).live_messages() == 10
    assert min(live) > max(backlog)


def test_a_feed_without_a_duration_is_not_live_and_repeats_byte_for_byte() -> None:
    assert feed(rate=4.0).live_messages() is None
    assert list(feed().messages()) == list(feed().messages())


# --- arguments and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["orders", "generate", "--duration", "5"],
        ["marts", "--json"],
        ["replay"],
        ["status", "--ports", "a,b"],
    ],
)
def test_inconsistent_arguments_are_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)

    assert exit_.value.code == 2


def test_debug_is_accepted_after_the_command_too() -> None:
    args = cli._parser().parse_args(["marts", "--totals", "--debug"])

    assert args.debug
    assert args.name == "marts"


def test_totals_round_trip_through_json() -> None:
    totals = Totals(5, 4, 3, 9, 2, 6)

    assert Totals.from_json(totals.to_json()) == totals


def test_a_redrive_of_a_topic_that_is_not_a_dead_letter_topic_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_HOST", "127.0.0.1")
    monkeypatch.setenv("KAFKA_PORT", "1")  # nothing answers: refused before any network

    code = cli.main(["dead-letters", "redrive", "--topic", "stg-service-orders"])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == (
        "dwh dead-letters redrive: error: stg-service-orders is not a dead-letter topic: a "
        "redrive reads only <source>-dlq topics, and sends their letters back to <source>\n"
    )
