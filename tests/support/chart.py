"""The Helm chart's containers as Kubernetes would start them, without Kubernetes.

:func:`rendered_env` renders the chart (``scripts/helm template``) with the values a test
gives, finds a layer's Deployment (or the migration Job) and its container, and
resolves the container's environment as the kubelet does: ``envFrom`` ConfigMaps and
Secrets in order, then ``env`` in order, each entry overriding what came before, with
``value`` (its ``$(VAR)`` references expanded), ``configMapKeyRef``, ``secretKeyRef``
(Secret ``data`` base64-decoded, ``stringData`` merged over it as the API server does),
optional references to what is missing left out, and ``fieldRef`` from the pod. It also
says where the CA bundle is mounted, so that a test can set ``caBundle.mountPath`` to a
local folder of CA files and run the worker on this machine with exactly that
environment::

    rendered = rendered_env("stg", values)
    subprocess.Popen(["python", "-m", "dwh_workers.stg"], env=rendered.process_env())

Not resolved: the variables the kubelet adds on its own (``KUBERNETES_SERVICE_*``; the
chart turns service links off) and ``resourceFieldRef`` (the chart uses none).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from attrs import frozen

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "scripts" / "helm"
CHART = ROOT / "chart"
KUBE_VERSION = "1.30.0"
RELEASE = "dwh"
NAMESPACE = "default"
LAYERS = ("stg", "dds", "cdm")
MIGRATE = "migrate"
# The variables naming a CA file, and the volume the chart mounts the CA bundle from.
CA_VARIABLES = ("KAFKA_SSL_CA_LOCATION", "REDIS_SSL_CA_FILE", "PG_WAREHOUSE_SSLROOTCERT")
CA_VOLUME = "ca"
# What a process on this machine needs from the test's own environment to start at all.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
# Kubernetes 1.30's rule for an environment variable name from envFrom; others are skipped.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Manifest = dict[str, Any]


class ChartError(Exception):
    """``helm template`` refused the values; ``str()`` is Helm's message."""


class UnresolvableEnv(Exception):
    """A reference Kubernetes could not resolve either: the pod would not start."""


@frozen
class RenderedEnv:
    """One rendered container: its resolved environment and where its CA files are."""

    layer: str
    workload: str  # the Deployment's (or the Job's) name
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, str]  # volume name -> mountPath
    ca_mount_path: str | None  # where caBundle is mounted; None without a bundle

    @property
    def ca_files(self) -> dict[str, str]:
        """Each CA variable that names a file (not ``system``) -> the path."""
        return {
            name: self.env[name]
            for name in CA_VARIABLES
            if name in self.env and self.env[name].startswith("/")
        }

    def process_env(self, **overrides: str) -> dict[str, str]:
        """The environment to start this container's command on this machine with:
        exactly the rendered one, plus only what a process needs to start here (PATH,
        HOME, ...) from the current environment, plus ``overrides``."""
        host = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        return {**host, **self.env, **overrides}


