"""Adapters own their lifecycle: they connect lazily, and ``close()`` releases what they
hold. Every adapter is also a context manager that closes it at the end of the block."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closeable(ABC):
    @abstractmethod
    def close(self) -> None:
        """Release the connection or client, if one is open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
