"""The workers' container image through ``scripts/image``: build it, run commands from it,
and look at the processes it runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from attrs import frozen

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image"
# buildah, always: these tests look at the processes under ``scripts/image run`` in /proc
# (the worker's uid, its tini parent, its environment), which are its own children only
# under buildah; docker or podman, which scripts/image prefers when one works, would run
# them under the engine's daemon or conmon instead.
ENGINE = {"IMAGE_ENGINE": "buildah"}


def script_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``scripts/image`` itself: this one, ``extra``, and the engine."""
    return {**os.environ, **(extra or {}), **ENGINE}


@frozen
class Image:
    tag: str
    build_seconds: float
    build_output: str

    def build_summary(self) -> str:
        """What the build did and how long each part took, without the Containerfile's steps."""
        lines = self.build_output.splitlines()
        return "\n".join(line for line in lines if not line.startswith("image: ["))


def build(tag: str, timeout: float = 1200) -> Image:
    """``scripts/image build --tag tag``; fails with the script's output if it does."""
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "build", "--tag", tag],
        env=script_env(),
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"scripts/image build failed:\n{result.stdout}{result.stderr}"
    return Image(tag, seconds, result.stdout)


def run_args(
    image: Image, env: Mapping[str, str], command: Sequence[str], ca_dir: Path | None = None
) -> list[str]:
    """The ``scripts/image run`` command line giving the container ``env`` and nothing else,
    and ``ca_dir`` mounted read-only at /etc/dwh/ca if given."""
    settings = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    mount = ["--ca-dir", str(ca_dir)] if ca_dir else []
    return [str(SCRIPT), "run", "--tag", image.tag, *mount, *settings, "--", *command]


def start(
    image: Image,
    env: Mapping[str, str],
    command: Sequence[str],
    log: IO[bytes],
    ca_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        run_args(image, env, command, ca_dir),
        env=script_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the process has just ended
            children += [int(child) for child in task.read_text().split()]
    return children


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, parents before their children."""
    found: list[int] = []
    queue = _children(pid)
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += _children(child)
    return found


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` and everything under it (a killed ``scripts/image run`` would
    leave its ``buildah run`` and the worker running), then reap it."""
    tree = [process.pid, *descendants(process.pid)]  # before the kill orphans them
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def assert_running(
    processes: Mapping[str, subprocess.Popen[bytes]], logs: Mapping[str, Path]
) -> None:
    """Fail at once, naming its log, when one of ``processes`` has exited: a condition of
    ``wait_for`` that calls this does not wait out its timeout for a process that is gone."""
    for name, process in processes.items():
        code = process.poll()
        assert code is None, f"{name}: scripts/image run exited with {code}: {logs[name]}"


def descendant(pid: int, argv: Sequence[str]) -> int | None:
    """The first process under ``pid`` whose command line is ``argv`` (not merely holds it,
    as the commands that start it do)."""
    return next((child for child in descendants(pid) if command_line(child) == list(argv)), None)


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def status_field(pid: int, name: str) -> list[str]:
    """A field of ``/proc/<pid>/status``, e.g. ``Uid``: real, effective, saved, filesystem."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.split()
    raise KeyError(name)


def environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.partition("=")[::2] for entry in entries if entry)


def working_containers(tag: str) -> list[str]:
    """buildah's working containers of the image (none when buildah is not here)."""
    if not shutil.which("buildah"):
        return []
    listing = subprocess.run(
        ["buildah", "containers", "--json"], capture_output=True, text=True, check=True
    ).stdout
    names = {tag, f"localhost/{tag}"}
    containers: list[dict[str, object]] = json.loads(listing or "null") or []
    return [str(c["id"]) for c in containers if c.get("imagename") in names]
