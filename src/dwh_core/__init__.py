"""dwh_core: the business of the food-delivery warehouse, free of infrastructure.

Orders and dictionaries (:mod:`~dwh_core.orders`), strict parsing
(:mod:`~dwh_core.parsing`), the Data Vault (:mod:`~dwh_core.vault`) and its hash keys
(:mod:`~dwh_core.hashing`), the mart counters (:mod:`~dwh_core.counters`), the ports
(:mod:`~dwh_core.ports`) and the three layer services (:mod:`~dwh_core.layers`).
Importing it pulls in no Kafka, Redis, PostgreSQL or DI library.
"""

from dwh_core.counters import Contribution, CounterDelta, CounterUpdate, plan_update
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.layers import BatchResult, CdmService, DdsService, StgService
from dwh_core.messages import DeadLetter, InMessage, OutMessage, dead_letter_topic
from dwh_core.orders import (
    CANCELLED,
    CLOSED,
    EnrichedOrder,
    MenuItem,
    Order,
    OrderFacts,
    Restaurant,
    User,
)
from dwh_core.parsing import InvalidMessage, parse_order
from dwh_core.vault import HUBS, LINKS, SATELLITES, Hub, Link, Satellite, VaultRows

__all__ = [
    "CANCELLED",
    "CLOSED",
    "HUBS",
    "LINKS",
    "SATELLITES",
    "BatchResult",
    "CdmService",
    "Contribution",
    "CounterDelta",
    "CounterUpdate",
    "DdsService",
    "DeadLetter",
    "EnrichedOrder",
    "Hub",
    "InMessage",
    "InvalidMessage",
    "Link",
    "MenuItem",
    "Order",
    "OrderFacts",
    "OutMessage",
    "Restaurant",
    "Satellite",
    "StgService",
    "User",
    "VaultRows",
    "dead_letter_topic",
    "hash_key",
    "hashdiff",
    "parse_order",
    "plan_update",
]
