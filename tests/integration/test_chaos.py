"""A short chaos run (`python -m bench.chaos`, docs/RELIABILITY.md): 2,000 orders and
hostile messages through the three workers while each layer's worker is SIGKILLed once
and PostgreSQL, Redis and the Kafka broker are restarted once each. The run uses
services of its own, so the shared stack is never restarted; it checks the marts
against the contract's oracle itself and exits non-zero when anything is lost, counted
twice or not dead-lettered.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMAND = [
    "--orders", "2000",
    "--bad", "80",
    "--kills", "3",
    "--restarts", "1",
    "--feed-seconds", "15",
    "--time-limit", "170",
]  # fmt: skip


def test_a_short_chaos_run_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", *COMMAND, "--out", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        run.terminate()  # the run stops its workers and services on SIGTERM
        stdout, stderr = run.communicate(timeout=120)
    finished = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    output = f"{finished.stdout}\n{finished.stderr}"
    assert finished.returncode == 0, f"the chaos run failed:\n{output}"
    assert re.search(r"^\| messages lost \| 0 \|$", finished.stdout, re.M), output
    assert re.search(r"^\| double-counted \| 0 \|$", finished.stdout, re.M), output
    verified = r"^\| `dwh marts verify`, `dwh tags verify`: differences \| 0, 0 \|$"
    assert re.search(verified, finished.stdout, re.M), output
    for fault in ("SIGKILL stg", "SIGKILL dds", "SIGKILL cdm", "PostgreSQL", "Redis", "Kafka"):
        assert re.search(rf"^\| {fault}[^|]* \| 1 \| 1 \|", finished.stdout, re.M), output
