"""Health, metrics and logs of a worker.

``/healthz``: the process is alive and its loop has ticked recently. ``/readyz``: it is
connected and consuming (its last batch, or attempt, succeeded, and no dependency failed
its last probe). ``/metrics``: the Prometheus text format. Logs are one JSON object a
line, or readable text on a terminal. The probes themselves live in the adapters
(``PostgresProbe``, ``RedisProbe``, the Kafka consumer's ``check``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STALL_SECONDS = 300.0


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return "{" + inner + "}"


class Metrics:
    """The worker's counters, gauges and one histogram, thread-safe, in Prometheus text."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = defaultdict(float)
        self._gauges: dict[tuple[str, str], float] = {}
        self._histogram = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self._duration_count = 0
        self.ready = False
        # Why it is not ready: dependency -> one line (replaced whole, never mutated).
        self.reasons: dict[str, str] = {}
        self.last_tick = time.monotonic()

    def count(self, name: str, value: float = 1, **labels: str) -> None:
        with self._lock:
            self._counters[(name, _labels({"layer": self.layer, **labels}))] += value

    def gauge(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[(name, _labels({"layer": self.layer, **labels}))] = value

    def observe_batch(self, seconds: float) -> None:
        with self._lock:
            index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
            self._histogram[index] += 1
            self._duration_sum += seconds
            self._duration_count += 1

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < STALL_SECONDS

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for kind, values in (("counter", self._counters), ("gauge", self._gauges)):
                names = sorted({name for name, _ in values})
                for name in names:
                    lines.append(f"# TYPE {name} {kind}")
                    lines.extend(
                        f"{metric}{labels} {value:g}"
                        for (metric, labels), value in sorted(values.items())
                        if metric == name
                    )
            lines.append("# TYPE dwh_batch_duration_seconds histogram")
            layer = f'layer="{self.layer}"'
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), self._histogram, strict=True):
                cumulative += count
                edge = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(
                    f'dwh_batch_duration_seconds_bucket{{{layer},le="{edge}"}} {cumulative}'
                )
            lines.append(f"dwh_batch_duration_seconds_sum{{{layer}}} {self._duration_sum:g}")
            lines.append(f"dwh_batch_duration_seconds_count{{{layer}}} {self._duration_count}")
            lines.append("# TYPE dwh_ready gauge")
            lines.append(f"dwh_ready{{{layer}}} {int(self.ready)}")
            return "\n".join(lines) + "\n"


def serve(metrics: Metrics, port: int) -> ThreadingHTTPServer:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/healthz":
                alive = metrics.alive()
                self._reply(200 if alive else 503, "alive\n" if alive else "stalled\n")
            elif path == "/readyz":
                if metrics.ready:
                    self._reply(200, "ready\n")
                else:
                    reasons = "".join(f"{k}: {v}\n" for k, v in sorted(metrics.reasons.items()))
                    self._reply(503, f"not ready\n{reasons}")
            elif path == "/metrics":
                self._reply(200, metrics.render())
            else:
                self._reply(404, "not found\n")

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any ``extra`` fields."""

    _standard = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in record.__dict__.items() if key not in self._standard
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    _standard = JsonFormatter._standard

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in record.__dict__.items() if key not in self._standard
        )
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        text = f"{base}  {extras}" if extras else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
