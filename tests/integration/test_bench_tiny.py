"""A tiny run of the benchmark (`python -m bench`, docs/PERFORMANCE.md) on the local
stack, so that it cannot rot: it checks correctness, never speed. A few hundred orders,
a tiny baseline and a short freshness phase at a low rate; the benchmark compares every
pipeline's marts with the oracle itself, and exits non-zero when one differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dwh_workers.topology import LAYER_NAMES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMAND = [
    "--orders", "300",
    "--baseline-orders", "30",
    "--rates", "20",
    "--freshness-seconds", "3",
]  # fmt: skip


def _names(text: str) -> set[str]:
    return set(text.split())


KEYS = {
    "": _names(
        "run_id started_at finished_at command machine parameters headline catch_up workers"
        " floor freshness final_marts_exact other_writers baseline targets verified tags"
    ),
    "machine": _names(
        "cpu cores memory_gib kernel os python postgresql kafka redis confluent_kafka"
        " librdkafka psycopg git load_average_before load_average_after"
    ),
    "parameters": _names(
        "orders baseline_orders rates freshness_seconds seed dictionary_seed partitions worker_env"
    ),
    "headline": _names(
        "ours_orders_per_s baseline_orders_per_s ours_over_baseline floor_orders_per_s"
        " ours_over_floor floor_all_written_orders_per_s ours_over_floor_all_written"
    ),
    "catch_up": _names(
        "orders messages seconds orders_per_s messages_per_s exact differing_counters"
        " expected_totals found_totals layers timeline produce_s dead_letters services_cpu_s"
    ),
    "floor": _names("vault_and_marts all_written tables"),
    "baseline": _names("catch_up processes"),
    "verified": _names(
        "mart_differences tag_differences tag_counts_compared tag_transitions tag_members"
    ),
    "tags": _names(
        "without without_orders_per_s without_cdm_cpu_s with_over_without cdm_cpu_share"
    ),
}
LAYER_KEYS = _names("messages first_commit_s done_s orders_per_s messages_per_s")
WORKER_KEYS = _names(
    "batch_size batch_wait_ms catch_up_cpu_s catch_up_cores catch_up_rss_mib catch_up_messages"
    " catch_up_batches catch_up_mean_batch catch_up_handle_s catch_up_messages_per_handle_s"
    " cpu_s peak_rss_mib exit_code"
)
FLOOR_SET_KEYS = _names("tables rows bytes seconds orders_per_s")
FRESHNESS_KEYS = _names(
    "rate seconds probes achieved_rate visible p50_ms p95_ms p99_ms max_ms mean_ms"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The results of one tiny run, and the folder it wrote them to."""
    out = tmp_path_factory.mktemp("bench")
    finished = subprocess.run(
        [sys.executable, "-m", "bench", *COMMAND, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert finished.returncode == 0, f"the benchmark failed:\n{finished.stdout}\n{finished.stderr}"
    [results_file] = out.glob("*.json")
    return json.loads(results_file.read_text()), out


def test_the_marts_of_the_workers_and_of_the_baseline_equal_the_oracle(
    run: tuple[dict[str, Any], Path],
) -> None:
    results, _ = run
    assert results["catch_up"]["exact"]
    assert results["catch_up"]["differing_counters"] == 0
    assert results["final_marts_exact"]
    assert results["baseline"]["catch_up"]["exact"]
    assert results["catch_up"]["dead_letters"] == 0
    assert [run["exact"] for run in results["tags"]["without"].values()] == [True, True]


def test_after_the_run_the_marts_and_tags_equal_a_recount_from_scratch(
    run: tuple[dict[str, Any], Path],
) -> None:
    verified = run[0]["verified"]
    assert verified["mart_differences"] == verified["tag_differences"] == 0
    assert verified["tag_counts_compared"] > 0


def test_every_probe_of_the_freshness_phase_became_visible(
    run: tuple[dict[str, Any], Path],
) -> None:
    results, _ = run
    [fresh] = results["freshness"]
    assert fresh["probes"] == fresh["visible"] == 60


def test_the_results_hold_every_figure(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    for section, keys in KEYS.items():
        found = results[section] if section else results
        assert keys <= found.keys(), f"{section or 'top level'} lacks {keys - found.keys()}"
    for pipeline in (results["catch_up"], results["baseline"]["catch_up"]):
        assert set(pipeline["layers"]) == set(LAYER_NAMES)
        assert all(timing.keys() >= LAYER_KEYS for timing in pipeline["layers"].values())
    assert set(results["workers"]) == set(results["baseline"]["processes"]) == set(LAYER_NAMES)
    assert all(worker.keys() >= WORKER_KEYS for worker in results["workers"].values())
    assert results["floor"]["vault_and_marts"].keys() >= FLOOR_SET_KEYS
    assert results["floor"]["all_written"].keys() >= FLOOR_SET_KEYS
    assert all(fresh.keys() >= FRESHNESS_KEYS for fresh in results["freshness"])


def test_every_rate_time_and_size_is_positive(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    assert all(value > 0 for value in results["headline"].values())
    catch_up, naive = results["catch_up"], results["baseline"]["catch_up"]
    for pipeline in (catch_up, naive):
        assert pipeline["seconds"] > 0
        assert pipeline["orders_per_s"] > 0
        assert all(
            timing["done_s"] > 0 and timing["orders_per_s"] > 0
            for timing in pipeline["layers"].values()
        )
    assert catch_up["messages"] >= catch_up["orders"] == 300
    for worker in results["workers"].values():
        assert worker["exit_code"] == 0
        assert worker["peak_rss_mib"] > 0 and worker["cpu_s"] > 0
        assert worker["catch_up_messages"] > 0 and worker["catch_up_handle_s"] > 0
    for floor_set in (results["floor"]["vault_and_marts"], results["floor"]["all_written"]):
        assert floor_set["rows"] > 0 and floor_set["bytes"] > 0 and floor_set["seconds"] > 0
    [fresh] = results["freshness"]
    assert 0 < fresh["p50_ms"] <= fresh["p95_ms"] <= fresh["p99_ms"] <= fresh["max_ms"]


def test_the_markdown_table_is_written_next_to_the_json(run: tuple[dict[str, Any], Path]) -> None:
    results, out = run
    [results_file] = out.glob("*.json")
    table = results_file.with_suffix(".md").read_text()
    assert "**ours**, end to end (300 orders" in table
    assert "naive baseline (30 orders" in table
    assert all(target["target"] in table for target in results["targets"])
