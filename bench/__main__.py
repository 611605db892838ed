"""``python -m bench``: run the benchmark and write ``<out>/<timestamp>.json`` and ``.md``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.console import say
from bench.processes import REPO
from bench.run import Options, Run

QUICK_FRESHNESS_S = 5.0


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(rate) for rate in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Catch-up throughput, freshness, memory and CPU of the workers on the "
        "local stack, against a naive baseline and the PostgreSQL floor (docs/PERFORMANCE.md).",
    )
    parser.add_argument("--orders", type=int, default=50_000, help="orders in the backlog")
    parser.add_argument(
        "--baseline-orders", type=int, default=1000, help="orders in the naive baseline's backlog"
    )
    parser.add_argument(
        "--rates", type=_rates, default=(100.0, 1000.0), help="freshness rates, orders/s"
    )
    parser.add_argument(
        "--freshness-seconds", type=float, default=None, help="seconds per rate (default 20)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_FRESHNESS_S:g} s per freshness rate"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--seed",
        type=int,
        default=52,
        help="seed of the order feed; the default's order ids (from 1,095,671 on) stay clear "
        "of the feeds of the tests and of `dwh orders generate` on a shared stack",
    )
    parser.add_argument(
        "--dictionary-seed",
        type=int,
        default=907,
        help="seed of the sample dictionaries; the default is the benchmark's own, so its "
        "users are not those of tests that may run on the same stack",
    )
    parser.add_argument("--partitions", type=int, default=3, help="partitions of every topic")
    parser.add_argument(
        "--worker-env",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the workers, e.g. DWH_BATCH_SIZE=5000 (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.orders < 1 or args.baseline_orders < 1 or args.partitions < 1:
        _parser().error("--orders, --baseline-orders and --partitions must be at least 1")
    if args.freshness_seconds is not None and args.freshness_seconds <= 0:
        _parser().error("--freshness-seconds must be above 0")
    seconds = args.freshness_seconds
    if seconds is None:
        seconds = QUICK_FRESHNESS_S if args.quick else 20.0
    options = Options(
        orders=args.orders,
        baseline_orders=args.baseline_orders,
        rates=args.rates,
        freshness_s=seconds,
        out=args.out,
        seed=args.seed,
        dictionary_seed=args.dictionary_seed,
        partitions=args.partitions,
        worker_env=dict(args.worker_env),
    )
    started = datetime.now(UTC)
    results = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)],
        **Run(options).execute(),
    }
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = report.targets(results)
    json_path, markdown_path = report.write(results, args.out, started.strftime("%Y%m%dT%H%M%SZ"))
    print()
    print(report.markdown(results))
    say(f"written: {json_path} and {markdown_path}")
    problems = report.failures(results)
    for problem in problems:
        say(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
