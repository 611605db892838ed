"""The secure local stack (``scripts/stack up --secure``): its settings as a deployment
would give them, and its secrets, which no output may show."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwh_workers.topology import LAYER_NAMES
from tests.support.chart import rendered_env

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = ("KAFKA_CONSUMER_PASSWORD", "REDIS_PASSWORD", "PG_WAREHOUSE_PASSWORD")


def secure_env() -> dict[str, str]:
    """The settings ``scripts/stack env --secure`` prints (the original variable names
    and the CA files); the stack must be up."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "env", "--secure"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    env: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def process_env(settings: Mapping[str, str]) -> dict[str, str]:
    """A process environment of nothing but ``settings``, and what any program needs to
    start (PATH, a locale), so no setting of this test process leaks in."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def secrets(settings: Mapping[str, str]) -> list[str]:
    """The passwords in ``settings``."""
    return [settings[name] for name in SECRET_NAMES if settings.get(name)]


def chart_values(
    settings: Mapping[str, str], dbname: str, ca_mount: str | None = None
) -> dict[str, Any]:
    """The Helm chart's values for a release against the secure stack: its hosts and
    ports, its CA file mounted (as a Kubernetes Secret would be) at ``ca_mount`` (by
    default the folder the stack keeps it in), its credentials in the chart-created
    Secret."""
    ca = Path(settings["KAFKA_SSL_CA_LOCATION"])
    return {
        "kafka": {
            "host": settings["KAFKA_HOST"],
            "port": int(settings["KAFKA_PORT"]),
            "sslCaFile": ca.name,
        },
        "redis": {
            "host": settings["REDIS_HOST"],
            "port": int(settings["REDIS_PORT"]),
            "sslCaFile": Path(settings["REDIS_SSL_CA_FILE"]).name,
        },
        "postgres": {
            "host": settings["PG_WAREHOUSE_HOST"],
            "port": int(settings["PG_WAREHOUSE_PORT"]),
            "dbname": dbname,
            "user": settings["PG_WAREHOUSE_USER"],
            "sslRootCertFile": Path(settings["PG_WAREHOUSE_SSLROOTCERT"]).name,
        },
        "caBundle": {"secretName": "dwh-ca", "mountPath": ca_mount or str(ca.parent)},
        "secret": {
            "kafkaConsumerUsername": settings["KAFKA_CONSUMER_USERNAME"],
            "kafkaConsumerPassword": settings["KAFKA_CONSUMER_PASSWORD"],
            "redisPassword": settings["REDIS_PASSWORD"],
            "pgWarehousePassword": settings["PG_WAREHOUSE_PASSWORD"],
        },
    }


def chart_envs(
    settings: Mapping[str, str], dbname: str, ca_mount: str | None = None
) -> dict[str, dict[str, str]]:
    """The environment the chart renders for each worker's Deployment and for the
    migration Job (``migrate``), resolved as Kubernetes would."""
    values = chart_values(settings, dbname, ca_mount)
    return {name: rendered_env(name, values).env for name in (*LAYER_NAMES, "migrate")}
