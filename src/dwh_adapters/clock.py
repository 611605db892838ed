from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The wall clock, naive UTC (the warehouse stores UTC timestamps without zone)."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)
