"""Progress of long work: a bar with rate and ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval_s if interval_s is not None else (0.2 if self._tty else 5.0)
        self._started = time.monotonic()
        self._shown = 0.0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if now - self._shown >= self._interval:
            self._shown = now
            self._show(note)

    def finish(self, note: str = "") -> float:
        """Show the final line; the seconds elapsed."""
        self._show(note, final=True)
        return time.monotonic() - self._started

    def _show(self, note: str, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = "" if final else f" ETA {left:5.0f}s" if left != float("inf") else " ETA    ?"
            counts = f"{self.done:>9,}/{self.total:,} {fraction:6.1%}"
        else:
            counts, eta, fraction = f"{self.done:>9,}", "", 0.0
        text = f"{self.label}: {counts} {rate:9,.0f}/s {elapsed:6.1f}s{eta} {note}".rstrip()
        if self._tty:
            width = 24
            bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
            self._stream.write(f"\r[{bar}] {text}\x1b[K" + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
