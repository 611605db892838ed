"""dwh_core: the business of the food-delivery warehouse, free of infrastructure.

A library other services install (the ``dwh-food-delivery`` distribution without its
``workers`` extra): it needs attrs, cattrs and orjson, and importing it pulls in no
Kafka, Redis, PostgreSQL or DI library. Its modules:

* :mod:`~dwh_core.orders`: orders, dictionaries and the order facts between the layers;
* :mod:`~dwh_core.parsing`: strict parsing of the input (docs/CONTRACT.md §1, §5, §7);
* :mod:`~dwh_core.enrichment`: an order joined with its dictionaries;
* :mod:`~dwh_core.versions`: which version of an order is newer, ties included;
* :mod:`~dwh_core.hashing`: the hash keys of the vault and the marts;
* :mod:`~dwh_core.vault`: the Data Vault rows of an order;
* :mod:`~dwh_core.counters`: the mart counters and how they stay exact;
* :mod:`~dwh_core.tags`: the user tags: rules, their transitions, and how they stay exact;
* :mod:`~dwh_core.tag_rules`: the rules file, read and checked line by line;
* :mod:`~dwh_core.messages`: messages, dead letters and their topics;
* :mod:`~dwh_core.ports`: what the layers need of the outside world;
* :mod:`~dwh_core.layers`: the three layer services.

The public surface is ``__all__`` below: the names the project's own adapters, workers
and benchmark use (``tests/unit/core/test_public_surface.py`` checks that they use no
other), and what another service needs to read the order feed and the dictionaries, or
to compute the keys.

Compatibility: the version follows semantic versioning. The hash rule of
:mod:`~dwh_core.hashing` (the keys stored in the warehouse and sent on the topics) and
the shapes of the messages between the layers change only with a new major version.
"""

from dwh_core.counters import Contribution, CounterDelta, CounterUpdate, plan_update
from dwh_core.hashing import hash_key, hashdiff
from dwh_core.layers import BatchResult, CdmService, DdsService, StgService
from dwh_core.messages import (
    DeadLetter,
    InMessage,
    OutMessage,
    bounded_reason,
    dead_letter_topic,
    shorten,
    source_of_dead_letters,
)
from dwh_core.orders import (
    CLOSED,
    EnrichedOrder,
    KeyName,
    MenuItem,
    Order,
    OrderFacts,
    Restaurant,
    User,
)
from dwh_core.parsing import (
    InvalidMessage,
    encode_json,
    parse_order,
    parse_restaurant,
    parse_user,
)
from dwh_core.ports import (
    Clock,
    CounterStore,
    DeadLetterSink,
    DictionaryReader,
    Publisher,
    RawEvent,
    RawEventStore,
    VaultStore,
)
from dwh_core.tag_rules import RuleFile, RulesError, check_names, load_rules, parse_rules
from dwh_core.tags import (
    AppliedRule,
    RuleChange,
    RuleIndex,
    TagEvent,
    TagRule,
    TagState,
    TagStep,
    TagUpdate,
    count_matches,
    fold_steps,
    recount,
    rule_change,
    tag_steps,
    transitions_by_tag,
    window_start_at,
    window_steps,
)
from dwh_core.vault import (
    HUBS,
    LINKS,
    SATELLITES,
    Hub,
    Link,
    Satellite,
    SatelliteState,
    VaultRows,
)
from dwh_core.versions import Version

__version__ = "0.3.0"

__all__ = [
    "CLOSED",
    "HUBS",
    "LINKS",
    "SATELLITES",
    "AppliedRule",
    "BatchResult",
    "CdmService",
    "Clock",
    "Contribution",
    "CounterDelta",
    "CounterStore",
    "CounterUpdate",
    "DdsService",
    "DeadLetter",
    "DeadLetterSink",
    "DictionaryReader",
    "EnrichedOrder",
    "Hub",
    "InMessage",
    "InvalidMessage",
    "KeyName",
    "Link",
    "MenuItem",
    "Order",
    "OrderFacts",
    "OutMessage",
    "Publisher",
    "RawEvent",
    "RawEventStore",
    "Restaurant",
    "RuleChange",
    "RuleFile",
    "RuleIndex",
    "RulesError",
    "Satellite",
    "SatelliteState",
    "StgService",
    "TagEvent",
    "TagRule",
    "TagState",
    "TagStep",
    "TagUpdate",
    "User",
    "VaultRows",
    "VaultStore",
    "Version",
    "__version__",
    "bounded_reason",
    "check_names",
    "count_matches",
    "dead_letter_topic",
    "encode_json",
    "fold_steps",
    "hash_key",
    "hashdiff",
    "load_rules",
    "parse_order",
    "parse_restaurant",
    "parse_rules",
    "parse_user",
    "plan_update",
    "recount",
    "rule_change",
    "shorten",
    "source_of_dead_letters",
    "tag_steps",
    "transitions_by_tag",
    "window_start_at",
    "window_steps",
]
