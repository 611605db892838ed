"""The container image, built by ``scripts/image build`` and run by ``scripts/image run``
(buildah where no container engine works) against the secure local stack, each container
given the environment the Helm chart renders for it and the stack's CA mounted where the
chart mounts it (/etc/dwh/ca): as uid 10001 under tini, it migrates a fresh warehouse,
its three workers make the marts equal the oracle, and each stops on SIGTERM with
status 0."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from dwh_adapters.kafka import delete_topics, ensure_topics
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings
from dwh_adapters.redis import RedisDictionaryWriter
from dwh_workers import config
from dwh_workers.oracle import expected_marts
from dwh_workers.sample import OrderGenerator, dictionary_entries, sample_dictionaries
from dwh_workers.topology import LAYER_NAMES, Topology
from tests.support.databases import fresh_database
from tests.support.image import (
    Image,
    assert_running,
    build,
    command_line,
    descendant,
    environment,
    kill_tree,
    run_args,
    script_env,
    start,
    status_field,
    working_containers,
)
from tests.support.processes import LOG_DIR, TEST_WORKER_ENV, produce, wait_for
from tests.support.secure import chart_envs, secure_env

pytestmark = pytest.mark.integration

TAG = "dwh-workers:pytest"
APP_UID = "10001"
CA_MOUNT = "/etc/dwh/ca"  # the chart's caBundle.mountPath, and scripts/image run --ca-dir's
DICTIONARIES = sample_dictionaries(seed=13, users=60, restaurants=8)
PRINT_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"


@pytest.fixture(scope="module")
def image() -> Image:
    built = build(TAG)
    print(f"\n{built.build_summary()}\nscripts/image build --tag {TAG}: {built.build_seconds:.1f}s")
    return built


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    return secure_env()


@pytest.fixture
def warehouse(settings: dict[str, str]) -> Iterator[PgSettings]:
    """A fresh database with no schema yet: the image's migrate makes it."""
    with fresh_database(config.services(settings).postgres, migrated=False) as database:
        yield database


@pytest.fixture
def rendered(settings: dict[str, str], warehouse: PgSettings) -> dict[str, dict[str, str]]:
    """What the chart gives each container: the worker Deployments' and the migration
    Job's environment, the CA files under /etc/dwh/ca."""
    return chart_envs(settings, warehouse.dbname, CA_MOUNT)


def worker_env(topology: Topology, layer: str, rendered: dict[str, str]) -> dict[str, str]:
    """The chart's environment of the layer's Deployment with this test's topics, group
    and instance id, and no HTTP port (the containers share the host's network)."""
    own = topology.env(layer, {}, **TEST_WORKER_ENV, DWH_INSTANCE_ID=topology.instance_id(layer))
    return {**rendered, **own}


def image_output(
    image: Image,
    env: dict[str, str],
    argv: list[str],
    host: dict[str, str] | None = None,
    ca_dir: Path | None = None,
) -> str:
    """The output of ``argv`` run from the image with ``env`` (and ``ca_dir`` at
    /etc/dwh/ca); ``host`` is added to the environment of ``scripts/image`` itself."""
    result = subprocess.run(
        run_args(image, env, argv, ca_dir),
        env=script_env(host),
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def command(layer: str) -> list[str]:
    return ["python", "-m", f"dwh_workers.{layer}"]


def marts_match(postgres: PgSettings, messages: list[bytes]) -> bool:
    products, categories = expected_marts(messages, DICTIONARIES.restaurants)
    with PostgresMarts(postgres) as marts:
        return marts.product_counts() == products and marts.category_counts() == categories


def terminate(process: subprocess.Popen[bytes], timeout: float = 60) -> int | None:
    """SIGTERM to ``scripts/image run``; its status, or None if it (and all under it) had
    to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        return None


def ca_bundle(settings: dict[str, str], folder: Path) -> Path:
    """A folder holding only the stack's CA certificate (as the chart's caBundle Secret
    would), readable by the image's user."""
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    ca = Path(settings["KAFKA_SSL_CA_LOCATION"])
    (folder / ca.name).write_bytes(ca.read_bytes())
    (folder / ca.name).chmod(0o644)
    return folder


def test_the_image_migrates_and_its_workers_fill_the_marts_as_uid_10001_under_tini(
    image: Image,
    settings: dict[str, str],
    warehouse: PgSettings,
    rendered: dict[str, dict[str, str]],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    record_property("image_build_seconds", round(image.build_seconds, 1))
    containers_before = working_containers(TAG)
    services = config.services(settings)
    ca_dir = ca_bundle(settings, tmp_path / "ca")
    migrate = ["python", "-m", "dwh_workers", "migrate"]
    assert "applied" in image_output(image, rendered["migrate"], migrate, ca_dir=ca_dir)
    # What a container of the image has in its environment when given nothing: not the
    # settings of the side that starts it.
    host = {"PG_WAREHOUSE_DBNAME": "host-only"}
    bare = json.loads(image_output(image, {}, ["python", "-c", PRINT_ENVIRONMENT], host))
    assert "PG_WAREHOUSE_DBNAME" not in bare, bare

    orders = list(OrderGenerator(DICTIONARIES, seed=31, update_share=0.3).messages(1500))
    topology = Topology(dbname=warehouse.dbname)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logs = {layer: LOG_DIR / f"{topology.suffix}-image-{layer}.log" for layer in LAYER_NAMES}
    ensure_topics(services.kafka, topology.all_topics(), partitions=3)
    with RedisDictionaryWriter(services.redis) as writer:
        writer.put_many(dictionary_entries(DICTIONARIES))
    with ExitStack() as stack:
        stack.callback(delete_topics, services.kafka, topology.all_topics())
        produce(topology.source, orders, kafka=services.kafka)
        workers: dict[str, subprocess.Popen[bytes]] = {}
        codes: dict[str, int | None] = {}
        try:
            for layer in LAYER_NAMES:
                env = worker_env(topology, layer, rendered[layer])
                log = stack.enter_context(logs[layer].open("wb"))
                workers[layer] = start(image, env, command(layer), log, ca_dir)

            def filled() -> bool:
                assert_running(workers, logs)
                return marts_match(warehouse, orders)

            wait_for(filled, 180, "the marts to equal the oracle", 0.5)
            for layer, process in workers.items():
                pid = descendant(process.pid, command(layer))
                assert pid is not None, f"no {layer} worker under scripts/image run: {logs[layer]}"
                assert status_field(pid, "Uid") == [APP_UID] * 4, layer
                assert status_field(pid, "Gid") == [APP_UID] * 4, layer
                parent = int(status_field(pid, "PPid")[0])
                assert Path(command_line(parent)[0]).name == "tini", command_line(parent)
                seen = environment(pid)
                given = worker_env(topology, layer, rendered[layer])
                assert {name: seen.get(name) for name in given} == given, layer
                extra = set(seen) - set(given) - set(bare)
                assert not extra, f"{sorted(extra)} reached the {layer} worker, not given"
        finally:
            codes = {layer: terminate(process) for layer, process in workers.items()}
    assert codes == dict.fromkeys(LAYER_NAMES, 0), (
        f"exit statuses {codes}; logs: {list(logs.values())}"
    )
    left = set(working_containers(TAG)) - set(containers_before)
    assert not left, f"scripts/image run left working containers {sorted(left)}"
