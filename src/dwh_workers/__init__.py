"""dwh_workers: the three layer workers (``python -m dwh_workers.stg|dds|cdm``) and the
``dwh`` operator command (``python -m dwh_workers`` is the same command)."""
