"""`ioc demo` as a user runs it: its own stack from nothing, a short scenario, a verdict, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.stack.process import free_port
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_end_to_end_twice_and_cleans_up(tmp_path: Path) -> None:
    """The second run restarts the stack on the first run's data: it must pass all the same."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOC_")}
    env |= {
        "IOC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port(2)}",
        "IOC_DATABASE__DSN": f"postgresql://ioc:demo@127.0.0.1:{free_port()}/ioc",
        "IOC_STACK__DIR": str(tmp_path / "stack"),
        "COLUMNS": "160",
    }
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "ioc", "demo", "--duration", "25"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert "demo passed" in output
        for expected in ("hotline", "sensor", "vision", "Dead letters (5)", "Latency"):
            assert expected in output
    status = subprocess.run(
        [sys.executable, "-m", "ioc", "stack", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 1 and "stopped" in status.stdout, (
        "the demo stops the stack it started"
    )
