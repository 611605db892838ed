"""The Helm chart, rendered with ``scripts/helm``, and its containers as Kubernetes
would start them, without Kubernetes.

:func:`helm` runs ``scripts/helm``; :func:`helm_template` renders the chart (the
release :data:`RELEASE`, for Kubernetes :data:`KUBE_VERSION`) with values given as a
mapping and/or extra arguments. :func:`rendered_env` finds a layer's Deployment (or the
migration Job) and its container, and resolves the container's environment as the
kubelet does: ``envFrom`` ConfigMaps and Secrets in order, then ``env`` in order, each
entry overriding what came before, with ``value`` (its ``$(VAR)`` references expanded),
``configMapKeyRef``, ``secretKeyRef`` (Secret ``data`` base64-decoded), optional
references to what is missing left out, and ``fieldRef: metadata.name`` (the pod's
name)::

    env = rendered_env("stg", values).env

Not resolved (the chart uses none): other ``fieldRef`` paths, ``resourceFieldRef``,
``envFrom`` prefixes and a Secret's ``stringData``.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from attrs import frozen

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "scripts" / "helm"
CHART = ROOT / "chart"
KUBE_VERSION = "1.30.0"
RELEASE = "dwh"
MIGRATE = "migrate"
# Kubernetes' $(VAR) reference in an env value, and $$ for a literal $.
_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")

Manifest = dict[str, Any]


class ChartError(Exception):
    """``helm template`` refused the values; ``str()`` is Helm's message."""


class UnresolvableEnv(Exception):
    """A reference Kubernetes could not resolve either: the pod would not start."""


@frozen
class RenderedEnv:
    """One rendered container and its resolved environment."""

    workload: str  # the Deployment's (or the Job's) name
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, str]  # volume name -> mountPath


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """``scripts/helm`` with ``args``, from the repository's root; never raises on failure."""
    return subprocess.run(
        [str(HELM), *args], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )


def helm_template(
    *args: str, values: Mapping[str, Any] | None = None, chart: Path = CHART
) -> list[Manifest]:
    """The manifests ``helm template`` renders from ``chart`` with ``values`` (written to
    a temporary values file) and then ``args`` (``-f``, ``--set``, ...) over its defaults;
    :class:`ChartError` with Helm's message when it refuses them."""
    with tempfile.TemporaryDirectory(prefix="dwh-chart-") as folder:
        command = ["template", RELEASE, str(chart), "--kube-version", KUBE_VERSION]
        if values is not None:
            values_file = Path(folder) / "values.yaml"
            values_file.write_text(yaml.safe_dump(dict(values), sort_keys=False))
            command += ["-f", str(values_file)]
        result = helm(*command, *args)
    if result.returncode != 0:
        raise ChartError(result.stderr.strip() or result.stdout.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered_env(
    layer: str,
    values: Mapping[str, Any],
    *,
    pod_name: str | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> RenderedEnv:
    """The container of ``layer`` (``stg``, ``dds``, ``cdm``, or ``migrate`` for the
    migration Job) as the chart renders it with ``values``, its environment resolved.

    ``secrets``: Secrets that exist in the namespace beside what the chart renders (e.g.
    ``secret.existingSecret``), by name, their values as plain text. ``pod_name`` is what
    ``fieldRef: metadata.name`` resolves to; by default the workload's name and ``-0``."""
    manifests = helm_template(values=values)
    workload = _workload(manifests, layer)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    name = str(workload["metadata"]["name"])
    objects = _objects(manifests, secrets or {})
    return RenderedEnv(
        workload=name,
        args=list(container.get("args", [])),
        env=_resolve_env(container, objects, pod_name or f"{name}-0"),
        mounts={m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])},
    )


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env ``value``: a variable defined before
    is replaced, an unknown one is left as written, ``$$`` is a ``$``."""
    return _REFERENCE.sub(lambda m: "$" if m[1] == "$" else env.get(m[2], m[0]), value)


# Objects by (kind, name): a ConfigMap's or Secret's data as text.
Objects = dict[tuple[str, str], dict[str, str]]


def _resolve_env(container: Manifest, objects: Objects, pod_name: str) -> dict[str, str]:
    """A container's environment as the kubelet builds it from ``objects``;
    :class:`UnresolvableEnv` where the pod would fail to start."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source["configMapRef" if kind == "ConfigMap" else "secretRef"]
        data = objects.get((kind, ref["name"]))
        if data is None:
            if ref.get("optional"):
                continue
            raise UnresolvableEnv(f"envFrom: {kind} {ref['name']!r} does not exist")
        env.update(data)
    for entry in container.get("env", []):
        name = entry["name"]
        source = entry.get("valueFrom")
        if source is None:
            env[name] = expand(entry.get("value", ""), env)
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = pod_name
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            ref = source["configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"]
            found = objects.get((kind, ref["name"]), {}).get(ref["key"])
            if found is None:
                if ref.get("optional"):
                    continue  # an optional reference to nothing leaves the variable unset
                raise UnresolvableEnv(f"{name}: {kind} {ref['name']!r} has no key {ref['key']!r}")
            env[name] = found
        else:
            raise UnresolvableEnv(f"{name}: valueFrom {source} is not resolved here")
    return env


def _workload(manifests: list[Manifest], layer: str) -> Manifest:
    kind = "Job" if layer == MIGRATE else "Deployment"
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == layer
    ]
    if len(found) != 1:
        raise ChartError(f"{len(found)} {kind}s of component {layer!r} rendered, not one")
    return found[0]


def _objects(manifests: list[Manifest], secrets: Mapping[str, Mapping[str, str]]) -> Objects:
    """The rendered ConfigMaps and Secrets (data decoded) and the given Secrets, by name."""
    objects: Objects = {}
    for m in manifests:
        name = m["metadata"]["name"]
        data = m.get("data") or {}
        if m["kind"] == "ConfigMap":
            objects["ConfigMap", name] = {k: str(v) for k, v in data.items()}
        elif m["kind"] == "Secret":
            objects["Secret", name] = {
                k: base64.b64decode(v, validate=True).decode("utf-8") for k, v in data.items()
            }
    for name, given in secrets.items():
        objects["Secret", name] = dict(given)
    return objects
