"""Adapters: the ports of :mod:`dwh_core.ports` on real services (``kafka``, ``redis``,
``postgres``) and in memory (``memory``, for tests and the in-process demo)."""
