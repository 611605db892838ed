"""The ``dwh`` command, run in the test's own process or as the installed program."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from dwh_workers import cli


def dwh(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``dwh argv`` in this process: (exit status, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


DWH = str(Path(sys.executable).with_name("dwh"))  # the one installed beside this Python


def dwh_command(
    *argv: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed ``dwh`` as a subprocess in ``env`` (exactly: nothing is added)."""
    return subprocess.run(
        [DWH, *argv], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
