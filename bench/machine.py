"""What the benchmark ran on: the machine, the software, the code."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import confluent_kafka
import psycopg
import redis

from bench.processes import REPO
from bench.tables import Connection


def describe(conn: Connection, dictionaries: redis.Redis) -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    row = conn.execute("SHOW server_version").fetchone()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo["MemTotal"].split()[0]) / 1024**2, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else "unknown",
        "kafka": _kafka_version(),
        "redis": dictionaries.info("server").get("redis_version", "unknown"),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "psycopg": psycopg.__version__,
        "git": _git(),
    }


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _kafka_version() -> str:
    """The broker's version as ``scripts/stack status`` reports it."""
    try:
        status = subprocess.run(
            [str(REPO / "scripts" / "stack"), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in status.splitlines():
        fields = line.split(maxsplit=5)
        if fields and fields[0] == "kafka" and len(fields) == 6:
            return fields[5]
    return "unknown"


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit}+changes" if git("status", "--porcelain") else commit
