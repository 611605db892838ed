"""The run's results: the performance targets, the JSON file, the Markdown tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dwh_workers.topology import LAYER_NAMES

FRESHNESS_COLUMNS = {"p50_ms": "p50 ms", "p95_ms": "p95 ms", "p99_ms": "p99 ms", "max_ms": "max ms"}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, each with what this run measured and whether it was met."""
    headline, catch_up, workers = results["headline"], results["catch_up"], results["workers"]
    ours = headline["ours_orders_per_s"]
    heaviest = max(LAYER_NAMES, key=lambda layer: workers[layer]["peak_rss_mib"])
    peak = workers[heaviest]["peak_rss_mib"]
    found = [
        {
            "target": "backlog through all three layers, exact",
            "goal": ">= 5,000 orders/s (50,000 in < 10 s)",
            "measured": f"{_number(ours)} orders/s ({catch_up['seconds']:.1f} s)"
            + (", exact" if catch_up["exact"] else ", NOT exact"),
            "met": ours >= 5000 and catch_up["exact"],
        },
        {
            "target": "ours / naive baseline",
            "goal": ">= 100x",
            "measured": f"{_number(headline['ours_over_baseline'])}x",
            "met": headline["ours_over_baseline"] >= 100,
        },
        {
            "target": "ours / PostgreSQL floor",
            "goal": ">= 0.33",
            "measured": f"{headline['ours_over_floor']:.2f}",
            "met": headline["ours_over_floor"] >= 1 / 3,
        },
    ]
    for fresh in results["freshness"]:
        if fresh["rate"] == 100:
            found.append(
                {
                    "target": "p99 freshness at 100 orders/s",
                    "goal": "< 1 s",
                    "measured": f"{fresh['p99_ms']:.0f} ms",
                    "met": fresh["p99_ms"] < 1000 and fresh["visible"] == fresh["probes"],
                }
            )
    tags = results["tags"]
    found.append(
        {
            "target": "the tags' cost: rate with the default rules / with none",
            "goal": ">= 0.90",
            "measured": f"{tags['with_over_without']:.2f}",
            "met": tags["with_over_without"] >= 0.9,
        }
    )
    found.append(
        {
            "target": "peak RSS of each worker",
            "goal": "< 128 MiB",
            "measured": f"{peak:.0f} MiB ({heaviest})",
            "met": peak < 128,
        }
    )
    return found


def failures(results: dict[str, Any]) -> list[str]:
    """What went wrong in the run itself (not a missed target)."""
    problems = []
    if not results["catch_up"]["exact"]:
        problems.append("the workers' marts differ from the oracle after catch-up")
    if not results["final_marts_exact"]:
        problems.append("the workers' marts differ from the oracle after the freshness probes")
    if not results["baseline"]["catch_up"]["exact"]:
        problems.append("the baseline's marts differ from the oracle")
    if results["catch_up"]["dead_letters"]:
        problems.append(f"{results['catch_up']['dead_letters']} dead letters")
    verified = results["verified"]
    if verified["mart_differences"] or verified["tag_differences"]:
        problems.append(
            f"after the run, {verified['mart_differences']} mart and "
            f"{verified['tag_differences']} tag differences from a recount from scratch"
        )
    for when, run in results["tags"]["without"].items():
        if not run["exact"]:
            problems.append(f"the marts of the run without tags ({when}) differ from the oracle")
    for fresh in results["freshness"]:
        if fresh["visible"] != fresh["probes"]:
            problems.append(f"{fresh['probes'] - fresh['visible']} probes never became visible")
    for layer, worker in results["workers"].items():
        if worker["exit_code"] != 0:
            problems.append(f"the {layer} worker exited with {worker['exit_code']}")
    others = results["other_writers"]
    if problems and any(others.values()):
        problems.append(
            f"another pipeline wrote {others['orders']:,} orders and {others['counters']:,} "
            "counters into the same tables meanwhile: run again when the stack is not shared"
        )
    return problems


