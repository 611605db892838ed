"""The deployment artefacts, checked offline: the Helm chart (lint, render, Kubernetes
schemas, content, rejected values) and the Compose stack.

Helm comes from scripts/helm, which builds the pinned version into .stack/bin on first
use. Rendered manifests are validated against the Kubernetes 1.30 schemas shipped by
kubernetes_validate; the custom resources (KEDA, Prometheus Operator) have no schema
there, so their required fields are checked here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "scripts" / "helm"
CHART = ROOT / "chart"
PROD_VALUES = CHART / "ci" / "prod-values.yaml"
KUBE_VERSION = "1.30.0"
RELEASE = "dwh"
LAYERS = ("stg", "dds", "cdm")

Manifest = dict[str, Any]

# CONTRACT.md §6: the names the original services used.
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


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )


def render(*args: str) -> list[Manifest]:
    result = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


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
def default_manifests() -> list[Manifest]:
    return render()


@pytest.fixture(scope="session")
def prod_manifests() -> list[Manifest]:
    return render("-f", str(PROD_VALUES))


@pytest.fixture(params=["default", "prod"])
def manifests(
    request: pytest.FixtureRequest,
    default_manifests: list[Manifest],
    prod_manifests: list[Manifest],
) -> list[Manifest]:
    return default_manifests if request.param == "default" else prod_manifests


# --------------------------------------------------------------------------- chart


@pytest.mark.parametrize("values", [[], ["-f", str(PROD_VALUES)]], ids=["default", "prod"])
def test_chart_passes_strict_lint(values: list[str]) -> None:
    result = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_rendered_manifest_matches_the_kubernetes_schemas(
    manifests: list[Manifest],
) -> None:
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
        assert sorted(component(m) for m in of_kind(manifests, kind)) == sorted(LAYERS), kind
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


def test_layers_get_their_topics_and_groups(default_manifests: list[Manifest]) -> None:
    data = {component(m): m["data"] for m in of_kind(default_manifests, "ConfigMap")}
    assert data["stg"]["KAFKA_SOURCE_TOPIC"] == "order-service_orders"
    assert data["stg"]["KAFKA_DESTINATION_TOPIC"] == "stg-service-orders"
    assert data["dds"]["KAFKA_SOURCE_TOPIC"] == "stg-service-orders"
    assert data["dds"]["KAFKA_DESTINATION_TOPIC"] == "dds-service-orders"
    assert data["cdm"]["KAFKA_SOURCE_TOPIC"] == "dds-service-orders"
    assert "KAFKA_DESTINATION_TOPIC" not in data["cdm"]
    assert {layer: d["KAFKA_CONSUMER_GROUP"] for layer, d in data.items()} == {
        "stg": "stg-service",
        "dds": "dds-service",
        "cdm": "cdm-service",
    }


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
    assert sorted(services) == sorted(monitors) == sorted(LAYERS)
    for layer, monitor in monitors.items():
        assert monitor["spec"]["selector"]["matchLabels"] == services[layer]["spec"]["selector"]
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert services[layer]["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not of_kind(render(), "ServiceMonitor")


def test_a_chart_made_secret_holds_only_the_given_credentials() -> None:
    manifests = render("--set", "secret.pgWarehousePassword=s3cret")
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
    assert sorted(component(d) for d in deployments) == sorted(LAYERS)
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
        LAYERS, "45000"
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
    assert sorted(component(s) for s in scaled) == sorted(LAYERS)
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
    manifests = render("--set", settings)
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


# (helm arguments, a pattern the error must contain: the path of the bad key)
BAD_VALUES = [
    pytest.param(
        ["--set-string", "workers.stg.replicaCount=two"],
        "/workers/stg/replicaCount",
        id="replicas-not-a-number",
    ),
    pytest.param(
        ["--set", "kafka.securityProtocol=SASL_TLS"],
        "/kafka/securityProtocol",
        id="unknown-protocol",
    ),
    pytest.param(
        ["--set", "kafka.saslMechanism=MD5"], "/kafka/saslMechanism", id="unknown-sasl-mechanism"
    ),
    pytest.param(
        ["--set", "workers.dds.batchSize=-100"], "/workers/dds/batchSize", id="negative-batch"
    ),
    pytest.param(
        ["--set", "workers.cdm.batchSize=1000000"], "/workers/cdm/batchSize", id="huge-batch"
    ),
    pytest.param(["--set", "log.level=TRACE"], "/log/level", id="unknown-log-level"),
    pytest.param(["--set", "image.repository="], "/image/repository", id="empty-image"),
    pytest.param(["--set", "image.repository=null"], "repository", id="missing-image"),
    pytest.param(
        ["--set", "postgres.sslmode=sometimes"], "/postgres/sslmode", id="unknown-sslmode"
    ),
    pytest.param(["--set", "redis.port=70000"], "/redis/port", id="port-out-of-range"),
    pytest.param(
        ["--set", "kafka.sessionTimeoutMs=1000"],
        "/kafka/sessionTimeoutMs",
        id="session-shorter-than-the-broker-allows",
    ),
    pytest.param(["--set", "workers.etl.enabled=true"], "etl", id="unknown-worker"),
    pytest.param(["--set", "kafka.hots=x"], "hots", id="misspelt-key"),
    pytest.param(["--set", "keda.maxReplicaCount=0"], "/keda/maxReplicaCount", id="no-replicas"),
    pytest.param(
        ["--set", "kafka.securityProtocol=SASL_SSL"],
        r"secret[./]kafkaConsumerUsername",
        id="sasl-without-credentials",
    ),
    pytest.param(
        ["--set", "redis.sslCaFile=redis-ca.crt"],
        r"redis[./]sslCaFile",
        id="ca-file-without-bundle",
    ),
    pytest.param(
        ["--set", "caBundle.secretName=ca", "--set", "caBundle.configMapName=ca"],
        "configMapName",
        id="two-ca-sources",
    ),
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


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_stack_and_the_three_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "redis", "migrate", *LAYERS} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    for name in ("kafka", "postgres", "redis", *LAYERS):
        assert services[name]["healthcheck"]["test"], name


def test_compose_workers_build_the_containerfile_and_wait_for_migrate(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["python", "-m", "dwh_workers", "migrate"]
    for name in ("migrate", *LAYERS):
        assert services[name]["build"]["dockerfile"] == "Containerfile", name
        assert services[name]["user"] == "10001:10001", name
        assert services[name]["read_only"] is True, name
    for layer in LAYERS:
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
