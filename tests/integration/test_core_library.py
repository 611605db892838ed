"""dwh_core as a library another service installs: the distribution built from this tree,
installed without the ``workers`` extra into a clean virtual environment, imports with no
Kafka, Redis, PostgreSQL or DI package present, and passes the core's own unit tests
(tests/unit/core) there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = ("confluent_kafka", "dependency_injector", "psycopg", "redis", "tenacity")


def run(*argv: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv], check=False, cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The python of a fresh venv holding the wheel of this tree (no extras) and pytest."""
    folder = tmp_path_factory.mktemp("core-library")
    source = folder / "source"  # a copy, so the build writes nothing into the tree
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--wheel-dir", folder / "dist", source)  # fmt: skip
    [wheel] = (folder / "dist").glob("dwh_food_delivery-*.whl")
    run(sys.executable, "-m", "venv", folder / "venv")
    python = folder / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", ROOT / "constraints.txt", wheel, "pytest")  # fmt: skip
    yield python


def test_the_core_installs_without_the_workers_dependencies(core_python: Path) -> None:
    probe = (
        "import importlib.util, dwh_core;"
        f"print(dwh_core.__file__); print(dwh_core.__version__);"
        f"print([m for m in {INFRASTRUCTURE!r} if importlib.util.find_spec(m)])"
    )
    where, version, present = run(core_python, "-c", probe, cwd=Path("/")).splitlines()
    assert Path(where).is_relative_to(core_python.parents[1])  # the installed copy
    assert (
        version == run(sys.executable, "-c", "import dwh_core; print(dwh_core.__version__)").strip()
    )
    assert present == "[]"


def test_the_workers_say_which_extra_they_need(core_python: Path) -> None:
    result = subprocess.run(
        [core_python, "-c", "import dwh_workers"],
        check=False,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 1
    assert "pip install 'dwh-food-delivery[workers]'" in result.stderr


def test_the_core_unit_tests_pass_against_the_installed_core(core_python: Path) -> None:
    # -p no:cacheprovider: nothing written into the tree; src is not on the path, so the
    # tests import the installed dwh_core (test_the_core_installs... checks where it is).
    output = run(core_python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-o", "timeout=0", "tests/unit/core")  # fmt: skip
    assert " passed" in output and "failed" not in output and "error" not in output
