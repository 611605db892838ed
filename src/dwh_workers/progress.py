"""Progress of long work: bars with rate and ETA on a terminal, plain lines elsewhere.

A :class:`Board` shows several labelled rows together (the three layers of the
pipeline, say); :class:`Progress` is a board of one row. On a terminal the rows are
redrawn in place a few times a second; when the stream is not a terminal (a log, a CI
job) each refresh prints plain lines, every few seconds, and the final state once.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from attrs import define

BAR_WIDTH = 24


@define
class _Row:
    label: str
    total: int | None
    done: int = 0
    initial: int | None = None  # the first count seen: the rate counts the work since
    note: str = ""

    def text(self, elapsed: float, final: bool) -> tuple[float, str]:
        """(fraction done, the line without its bar)."""
        rate = (self.done - (self.initial or 0)) / max(elapsed, 1e-9)
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            counts = f"{self.done:>9,}/{self.total:,} {fraction:6.1%}"
            left = max(self.total - self.done, 0)
            if final or left == 0:
                eta = ""
            else:
                eta = f" ETA {left / rate:5.0f}s" if rate > 0 else " ETA     ?"
        else:
            fraction, counts, eta = 0.0, f"{self.done:>9,}", ""
        line = f"{self.label}: {counts} {rate:9,.0f}/s {elapsed:6.1f}s{eta} {self.note}"
        return fraction, line.rstrip()


class Board:
    """Several progress rows shown together, redrawn at most every ``interval_s``."""

    def __init__(
        self,
        labels: Sequence[str],
        totals: Sequence[int | None] | None = None,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self._rows = {
            label: _Row(label, total)
            for label, total in zip(labels, totals or [None] * len(labels), strict=True)
        }
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval_s if interval_s is not None else (0.2 if self._tty else 5.0)
        self._started = time.monotonic()
        self._shown = 0.0
        self._drawn = False

    def set(self, label: str, done: int, total: int | None = None, note: str = "") -> None:
        """Record a row's progress (``total`` None keeps the row's total); not shown yet."""
        row = self._rows[label]
        row.done = done
        if row.initial is None:
            row.initial = done
        if total is not None:
            row.total = total
        row.note = note

    def refresh(self) -> None:
        """Show the rows if ``interval_s`` has passed since they were last shown."""
        now = time.monotonic()
        if now - self._shown >= self._interval:
            self._shown = now
            self._show(final=False)

    def finish(self) -> float:
        """Show the final rows; the seconds elapsed."""
        self._show(final=True)
        return self.elapsed()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _show(self, final: bool) -> None:
        elapsed = self.elapsed()
        lines = []
        for row in self._rows.values():
            fraction, text = row.text(elapsed, final)
            if self._tty:
                filled = int(fraction * BAR_WIDTH)
                text = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {text}"
                # a row wider than the terminal would wrap and break the redrawing
                text = text[: shutil.get_terminal_size().columns - 1] + "\x1b[K"
            lines.append(text)
        if self._tty:
            # back to the first row of the previous drawing, then over it
            up = f"\x1b[{len(lines) - 1}F" if self._drawn and len(lines) > 1 else ""
            self._stream.write(up + "\r" + "\n".join(lines) + ("\n" if final else ""))
            self._drawn = not final
        else:
            self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()


class Progress:
    """One row of progress: ``update`` as the work advances, ``finish`` at the end."""

    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.label = label
        self.done = 0
        self._board = Board([label], [total], stream, interval_s)
        self._board.set(label, 0)

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        self._board.set(self.label, done, note=note)
        self._board.refresh()

    def finish(self, note: str = "") -> float:
        """Show the final line; the seconds elapsed."""
        self._board.set(self.label, self.done, note=note)
        return self._board.finish()
