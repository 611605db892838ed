"""The ``dwh`` command run in the test's own process."""

from __future__ import annotations

import pytest

from dwh_workers import cli


def dwh(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``dwh argv`` in this process: (exit status, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