def helm_template(
    values: Mapping[str, Any],
    *args: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """The manifests ``scripts/helm template`` renders from the chart's defaults with
    ``values`` over them (written to a temporary values file); :class:`ChartError` with
    Helm's message when it refuses them."""
    with tempfile.TemporaryDirectory(prefix="dwh-chart-") as folder:
        values_file = Path(folder) / "values.yaml"
        values_file.write_text(yaml.safe_dump(_plain(values), sort_keys=False))
        command = [str(HELM), "template", release, str(CHART), "--namespace", namespace]
        command += ["--kube-version", KUBE_VERSION, "-f", str(values_file), *args]
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )
    if result.returncode != 0:
        raise ChartError(result.stderr.strip() or result.stdout.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered_env(
    layer: str,
    values: Mapping[str, Any],
    *,
    pod_name: str | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> RenderedEnv:
    """The container of ``layer`` (``stg``, ``dds``, ``cdm``, or ``migrate`` for the
    migration Job) as the chart renders it with ``values``, its environment resolved.

    ``secrets`` and ``config_maps``: objects that exist in the namespace beside what the
    chart renders (e.g. ``secret.existingSecret``), by name, their values as plain text.
    ``pod_name`` is what ``fieldRef: metadata.name`` (``DWH_INSTANCE_ID``) resolves to;
    by default the workload's name and ``-0``."""
    manifests = helm_template(values, release=release, namespace=namespace)
    workload = _workload(manifests, layer)
    pod = workload["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    name = str(workload["metadata"]["name"])
    objects = objects_of(manifests, secrets or {}, config_maps or {})
    env = resolve_env(
        container,
        objects,
        pod_name=pod_name or f"{name}-0",
        namespace=namespace,
        pod_metadata=pod.get("metadata", {}),
        service_account=pod["spec"].get("serviceAccountName", "default"),
    )
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    return RenderedEnv(
        layer=layer,
        workload=name,
        args=list(container.get("args", [])),
        env=env,
        mounts=mounts,
        ca_mount_path=mounts.get(CA_VOLUME),
    )


# Objects by (kind, name): a ConfigMap's or Secret's data as text.
Objects = dict[tuple[str, str], dict[str, str]]


def resolve_env(
    container: Manifest,
    objects: Objects,
    *,
    pod_name: str,
    namespace: str = NAMESPACE,
    pod_metadata: Manifest | None = None,
    service_account: str = "default",
) -> dict[str, str]:
    """A container's environment as the kubelet builds it, from ``objects`` (see
    :func:`objects_of`). :class:`UnresolvableEnv` where the pod would fail to start."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        data = objects.get((kind, ref["name"]))
        if data is None:
            if ref.get("optional"):
                continue
            raise UnresolvableEnv(f"envFrom: {kind} {ref['name']!r} does not exist")
        for key, value in data.items():
            name = source.get("prefix", "") + key
            if _ENV_NAME.match(name):  # the kubelet skips (and reports) invalid names
                env[name] = value
    metadata = pod_metadata or {}
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "spec.serviceAccountName": service_account,
    }
    for entry in container.get("env", []):
        name = entry["name"]
        if entry.get("value"):
            env[name] = expand(entry["value"], env)
            continue
        source = entry.get("valueFrom")
        if source is None:
            env[name] = ""
        elif "fieldRef" in source:
            env[name] = _field(source["fieldRef"]["fieldPath"], fields, metadata, name)
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
            raise UnresolvableEnv(f"{name}: valueFrom {sorted(source)} is not resolved here")
    return env


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env ``value``: a variable defined before
    is replaced, an unknown one is left as written, ``$$`` is a ``$``."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(" and ")" in rest:
                variable = rest[1 : rest.index(")")]
                out.append(env.get(variable, f"$({variable})"))
                advance = rest.index(")") + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]


def _field(path: str, fields: Mapping[str, str], metadata: Manifest, name: str) -> str:
    if path in fields:
        return fields[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(metadata.get(match[1], {}).get(match[2], ""))
    raise UnresolvableEnv(f"{name}: fieldRef {path!r} is not resolved here")


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


def objects_of(
    manifests: list[Manifest],
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]],
) -> Objects:
    """The rendered ConfigMaps and Secrets (data decoded) and the given ones, by name."""
    objects: Objects = {}
    for m in manifests:
        name = m["metadata"]["name"]
        if m["kind"] == "ConfigMap":
            objects["ConfigMap", name] = {k: str(v) for k, v in (m.get("data") or {}).items()}
        elif m["kind"] == "Secret":
            data = {
                key: base64.b64decode(value, validate=True).decode("utf-8")
                for key, value in (m.get("data") or {}).items()
            }
            data.update({k: str(v) for k, v in (m.get("stringData") or {}).items()})
            objects["Secret", name] = data
    for name, given in config_maps.items():
        objects["ConfigMap", name] = dict(given)
    for name, given in secrets.items():
        objects["Secret", name] = dict(given)
    return objects


def _plain(value: Any) -> Any:
    """``values`` as plain dicts and lists, for YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