def write(results: dict[str, Any], out: Path, stamp: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / f"{stamp}.json", out / f"{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    markdown_path.write_text(markdown(results))
    return json_path, markdown_path


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def _other_writers_note(results: dict[str, Any]) -> list[str]:
    others = results["other_writers"]
    if not any(others.values()):
        return []
    return [
        f"**Another pipeline wrote into the same tables during the run** ({others['orders']:,} "
        f"orders and {others['counters']:,} counters not the run's): it shared the machine and "
        "the database, and if its order ids met the run's, the marts cannot be exact.",
        "",
    ]


def _floor_label(what: str, floor_set: dict[str, Any]) -> str:
    return f"PostgreSQL floor: {what} ({floor_set['rows']:,} rows, {floor_set['seconds']:.2f} s)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(results: dict[str, Any]) -> str:
    machine, parameters = results["machine"], results["parameters"]
    headline, catch_up = results["headline"], results["catch_up"]
    floor, naive = results["floor"], results["baseline"]["catch_up"]
    lines = [
        f"### Benchmark {results['finished_at']}: {parameters['orders']:,} orders",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}; Python {machine['python']}, PostgreSQL {machine['postgresql']}, "
        f"{machine['kafka']}, Redis {machine['redis']}; code {machine['git']}; load average "
        f"{machine['load_average_before'][0]:.2f} before, "
        f"{machine['load_average_after'][0]:.2f} after.",
        "",
        *_table(
            ["", "orders/s", "ours relative to it"],
            [
                [
                    f"**ours**, end to end ({catch_up['orders']:,} orders, "
                    f"{catch_up['messages']:,} messages, {catch_up['seconds']:.2f} s, "
                    f"{'exact' if catch_up['exact'] else 'NOT exact'})",
                    f"**{_number(headline['ours_orders_per_s'])}**",
                    "",
                ],
                [
                    f"naive baseline ({naive['orders']:,} orders in {naive['seconds']:.1f} s, "
                    f"{'exact' if naive['exact'] else 'NOT exact'})",
                    _number(headline["baseline_orders_per_s"]),
                    f"**{_number(headline['ours_over_baseline'])}x**",
                ],
                [
                    _floor_label("binary COPY of the vault and marts", floor["vault_and_marts"]),
                    _number(headline["floor_orders_per_s"]),
                    f"**{headline['ours_over_floor']:.2f}**",
                ],
                [
                    _floor_label("every row the run wrote", floor["all_written"]),
                    _number(headline["floor_all_written_orders_per_s"]),
                    f"{headline['ours_over_floor_all_written']:.2f}",
                ],
            ],
        ),
        "",
        *_layers_table(results),
        "",
        *_other_writers_note(results),
        "CPU seconds of the services during the catch-up: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in catch_up["services_cpu_s"].items())
        + f" (over {catch_up['seconds']:.1f} s on {machine['cores']} cores).",
        "",
        _tags_note(results),
        "",
        *_table(
            ["freshness at", "achieved", "probes", "visible", *FRESHNESS_COLUMNS.values()],
            [
                [
                    f"{_number(fresh['rate'])} orders/s for {fresh['seconds']:g} s",
                    _number(fresh["achieved_rate"]),
                    f"{fresh['probes']:,}",
                    f"{fresh['visible']:,}",
                    *(f"{fresh[key]:,.0f}" for key in FRESHNESS_COLUMNS),
                ]
                for fresh in results["freshness"]
            ],
        ),
        "",
        *_table(
            ["target", "goal", "measured", "met"],
            [
                [t["target"], t["goal"], t["measured"], "yes" if t["met"] else "**no**"]
                for t in results["targets"]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def _tags_note(results: dict[str, Any]) -> str:
    tags, verified, workers = results["tags"], results["verified"], results["workers"]
    runs = ", ".join(
        f"{_number(run['orders_per_s'])} orders/s {when} "
        f"({'exact' if run['exact'] else 'NOT exact'})"
        for when, run in tags["without"].items()
    )
    return (
        f"Tags: {verified['tag_transitions']:,} transitions, {verified['tag_members']:,} "
        f"members at the end. The same backlog with no tag rules, before and after the "
        f"run with them: {runs}; with the default rules {tags['with_over_without']:.2f} of "
        f"their mean. The CDM worker's CPU: {workers['cdm']['catch_up_cpu_s']:.1f} s with "
        f"tags, {tags['without_cdm_cpu_s']:.1f} s without ({tags['cdm_cpu_share']:.0%} for "
        f"the tags). After the run, `dwh marts verify`: {verified['mart_differences']} "
        f"differences; `dwh tags verify`: {verified['tag_differences']} in "
        f"{verified['tag_counts_compared']:,} counts."
    )


def _layers_table(results: dict[str, Any]) -> list[str]:
    catch_up, workers = results["catch_up"], results["workers"]
    naive = results["baseline"]
    rows = []
    for layer in LAYER_NAMES:
        timing, worker = catch_up["layers"][layer], workers[layer]
        naive_timing = naive["catch_up"]["layers"][layer]
        rows.append(
            [
                layer.upper(),
                f"{timing['done_s']:.2f}",
                _number(timing["orders_per_s"]),
                f"{worker['catch_up_batches']:,} ({worker['catch_up_mean_batch']:,.0f})",
                f"{worker['catch_up_handle_s']:.1f}",
                _number(worker["catch_up_messages_per_handle_s"]),
                f"{worker['catch_up_cpu_s']:.1f} ({worker['catch_up_cores']:.2f})",
                f"{worker['peak_rss_mib']:.0f}",
                f"{_number(naive_timing['orders_per_s'])} / "
                f"{naive['processes'][layer]['cpu_s']:.1f}",
            ]
        )
    return _table(
        [
            "layer",
            "done at s",
            "orders/s to here",
            "batches (mean size)",
            "s in handle()",
            "msgs/s in handle()",
            "CPU s (cores)",
            "peak RSS MiB",
            "baseline orders/s / CPU s",
        ],
        rows,
    )
