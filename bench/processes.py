"""The processes under test (the workers, or the baseline's services) as subprocesses:
start, CPU and memory from /proc, Prometheus metrics, stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from attrs import define, frozen

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]
_METRIC_LINE = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$")
# How the services around the workers show up in /proc (comm), for their CPU seconds.
SERVICES = {"postgres": "postgresql", "java": "kafka", "redis-server": "redis"}


@frozen
class Usage:
    cpu_s: float
    rss_mib: float
    peak_rss_mib: float


def usage_of(pid: int) -> Usage:
    """CPU seconds (user + system) and resident memory of a running process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15 of proc(5)
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Usage(
        cpu_s=(utime + stime) / CLOCK_TICKS,
        rss_mib=int(status["VmRSS"].split()[0]) / 1024,
        peak_rss_mib=int(status["VmHWM"].split()[0]) / 1024,
    )


def _is_kafka_broker(proc: Path) -> bool:
    try:
        return b"kafka.Kafka" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def service_cpu() -> dict[str, float]:
    """CPU seconds so far of every live PostgreSQL, Kafka and Redis process, by service
    (all of PostgreSQL's backends, ours or not)."""
    totals: dict[str, float] = defaultdict(float)
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_path.read_text()
        except OSError:  # the process ended meanwhile
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        service = SERVICES.get(comm)
        if service == "kafka" and not _is_kafka_broker(stat_path.parent):
            continue  # another JVM (Maven, say)
        if service:
            fields = text.rsplit(")", 1)[1].split()
            totals[service] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return dict(totals)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@define
class Process:
    """A started ``python -m <module> [args]``, its output in ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    http_port: int | None = None
    _terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def usage(self) -> Usage:
        return usage_of(self.pid)

    def metrics(self) -> dict[str, float]:
        """The worker's ``/metrics``, summed over labels other than ``layer``."""
        if self.http_port is None:
            return {}
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = defaultdict(float)
        for line in text.splitlines():
            match = _METRIC_LINE.match(line)
            if match and "le=" not in (match[2] or ""):
                values[match[1]] += float(match[3])
        return dict(values)

    def terminate(self) -> None:
        """Ask it to stop: one SIGTERM, as Kubernetes sends (a second one while it shuts
        down would be a different test)."""
        if self.alive() and not self._terminated:
            self._terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        self.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=timeout)


def start(
    name: str,
    module: str,
    args: list[str],
    env: Mapping[str, str],
    log_dir: Path,
    http_port: int | None = None,
) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=dict(env),
            cwd=REPO,  # `-m bench.baseline` finds the package there
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Process(name, popen, log_path, http_port)


def stop_all(processes: Mapping[str, Process]) -> dict[str, int]:
    """Stop them all at once (SIGTERM first, so they finish in parallel); exit statuses."""
    for process in processes.values():
        process.terminate()
    return {name: process.stop() for name, process in processes.items()}
