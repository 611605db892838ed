"""Built-in sample data: realistic dictionaries and a simulator of the order feed.

Everything is produced in the exact wire formats of docs/CONTRACT.md §1 (§1.2 for the Redis
values, §1.1 for the order messages) and is deterministic for a seed: each generator
draws from its own ``random.Random(seed)``, never from the global one.

The modules:

* :mod:`~dwh_workers.sample.catalogue`: the reference data: menu categories with their
  dishes and base prices, kinds of restaurant, Russian names for the users;
* :mod:`~dwh_workers.sample.dictionaries`: generating the sample users and restaurants
  (:func:`sample_dictionaries`), their Redis entries (:func:`dictionary_entries`) and
  loading a dictionaries file (:func:`load_dictionaries_file`);
* :mod:`~dwh_workers.sample.orders`: the order feed simulator (:class:`OrderGenerator`):
  orders, their status updates and duplicates.
"""

from dwh_workers.sample.dictionaries import (
    Dictionaries,
    dictionary_entries,
    load_dictionaries_file,
    sample_dictionaries,
)
from dwh_workers.sample.orders import OrderGenerator

__all__ = [
    "Dictionaries",
    "OrderGenerator",
    "dictionary_entries",
    "load_dictionaries_file",
    "sample_dictionaries",
]
