"""dwh_workers: the three layer workers (``python -m dwh_workers.stg|dds|cdm``) and the
``dwh`` operator command (``python -m dwh_workers`` is the same command).

They need the ``workers`` extra of the distribution; without it (the core library alone)
importing this package says so instead of failing on the first missing module.
"""

from importlib.util import find_spec

_MISSING = [
    name
    for name in ("confluent_kafka", "dependency_injector", "psycopg", "redis", "tenacity")
    if find_spec(name) is None
]
if _MISSING:
    raise ImportError(
        f"dwh_workers needs {', '.join(_MISSING)}: this is the core library alone; install "
        "the workers with pip install 'dwh-food-delivery[workers]'"
    )
