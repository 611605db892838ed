from __future__ import annotations

import subprocess
import sys


def test_importing_dwh_core_pulls_in_no_infrastructure() -> None:
    probe = (
        "import sys, dwh_core, dwh_core.layers, dwh_core.ports;"
        "print(','.join(sorted(m for m in ('confluent_kafka', 'redis', 'psycopg',"
        " 'dependency_injector') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
