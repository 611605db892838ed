"""The deployment artefacts, checked offline: the Helm chart (lint, render, Kubernetes
schemas, content, rejected values) and the Compose stack.

Helm comes from scripts/helm, which builds the pinned version into .stack/bin on first
use. Rendered manifests are validated against the Kubernetes 1.30 schemas shipped by
kubernetes_validate; the custom resources (KEDA, Prometheus Operator) have no schema
there, so their required fields are checked here.

The chart's defaults are TLS verified against a CA, which do not render alone: the
manifests here are rendered from the values files of chart/ci (the minimal secure set,
the system trust store, plain text chosen explicitly, production-like).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import dwh_core
from dwh_core.tag_rules import load_rules
from dwh_workers import config
from dwh_workers.topology import LAYER_NAMES, LAYERS
from tests.support.chart import (
    CHART,
    KUBE_VERSION,
    RELEASE,
    ROOT,
    ChartError,
    Manifest,
    UnresolvableEnv,
    helm,
    helm_template,
    rendered_env,
)
from tests.support.secure import chart_values

pytestmark = pytest.mark.integration

PROD_VALUES = CHART / "ci" / "prod-values.yaml"
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
SYSTEM_CA_VALUES = CHART / "ci" / "system-ca-values.yaml"
PLAINTEXT_VALUES = CHART / "ci" / "plaintext-values.yaml"
VALUES_FILES = {
    "minimal": MINIMAL_VALUES,
    "system-ca": SYSTEM_CA_VALUES,
    "plaintext": PLAINTEXT_VALUES,
    "prod": PROD_VALUES,
}

# docs/CONTRACT.md §6: the names the original services used.
CONTRACT_SETTINGS = (
    "KAFKA_HOST",
    "KAFKA_PORT",
    "KAFKA_CONSUMER_GROUP",
    "KAFKA_SOURCE_TOPIC",
    "REDIS_HOST",
    "REDIS_PORT",
    "PG_WAREHOUSE_HOST",
    "PG_WAREHOUSE_PORT",
    "PG_WAREHOUSE_DBNAME",
    "PG_WAREHOUSE_USER",
)
CONTRACT_SECRETS = (
    "KAFKA_CONSUMER_USERNAME",
    "KAFKA_CONSUMER_PASSWORD",
    "REDIS_PASSWORD",
    "PG_WAREHOUSE_PASSWORD",
)

# Custom resources: apiVersion/kind -> fields their spec must carry.
CUSTOM_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaleTargetRef", "triggers"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
}


def render(*args: str, base: Path = MINIMAL_VALUES) -> list[Manifest]:
    """The chart rendered with the values file ``base`` and ``args`` over it."""
    return helm_template("-f", str(base), *args)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] in {"Deployment", "Job"}:
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def leaf_keys(values: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaf_keys(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


@pytest.fixture(scope="session", autouse=True)
def helm_is_built() -> None:
    result = helm("version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("v3."), result.stdout


@pytest.fixture(scope="session")
def rendered_values_files() -> dict[str, list[Manifest]]:
    return {name: render(base=path) for name, path in VALUES_FILES.items()}


@pytest.fixture(scope="session")
def minimal_manifests(rendered_values_files: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered_values_files["minimal"]


@pytest.fixture(scope="session")
def prod_manifests(rendered_values_files: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered_values_files["prod"]


@pytest.fixture(params=list(VALUES_FILES))
def manifests(
    request: pytest.FixtureRequest, rendered_values_files: dict[str, list[Manifest]]
) -> list[Manifest]:
    return rendered_values_files[request.param]


# --------------------------------------------------------------------------- chart


@pytest.mark.parametrize(
    "values",
    [[], *(["-f", str(path)] for path in VALUES_FILES.values())],
    ids=["defaults", *VALUES_FILES],
)
def test_chart_passes_strict_lint(values: list[str]) -> None:
    result = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_rendered_manifest_matches_the_kubernetes_schemas(
    manifests: list[Manifest],
) -> None:
    assert_match_kubernetes_schemas(manifests)


def assert_match_kubernetes_schemas(manifests: list[Manifest]) -> None:
    """Each manifest is valid for KUBE_VERSION; a custom resource has its required fields."""
    assert manifests
    for m in manifests:
        name = f"{m.get('kind')}/{m.get('metadata', {}).get('name')}"
        required = CUSTOM_RESOURCES.get((m.get("apiVersion", ""), m.get("kind", "")))
        if required is not None:
            assert m["metadata"]["name"], name
            assert isinstance(m["spec"], dict), name
            for field in required:
                assert field in m["spec"], f"{name}: spec.{field} missing"
            continue
        try:
            kubernetes_validate.validate(m, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {list(error.path)}")


def test_each_enabled_layer_gets_a_deployment_a_configmap_and_a_pdb(
    manifests: list[Manifest],
) -> None:
    for kind in ("Deployment", "ConfigMap", "PodDisruptionBudget"):
        assert sorted(component(m) for m in of_kind(manifests, kind)) == sorted(LAYER_NAMES), kind
    for deployment in of_kind(manifests, "Deployment"):
        layer = component(deployment)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["python", "-m", f"dwh_workers.{layer}"]
        assert "command" not in container, "command would replace tini as PID 1"


def test_configmaps_carry_the_contract_setting_names(manifests: list[Manifest]) -> None:
    for configmap in of_kind(manifests, "ConfigMap"):
        missing = [name for name in CONTRACT_SETTINGS if name not in configmap["data"]]
        assert not missing, f"{configmap['metadata']['name']} lacks {missing}"
        assert all(isinstance(v, str) for v in configmap["data"].values())


def test_the_default_image_tag_is_the_version_scripts_image_builds() -> None:
    """An empty image.tag means the chart's appVersion; scripts/image tags its builds
    with dwh_core.__version__ unless told otherwise: the two must be the same."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == dwh_core.__version__
    usage = subprocess.run(
        [CHART.parent / "scripts" / "image", "help"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert f"The default tag here: dwh-workers:{chart['appVersion']}\n" in usage


def test_layers_get_their_topics_and_groups(minimal_manifests: list[Manifest]) -> None:
    """The chart's values name what dwh_workers.topology names: one source, checked."""
    data = {component(m): m["data"] for m in of_kind(minimal_manifests, "ConfigMap")}
    assert data.keys() == LAYERS.keys()
    for name, layer in LAYERS.items():
        assert data[name]["KAFKA_SOURCE_TOPIC"] == layer.source_topic
        assert data[name].get("KAFKA_DESTINATION_TOPIC") == layer.destination_topic
        assert data[name]["KAFKA_CONSUMER_GROUP"] == layer.consumer_group
    assert data["stg"]["KAFKA_SOURCE_TOPIC"] == "order-service_orders"  # the order service's
    assert data["cdm"]["KAFKA_DESTINATION_TOPIC"] == "cdm-service-user-tags"  # for the app


def test_every_variable_the_chart_sets_is_documented(manifests: list[Manifest]) -> None:
    documented = set(
        re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", _read("docs/configuration.md"), re.M)
    )
    assert set(CONTRACT_SETTINGS) | set(CONTRACT_SECRETS) <= documented
    names: set[str] = set()
    for configmap in of_kind(manifests, "ConfigMap"):
        names |= set(configmap["data"])
    for _, spec in pod_specs(manifests):
        for container in spec["containers"]:
            names |= {env["name"] for env in container.get("env", [])}
    assert names
    assert names <= documented, f"not in docs/configuration.md: {sorted(names - documented)}"


def test_production_values_wire_sasl_tls_and_the_ca_bundle(
    prod_manifests: list[Manifest],
) -> None:
    for configmap in of_kind(prod_manifests, "ConfigMap"):
        data = configmap["data"]
        assert data["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert data["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert data["KAFKA_SSL_CA_LOCATION"] == "/etc/dwh/ca/kafka-ca.crt"
        assert (data["REDIS_SSL"], data["REDIS_PORT"]) == ("true", "6380")
        assert data["REDIS_SSL_CA_FILE"] == "/etc/dwh/ca/redis-ca.crt"
        assert data["PG_WAREHOUSE_SSLMODE"] == "verify-full"
        assert data["PG_WAREHOUSE_SSLROOTCERT"] == "/etc/dwh/ca/pg-root.crt"
    for name, spec in pod_specs(prod_manifests):
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["ca"]["secret"]["secretName"] == "dwh-ca", name
        (container,) = spec["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["ca"] == {"name": "ca", "mountPath": "/etc/dwh/ca", "readOnly": True}
        refs = {
            env["name"]: env["valueFrom"]["secretKeyRef"]
            for env in container["env"]
            if "secretKeyRef" in env.get("valueFrom", {})
        }
        assert set(refs) == set(CONTRACT_SECRETS), name
        assert {ref["name"] for ref in refs.values()} == {"dwh-credentials"}


def test_every_container_is_hardened(manifests: list[Manifest]) -> None:
    specs = list(pod_specs(manifests))
    assert specs
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"], name
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, name
            assert ctx["runAsUser"] == 10001, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name


def test_workers_are_probed_and_scraped(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["ports"] == [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8000"
        assert annotations["prometheus.io/path"] == "/metrics"


def test_service_monitors_select_a_metrics_service_per_layer(
    prod_manifests: list[Manifest],
) -> None:
    services = {component(s): s for s in of_kind(prod_manifests, "Service")}
    monitors = {component(s): s for s in of_kind(prod_manifests, "ServiceMonitor")}
    assert sorted(services) == sorted(monitors) == sorted(LAYER_NAMES)
    for layer, monitor in monitors.items():
        assert monitor["spec"]["selector"]["matchLabels"] == services[layer]["spec"]["selector"]
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert services[layer]["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not of_kind(render(), "ServiceMonitor")


def test_a_chart_made_secret_holds_only_the_given_credentials() -> None:
    manifests = render("--set", "secret.pgWarehousePassword=s3cret", base=PLAINTEXT_VALUES)
    secrets = [
        s
        for s in of_kind(manifests, "Secret")
        if "helm.sh/hook" not in s["metadata"].get("annotations", {})
    ]
    (secret,) = secrets
    assert set(secret["data"]) == {"PG_WAREHOUSE_PASSWORD"}
    for deployment in of_kind(manifests, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["env"] == [
            INSTANCE_ID_ENV,
            {
                "name": "PG_WAREHOUSE_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": secret["metadata"]["name"],
                        "key": "PG_WAREHOUSE_PASSWORD",
                    }
                },
            },
        ]


INSTANCE_ID_ENV = {
    "name": "DWH_INSTANCE_ID",
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
}


def container_env(deployment: Manifest) -> list[Manifest]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["env"])


def test_each_worker_pod_is_a_static_member_named_after_itself(manifests: list[Manifest]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert sorted(component(d) for d in deployments) == sorted(LAYER_NAMES)
    for deployment in deployments:
        env = container_env(deployment)
        assert [e for e in env if e["name"] == "DWH_INSTANCE_ID"] == [INSTANCE_ID_ENV]
    for configmap in of_kind(manifests, "ConfigMap"):
        assert configmap["data"]["DWH_SESSION_TIMEOUT_MS"] == "30000"
        assert "DWH_INSTANCE_ID" not in configmap["data"], "one id for every pod would fence"


def test_the_session_timeout_and_an_instance_id_of_ones_own_reach_the_container() -> None:
    manifests = render(
        "--set",
        "kafka.sessionTimeoutMs=45000",
        "--set",
        "workers.cdm.extraEnv[0].name=DWH_INSTANCE_ID,workers.cdm.extraEnv[0].value=cdm-a",
    )
    data = {component(m): m["data"] for m in of_kind(manifests, "ConfigMap")}
    assert {layer: d["DWH_SESSION_TIMEOUT_MS"] for layer, d in data.items()} == dict.fromkeys(
        LAYER_NAMES, "45000"
    )
    env = {component(d): container_env(d) for d in of_kind(manifests, "Deployment")}
    # The override comes after the pod name; in a container's env the last entry wins.
    assert env["cdm"][-1] == {"name": "DWH_INSTANCE_ID", "value": "cdm-a"}
    assert env["cdm"][0] == INSTANCE_ID_ENV
    assert env["stg"][0] == INSTANCE_ID_ENV


def test_an_existing_secret_means_the_chart_renders_none(prod_manifests: list[Manifest]) -> None:
    assert of_kind(prod_manifests, "Secret") == []
    assert len(of_kind(render(), "Secret")) == 2  # the release's and the migration hook's


def test_keda_caps_max_replicas_at_the_partitions(prod_manifests: list[Manifest]) -> None:
    scaled = of_kind(prod_manifests, "ScaledObject")
    assert sorted(component(s) for s in scaled) == sorted(LAYER_NAMES)
    for s in scaled:
        assert s["spec"]["maxReplicaCount"] == 6  # keda.maxReplicaCount 12, partitions 6
        (trigger,) = s["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"
        assert trigger["authenticationRef"]["name"] == "dwh-dwh-workers-kafka"
    for deployment in of_kind(prod_manifests, "Deployment"):
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    (auth,) = of_kind(prod_manifests, "TriggerAuthentication")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"]["name"] == refs["password"]["name"] == "dwh-credentials"
    assert (refs["ca"]["name"], refs["ca"]["key"]) == ("dwh-ca", "kafka-ca.crt")


@pytest.mark.parametrize(("maximum", "partitions"), [(10, 3), (2, 8), (4, 4)])
def test_keda_max_replicas_never_exceeds_partitions(maximum: int, partitions: int) -> None:
    settings = (
        f"keda.enabled=true,keda.maxReplicaCount={maximum},workers.stg.partitions={partitions}"
    )
    manifests = render("--set", settings, base=PLAINTEXT_VALUES)
    scaled = {component(s): s["spec"] for s in of_kind(manifests, "ScaledObject")}
    assert scaled["stg"]["maxReplicaCount"] == min(maximum, partitions)
    assert scaled["stg"]["minReplicaCount"] <= scaled["stg"]["maxReplicaCount"]
    assert not of_kind(manifests, "TriggerAuthentication"), "PLAINTEXT needs no auth"


def test_disabling_a_worker_removes_its_resources() -> None:
    manifests = render("--set", "workers.dds.enabled=false")
    layers = {component(m) for m in manifests if m["kind"] != "Job" and m["kind"] != "Secret"}
    assert layers == {"stg", "cdm"}
    assert "dds" not in {component(m) for m in of_kind(manifests, "Deployment")}


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
    manifests: list[Manifest],
) -> None:
    (job,) = of_kind(manifests, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["python", "-m", "dwh_workers", "migrate"]
    env = {e["name"] for e in container["env"]}
    assert {"PG_WAREHOUSE_HOST", "PG_WAREHOUSE_DBNAME", "PG_WAREHOUSE_USER"} <= env
    assert not of_kind(render("--set", "migrations.enabled=false"), "Job")


def bad(
    args: list[str], bad_key: str, id: str, base: Path = MINIMAL_VALUES
) -> Any:  # a pytest ParameterSet
    """Values that ``base`` plus ``args`` make bad, and a pattern the error must hold."""
    return pytest.param(["-f", str(base), *args], bad_key, id=id)


# Rejected by the schema, so by lint, template and install alike, naming the bad key.
BAD_VALUES = [
    bad(
        ["--set-string", "workers.stg.replicaCount=two"],
        "/workers/stg/replicaCount",
        "replicas-not-a-number",
    ),
    bad(
        ["--set", "kafka.securityProtocol=SASL_TLS"], "/kafka/securityProtocol", "unknown-protocol"
    ),
    bad(["--set", "kafka.saslMechanism=MD5"], "/kafka/saslMechanism", "unknown-sasl-mechanism"),
    bad(["--set", "workers.dds.batchSize=-100"], "/workers/dds/batchSize", "negative-batch"),
    bad(["--set", "workers.cdm.batchSize=1000000"], "/workers/cdm/batchSize", "huge-batch"),
    bad(["--set", "log.level=TRACE"], "/log/level", "unknown-log-level"),
    bad(["--set", "image.repository="], "/image/repository", "empty-image"),
    bad(["--set", "image.repository=null"], "repository", "missing-image"),
    bad(["--set", "postgres.sslmode=sometimes"], "/postgres/sslmode", "unknown-sslmode"),
    bad(["--set", "redis.port=70000"], "/redis/port", "port-out-of-range"),
    bad(
        ["--set", "kafka.sessionTimeoutMs=1000"],
        "/kafka/sessionTimeoutMs",
        "session-shorter-than-the-broker-allows",
    ),
    bad(["--set", "workers.etl.enabled=true"], "etl", "unknown-worker"),
    bad(["--set", "kafka.hots=x"], "hots", "misspelt-key"),
    bad(["--set", "keda.maxReplicaCount=0"], "/keda/maxReplicaCount", "no-replicas"),
    bad(
        ["--set", "redis.ssl=true,redis.sslCaFile=redis-ca.crt"],
        r"redis[./]sslCaFile",
        "ca-file-without-bundle",
        base=PLAINTEXT_VALUES,
    ),
    bad(["--set", "caBundle.configMapName=ca"], "configMapName", "two-ca-sources"),
    # A setting the protocol or mode would not use is never silently dropped.
    bad(
        ["--set", "caBundle.secretName=ca,kafka.sslCaFile=ca.crt"],
        "/kafka/sslCaFile",
        "kafka-ca-without-tls",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "kafka.useSystemCa=true"],
        "/kafka/useSystemCa",
        "kafka-system-ca-without-tls",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "caBundle.secretName=ca,redis.sslCaFile=ca.crt"],
        "/redis/sslCaFile",
        "redis-ca-without-ssl",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "redis.useSystemCa=true"],
        "/redis/useSystemCa",
        "redis-system-ca-without-ssl",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "caBundle.secretName=ca,postgres.sslRootCertFile=ca.crt"],
        "/postgres/sslRootCertFile",
        "postgres-root-cert-with-prefer",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "postgres.sslRootCertFile=,postgres.useSystemCa=true,postgres.sslmode=verify-ca"],
        "/postgres/sslmode",
        "postgres-system-ca-without-verify-full",
    ),
    bad(["--set", "kafka.useSystemCa=true"], "/kafka/sslCaFile", "kafka-ca-file-and-system-ca"),
    bad(
        ["--set", "secret.kafkaConsumerUsername=dwh"],
        "/secret/kafkaConsumerUsername",
        "kafka-user-without-sasl",
        base=PLAINTEXT_VALUES,
    ),
    bad(
        ["--set", "kafka.securityProtocol=SSL,secret.kafkaConsumerPassword="],
        "/secret/kafkaConsumerUsername",
        "kafka-user-with-ssl-without-sasl",
    ),
    bad(["--set", "redis.useSystemCa=true"], "/redis/sslCaFile", "redis-ca-file-and-system-ca"),
]


@pytest.mark.parametrize("command", ["template", "lint"])
@pytest.mark.parametrize(("args", "bad_key"), BAD_VALUES)
def test_bad_values_are_rejected_naming_the_key(
    command: str, args: list[str], bad_key: str
) -> None:
    target = [RELEASE, str(CHART)] if command == "template" else [str(CHART)]
    result = helm(command, *target, *args)
    assert result.returncode != 0, f"accepted: {args}"
    assert re.search(bad_key, result.stdout + result.stderr), result.stdout + result.stderr


# Missing values: rendering (template, install) fails with one message saying what to
# set. Helm's lint treats a template's `fail` as information: it passes, printing it.
MISSING_VALUES = [
    bad(
        ["--set", "secret.kafkaConsumerPassword="],
        "secret.kafkaConsumerUsername and secret.kafkaConsumerPassword are required when "
        "kafka.securityProtocol is SASL_SSL (or name secret.existingSecret)",
        "sasl-without-credentials",
    ),
    bad(
        ["--set", "kafka.sslCaFile="],
        "kafka.sslCaFile is required with kafka.securityProtocol SASL_SSL (a CA file in "
        "caBundle), unless kafka.useSystemCa: true",
        "kafka-sasl-ssl-without-ca",
    ),
    bad(
        [
            "--set",
            "kafka.securityProtocol=SSL,kafka.sslCaFile=,"
            "secret.kafkaConsumerUsername=,secret.kafkaConsumerPassword=",
        ],
        "kafka.sslCaFile is required with kafka.securityProtocol SSL",
        "kafka-ssl-without-ca",
    ),
    bad(
        ["--set", "redis.sslCaFile="],
        "redis.sslCaFile is required with redis.ssl: true (a CA file in caBundle), unless "
        "redis.useSystemCa: true",
        "redis-tls-without-ca",
    ),
    bad(
        ["--set", "postgres.sslmode=verify-ca,postgres.sslRootCertFile="],
        "postgres.sslRootCertFile is required with postgres.sslmode verify-ca (a CA file in "
        "caBundle), unless postgres.useSystemCa: true",
        "postgres-verify-ca-without-ca",
    ),
]


@pytest.mark.parametrize(("args", "message"), MISSING_VALUES)
def test_missing_values_fail_rendering_saying_what_to_set(args: list[str], message: str) -> None:
    result = helm("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0, f"accepted: {args}"
    assert message in result.stderr, result.stderr
    linted = helm("lint", str(CHART), *args)
    assert message in linted.stdout + linted.stderr


def test_the_defaults_are_verified_tls_and_name_all_they_need() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["securityProtocol"] == "SASL_SSL"
    assert values["kafka"]["saslMechanism"] == "SCRAM-SHA-512"
    assert (values["redis"]["ssl"], values["redis"]["port"]) == (True, 6380)
    assert values["postgres"]["sslmode"] == "verify-full"
    assert not any(values[s]["useSystemCa"] for s in ("kafka", "redis", "postgres"))
    result = helm("template", RELEASE, str(CHART))
    assert result.returncode != 0
    needed = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("-")]
    assert needed == [
        "- secret.kafkaConsumerUsername and secret.kafkaConsumerPassword are required when "
        "kafka.securityProtocol is SASL_SSL (or name secret.existingSecret)",
        "- kafka.sslCaFile is required with kafka.securityProtocol SASL_SSL (a CA file in "
        "caBundle), unless kafka.useSystemCa: true",
        "- redis.sslCaFile is required with redis.ssl: true (a CA file in caBundle), unless "
        "redis.useSystemCa: true",
        "- postgres.sslRootCertFile is required with postgres.sslmode verify-full (a CA file "
        "in caBundle), unless postgres.useSystemCa: true (with verify-full)",
    ], result.stderr
    assert "plain text must be chosen explicitly" in result.stderr


# Contradictions the schema rejects are in the template's checks too, in words (for
# a `helm template --skip-schema-validation`, and as the workers' own rules say).
@pytest.mark.parametrize(
    ("base", "args", "message"),
    [
        (
            PLAINTEXT_VALUES,
            "caBundle.secretName=ca,kafka.sslCaFile=ca.crt",
            "kafka.sslCaFile is set but kafka.securityProtocol PLAINTEXT uses no TLS",
        ),
        (
            PLAINTEXT_VALUES,
            "caBundle.secretName=ca,redis.sslCaFile=ca.crt",
            "redis.sslCaFile is set but redis.ssl is false",
        ),
        (
            PLAINTEXT_VALUES,
            "caBundle.secretName=ca,postgres.sslRootCertFile=ca.crt",
            "postgres.sslRootCertFile is set but postgres.sslmode prefer may connect without TLS",
        ),
        (
            MINIMAL_VALUES,
            "postgres.sslRootCertFile=,postgres.useSystemCa=true,postgres.sslmode=verify-ca",
            "postgres.useSystemCa needs postgres.sslmode verify-full, not verify-ca",
        ),
        (
            MINIMAL_VALUES,
            "kafka.useSystemCa=true",
            "kafka.sslCaFile and kafka.useSystemCa: true: trust one",
        ),
        (
            MINIMAL_VALUES,
            "kafka.securityProtocol=SSL",
            "secret.kafkaConsumerUsername or secret.kafkaConsumerPassword is set but "
            "kafka.securityProtocol SSL uses no SASL and would never send them: choose "
            "SASL_SSL (or SASL_PLAINTEXT) to log in with them, or remove both",
        ),
    ],
    ids=["kafka-ca", "redis-ca", "postgres-ca", "postgres-system", "both-cas", "kafka-credentials"],
)
def test_the_template_words_each_contradiction(base: Path, args: str, message: str) -> None:
    result = helm(
        "template", RELEASE, str(CHART), "--skip-schema-validation", "-f", str(base), "--set", args
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def settings_of(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {component(m): m["data"] for m in of_kind(manifests, "ConfigMap")}


def test_the_minimal_values_verify_every_server_against_the_ca_bundle(
    minimal_manifests: list[Manifest],
) -> None:
    for layer, data in settings_of(minimal_manifests).items():
        assert data["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", layer
        assert data["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert data["KAFKA_SSL_CA_LOCATION"] == "/etc/dwh/ca/ca.crt"
        assert (data["REDIS_SSL"], data["REDIS_PORT"]) == ("true", "6380")
        assert data["REDIS_SSL_CA_FILE"] == "/etc/dwh/ca/ca.crt"
        assert data["PG_WAREHOUSE_SSLMODE"] == "verify-full"
        assert data["PG_WAREHOUSE_SSLROOTCERT"] == "/etc/dwh/ca/ca.crt"


def test_the_system_trust_store_is_an_explicit_opt_in() -> None:
    manifests = render("--set", "keda.enabled=true", base=SYSTEM_CA_VALUES)
    for layer, data in settings_of(manifests).items():
        assert data["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", layer
        assert data["REDIS_SSL"] == "true"
        assert data["PG_WAREHOUSE_SSLMODE"] == "verify-full"
        for variable in ("KAFKA_SSL_CA_LOCATION", "REDIS_SSL_CA_FILE", "PG_WAREHOUSE_SSLROOTCERT"):
            assert data[variable] == "/etc/ssl/certs/ca-certificates.crt", variable
    for name, spec in pod_specs(manifests):
        assert "ca" not in {v["name"] for v in spec["volumes"]}, name
    for scaled in of_kind(manifests, "ScaledObject"):
        assert scaled["spec"]["triggers"][0]["metadata"]["tls"] == "enable"
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password"}


def test_plain_text_is_chosen_explicitly_and_sends_no_kafka_credentials() -> None:
    manifests = render(base=PLAINTEXT_VALUES)
    for layer, data in settings_of(manifests).items():
        assert data["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT", layer
        assert (data["REDIS_SSL"], data["REDIS_PORT"]) == ("false", "6379")
        assert data["PG_WAREHOUSE_SSLMODE"] == "prefer"
        assert not {"KAFKA_SSL_CA_LOCATION", "REDIS_SSL_CA_FILE", "PG_WAREHOUSE_SSLROOTCERT"} & set(
            data
        )
    for _, spec in pod_specs(manifests):
        (container,) = spec["containers"]
        names = {e["name"] for e in container["env"]}
        assert not {"KAFKA_CONSUMER_USERNAME", "KAFKA_CONSUMER_PASSWORD"} & names


def render_notes(tmp_path: Path, base: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it: `helm template` leaves it out, so a copy
    of the chart renders it into a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "notes-as-configmap.yaml").write_text(
        '{{- define "test.notes" }}' + notes + "{{- end }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "test.notes" . | quote }}}\n'
    )
    (configmap,) = helm_template(
        "-f", str(base), *args, "--show-only", "templates/notes-as-configmap.yaml", chart=chart
    )
    return str(configmap["data"]["notes"])


def test_the_install_notes_warn_of_plain_text(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, PLAINTEXT_VALUES)
    assert "WARNING: chosen in the values, these connections are plain text" in notes
    assert (
        "Kafka over PLAINTEXT, without TLS; Redis without TLS; "
        "PostgreSQL with sslmode=prefer, the server not verified." in notes
    )
    secure = render_notes(tmp_path / "secure", MINIMAL_VALUES)
    assert "WARNING" not in secure
    assert (
        "Kafka (SASL_SSL), Redis (TLS) and PostgreSQL (verify-full) verify the servers'" in secure
    )
    # Only verify-full checks the host name: verify-ca is warned about, as the workers do.
    verify_ca = render_notes(
        tmp_path / "verify-ca", MINIMAL_VALUES, "--set", "postgres.sslmode=verify-ca"
    )
    assert "WARNING" in verify_ca
    assert "PostgreSQL with sslmode=verify-ca, the CA checked, not the host name." in verify_ca


def test_readme_lists_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = re.findall(r"^\| `([\w.]+)` \|", (CHART / "README.md").read_text(), re.M)
    assert documented
    undocumented = [
        key
        for key in leaf_keys(values)
        if not any(key == d or key.startswith(d + ".") for d in documented)
    ]
    assert not undocumented


# --------------------------------------------------------------------------- rendered env


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    folder = tmp_path / "ca"
    folder.mkdir()
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return folder / "ca.crt"


@pytest.fixture
def settings(ca_file: Path) -> dict[str, str]:
    """Settings of a secure install on hosts other than the loopback, the CA bundle
    "mounted" from the local folder holding ``ca_file``."""
    return {
        "KAFKA_HOST": "kafka.example.net",
        "KAFKA_PORT": "9093",
        "KAFKA_SSL_CA_LOCATION": str(ca_file),
        "KAFKA_CONSUMER_USERNAME": "dwh",
        "KAFKA_CONSUMER_PASSWORD": "kafka-pw",
        "REDIS_HOST": "redis.example.net",
        "REDIS_PORT": "6380",
        "REDIS_SSL_CA_FILE": str(ca_file),
        "REDIS_PASSWORD": "redis-pw",
        "PG_WAREHOUSE_HOST": "pg.example.net",
        "PG_WAREHOUSE_PORT": "5432",
        "PG_WAREHOUSE_USER": "dwh",
        "PG_WAREHOUSE_PASSWORD": "pg-pw",
        "PG_WAREHOUSE_SSLROOTCERT": str(ca_file),
    }


@pytest.fixture
def secure_values(settings: dict[str, str]) -> dict[str, Any]:
    return chart_values(settings, "de")


def test_rendered_env_resolves_every_variable_of_a_secure_install(
    settings: dict[str, str], secure_values: dict[str, Any], ca_file: Path
) -> None:
    # The settings come back unchanged (the credentials from the chart's Secret,
    # base64-decoded), with the chart's TLS defaults beside them.
    common = {
        **settings,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "REDIS_SSL": "true",
        "PG_WAREHOUSE_DBNAME": "de",
        "PG_WAREHOUSE_SSLMODE": "verify-full",
        "DWH_HTTP_PORT": "8000",
        "DWH_LOG_FORMAT": "json",
        "DWH_LOG_LEVEL": "INFO",
    }
    stg = rendered_env("stg", secure_values)
    assert stg.workload == "dwh-dwh-workers-stg"
    assert stg.args == ["python", "-m", "dwh_workers.stg"]
    assert stg.env == {
        **common,
        "DWH_INSTANCE_ID": "dwh-dwh-workers-stg-0",  # fieldRef metadata.name: the pod
        "KAFKA_CONSUMER_GROUP": "stg-service",
        "KAFKA_SOURCE_TOPIC": "order-service_orders",
        "KAFKA_DESTINATION_TOPIC": "stg-service-orders",
        "DWH_SESSION_TIMEOUT_MS": "30000",
        "DWH_BATCH_SIZE": "2000",
        "DWH_BATCH_WAIT_MS": "200",
    }
    assert stg.mounts == {"tmp": "/tmp", "ca": str(ca_file.parent)}
    # The worker takes exactly this environment, and every remote connection is verified.
    loaded = config.load("stg", stg.env)
    assert loaded.kafka.client_config() == {
        "bootstrap.servers": "kafka.example.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "dwh",
        "sasl.password": "kafka-pw",
        "ssl.ca.location": str(ca_file),
    }
    assert (loaded.redis.ssl, loaded.redis.ssl_ca_file) == (True, str(ca_file))
    assert (loaded.postgres.sslmode, loaded.postgres.sslrootcert) == ("verify-full", str(ca_file))
    assert config.insecure_connections(loaded) == []

    cdm = rendered_env("cdm", secure_values, pod_name="dwh-dwh-workers-cdm-5d8f9-x2k4q")
    assert cdm.env["DWH_INSTANCE_ID"] == "dwh-dwh-workers-cdm-5d8f9-x2k4q"
    assert cdm.env["KAFKA_DESTINATION_TOPIC"] == "cdm-service-user-tags"

    migrate = rendered_env("migrate", secure_values)  # the hook Job, with its hook Secret
    assert migrate.args == ["python", "-m", "dwh_workers", "migrate"]
    assert migrate.env == common
    assert migrate.mounts["ca"] == str(ca_file.parent)
    assert config.insecure_connections(config.services(migrate.env)) == []

    # The same remote hosts with verify-ca: the host name is not checked, and the worker
    # says so as the install notes do.
    secure_values["postgres"]["sslmode"] = "verify-ca"
    verify_ca = config.services(rendered_env("migrate", secure_values).env)
    assert config.insecure_connections(verify_ca) == [
        "PostgreSQL pg.example.net with sslmode=verify-ca, the CA checked, not the host name"
    ]


def test_rendered_env_resolves_references_as_kubernetes_does(
    secure_values: dict[str, Any],
) -> None:
    values = {**secure_values, "secret": {"existingSecret": "dwh-credentials"}}
    values["extraEnv"] = [
        {"name": "BOOTSTRAP", "value": "$(KAFKA_HOST):$(KAFKA_PORT)"},
        {"name": "LITERAL", "value": "$$(KAFKA_HOST) $(NOT_DEFINED) $(BOOTSTRAP) 100$"},
        {
            "name": "GROUP_AGAIN",
            "valueFrom": {
                "configMapKeyRef": {"name": "dwh-dwh-workers-stg", "key": "KAFKA_CONSUMER_GROUP"}
            },
        },
        {
            "name": "OPTIONAL_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t", "optional": True}},
        },
        {"name": "EMPTY"},
    ]
    values["workers"] = {"stg": {"extraEnv": [{"name": "DWH_BATCH_SIZE", "value": "500"}]}}
    credentials = {
        "KAFKA_CONSUMER_USERNAME": "dwh",
        "KAFKA_CONSUMER_PASSWORD": "kafka-pw",
        "PG_WAREHOUSE_PASSWORD": "pg-pw",
    }
    env = rendered_env("stg", values, secrets={"dwh-credentials": credentials}).env
    assert env["BOOTSTRAP"] == "kafka.example.net:9093"
    assert env["LITERAL"] == "$(KAFKA_HOST) $(NOT_DEFINED) kafka.example.net:9093 100$"
    assert env["GROUP_AGAIN"] == "stg-service"
    assert env["EMPTY"] == ""
    assert "OPTIONAL_TOKEN" not in env
    assert env["DWH_BATCH_SIZE"] == "500", "env wins over envFrom"
    assert {name: env[name] for name in credentials} == credentials
    assert "REDIS_PASSWORD" not in env, "optional in an existing Secret, and absent there"
    with pytest.raises(UnresolvableEnv, match="'dwh-credentials' has no key"):
        rendered_env("stg", values)
    with pytest.raises(ChartError, match=r"kafka\.sslCaFile is required"):
        rendered_env("stg", {})
    with pytest.raises(ChartError, match="0 Deployments of component 'dds'"):
        rendered_env("dds", {**secure_values, "workers": {"dds": {"enabled": False}}})


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_stack_and_the_three_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "redis", "migrate", *LAYER_NAMES} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    for name in ("kafka", "postgres", "redis", *LAYER_NAMES):
        assert services[name]["healthcheck"]["test"], name


def test_compose_workers_build_the_containerfile_and_wait_for_migrate(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["python", "-m", "dwh_workers", "migrate"]
    for name in ("migrate", *LAYER_NAMES):
        assert services[name]["build"]["dockerfile"] == "Containerfile", name
        assert services[name]["user"] == "10001:10001", name
        assert services[name]["read_only"] is True, name
    for layer in LAYER_NAMES:
        service = services[layer]
        assert service["command"] == ["python", "-m", f"dwh_workers.{layer}"]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["environment"]["KAFKA_CONSUMER_GROUP"] == f"{layer}-service"


def test_containerfile_runs_tini_as_a_numeric_non_root_user() -> None:
    text = _read("Containerfile")
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert 'ENTRYPOINT ["tini", "--"]' in text
    assert 'CMD ["python", "-m", "dwh_workers.stg"]' in text
    assert re.search(r"^USER \$\{APP_UID\}:\$\{APP_UID\}$", text, re.M)
    assert "ARG APP_UID=10001" in text
    assert _read(".containerignore") == _read(".dockerignore")


def _read(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- user tags

SHIPPED_RULES = ROOT / "src" / "dwh_workers" / "tag_rules.toml"
TAG_RULES_CONFIGMAP = f"{RELEASE}-dwh-workers-tag-rules"
TAG_RULES_DIR = "/etc/dwh/tags"
TAG_VARIABLES = {"DWH_TAG_RULES", "DWH_TAG_SWEEP_INTERVAL_S"}


def with_rules(rules: Path) -> tuple[str, ...]:
    """The arguments by which a Helm user gives the rules file ``rules``."""
    return ("--set-file", f"tags.rules={rules}")


def tag_rules_configmaps(manifests: list[Manifest]) -> list[Manifest]:
    return [
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == TAG_RULES_CONFIGMAP
    ]


def layer_settings(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    """Each layer's settings ConfigMap (not the rules file's), by layer."""
    return {
        component(m): m["data"]
        for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"] != TAG_RULES_CONFIGMAP
    }


def pod_templates(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The pod template of each Deployment and of the migration Job, by component."""
    return {
        component(m): m["spec"]["template"] for m in manifests if m["kind"] in {"Deployment", "Job"}
    }


def mounts_tag_rules(template: Manifest) -> bool:
    spec = template["spec"]
    volumes = [
        v for v in spec["volumes"] if v.get("configMap", {}).get("name") == TAG_RULES_CONFIGMAP
    ]
    mounts = [
        m
        for container in spec["containers"]
        for m in container["volumeMounts"]
        if m["mountPath"] == TAG_RULES_DIR or m["name"] == "tag-rules"
    ]
    return bool(volumes or mounts)


def test_by_default_the_cdm_worker_reads_the_rules_the_image_ships(
    minimal_manifests: list[Manifest], secure_values: dict[str, Any]
) -> None:
    assert tag_rules_configmaps(minimal_manifests) == []
    templates = pod_templates(minimal_manifests)
    assert sorted(templates) == sorted([*LAYER_NAMES, "migrate"])
    for name, template in templates.items():
        assert not mounts_tag_rules(template), name
        assert "checksum/tag-rules" not in template["metadata"].get("annotations", {}), name
    settings = layer_settings(minimal_manifests)
    assert settings["cdm"]["DWH_TAG_SWEEP_INTERVAL_S"] == "60"
    assert "DWH_TAG_RULES" not in settings["cdm"]
    for layer in ("stg", "dds"):
        assert not TAG_VARIABLES & set(settings[layer]), layer
    # The worker, given exactly this environment, takes the file in its package.
    env = rendered_env("cdm", secure_values).env
    worker = config.load("cdm", env).worker
    assert worker.tag_rules == config.default_tag_rules()
    assert worker.tag_sweep_interval_s == 60


def test_tag_rules_in_the_values_are_mounted_into_the_cdm_pods_only() -> None:
    manifests = render(*with_rules(SHIPPED_RULES))
    (configmap,) = tag_rules_configmaps(manifests)
    assert component(configmap) == "cdm"
    assert list(configmap["data"]) == ["rules.toml"]
    assert configmap["data"]["rules.toml"].encode("utf-8") == SHIPPED_RULES.read_bytes()

    templates = pod_templates(manifests)
    cdm = templates.pop("cdm")
    spec = cdm["spec"]
    assert {"name": "tag-rules", "configMap": {"name": TAG_RULES_CONFIGMAP}} in spec["volumes"]
    (container,) = spec["containers"]
    mount: Manifest = {"name": "tag-rules", "mountPath": TAG_RULES_DIR, "readOnly": True}
    assert mount in container["volumeMounts"]
    for name, template in templates.items():  # stg, dds and the migration Job
        assert not mounts_tag_rules(template), name

    settings = layer_settings(manifests)
    assert settings["cdm"]["DWH_TAG_RULES"] == f"{TAG_RULES_DIR}/rules.toml"
    assert settings["cdm"]["DWH_TAG_RULES"].startswith(mount["mountPath"] + "/")
    assert settings["cdm"]["DWH_TAG_SWEEP_INTERVAL_S"] == "60"
    for layer in ("stg", "dds"):
        assert not TAG_VARIABLES & set(settings[layer]), layer

    # The mount changes nothing of the pods' hardening.
    (stg,) = templates["stg"]["spec"]["containers"]
    assert container["securityContext"] == stg["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"] == templates["stg"]["spec"]["securityContext"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert_match_kubernetes_schemas(manifests)

    # No CDM worker, no rules file.
    without_cdm = render(*with_rules(SHIPPED_RULES), "--set", "workers.cdm.enabled=false")
    assert tag_rules_configmaps(without_cdm) == []
    assert not any(mounts_tag_rules(t) for t in pod_templates(without_cdm).values())


def test_the_cdm_worker_reads_the_given_rules_from_the_mount(
    secure_values: dict[str, Any], tmp_path: Path
) -> None:
    values = {**secure_values, "tags": {"rules": SHIPPED_RULES.read_text(encoding="utf-8")}}
    (configmap,) = tag_rules_configmaps(helm_template(values=values))
    cdm = rendered_env("cdm", values)
    assert cdm.mounts["tag-rules"] == TAG_RULES_DIR
    # The ConfigMap's keys are files in the mounted folder, as the kubelet writes them.
    folder = tmp_path / "tags"
    folder.mkdir()
    for key, text in configmap["data"].items():
        (folder / key).write_bytes(text.encode("utf-8"))
    path = cdm.env["DWH_TAG_RULES"]
    assert path.startswith(TAG_RULES_DIR + "/")
    local = str(folder / path.removeprefix(TAG_RULES_DIR + "/"))
    worker = config.load("cdm", {**cdm.env, "DWH_TAG_RULES": local}).worker
    assert worker.tag_rules == local
    assert load_rules(local).rules == load_rules(SHIPPED_RULES).rules
    assert load_rules(local).rules, "the shipped file has rules"


def test_cdm_pods_roll_when_the_tag_rules_change(tmp_path: Path) -> None:
    shipped = SHIPPED_RULES.read_text(encoding="utf-8")
    changed = tmp_path / "rules.toml"
    changed.write_text(shipped.replace("at_least = 10", "at_least = 12", 1), encoding="utf-8")
    assert changed.read_text(encoding="utf-8") != shipped
    before = pod_templates(render(*with_rules(SHIPPED_RULES)))
    after = pod_templates(render(*with_rules(changed)))

    def annotations(template: Manifest) -> dict[str, str]:
        return dict(template["metadata"]["annotations"])

    checksum = annotations(before["cdm"])["checksum/tag-rules"]
    assert checksum == hashlib.sha256(SHIPPED_RULES.read_bytes()).hexdigest()
    assert annotations(after["cdm"])["checksum/tag-rules"] != checksum
    # The path in the settings is the same: the rules' own checksum is what rolls the pods.
    assert (
        annotations(after["cdm"])["checksum/config"]
        == annotations(before["cdm"])["checksum/config"]
    )
    for name in ("stg", "dds", "migrate"):
        assert after[name] == before[name], f"{name} does not roll"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("tags.sweepIntervalSeconds=0", "at '/tags/sweepIntervalSeconds': minimum: got 0, want 1"),
        ("tags.sweepIntervalSeconds=86401", "at '/tags/sweepIntervalSeconds': maximum"),
        ("tags.sweepIntervalSeconds=soon", "at '/tags/sweepIntervalSeconds': got string"),
        ("tags.rules=5", "at '/tags/rules': got number, want string"),
        ("tags.rule=x", "at '/tags': additional properties 'rule' not allowed"),
    ],
    ids=["zero", "over-a-day", "not-a-number", "rules-not-text", "unknown-key"],
)
def test_the_schema_refuses_bad_tag_values(setting: str, message: str) -> None:
    with pytest.raises(ChartError) as refused:
        render("--set", setting)
    assert message in str(refused.value)


@pytest.mark.parametrize("seconds", [1, 86400])
def test_the_sweep_interval_reaches_the_cdm_worker_only(seconds: int) -> None:
    settings = layer_settings(render("--set", f"tags.sweepIntervalSeconds={seconds}"))
    assert settings["cdm"]["DWH_TAG_SWEEP_INTERVAL_S"] == str(seconds)
    assert "DWH_TAG_SWEEP_INTERVAL_S" not in settings["stg"]
    assert "DWH_TAG_SWEEP_INTERVAL_S" not in settings["dds"]


def test_the_install_notes_say_how_to_put_new_tag_rules_in_force(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, MINIMAL_VALUES, *with_rules(SHIPPED_RULES))
    assert f"exec deploy/{RELEASE}-dwh-workers-cdm -- dwh tags plan\n" in notes
    assert f"exec deploy/{RELEASE}-dwh-workers-cdm -- dwh tags apply\n" in notes
    assert "WARNING" not in notes
    assert "dwh tags" not in render_notes(tmp_path / "shipped", MINIMAL_VALUES)
