"""Progress lines on stdout, stamped with the time since the run began."""

from __future__ import annotations

import time

_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {text}", flush=True)
