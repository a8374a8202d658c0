"""`ioc demo` as a user runs it: its own stack from nothing, a short scenario, a verdict, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.devtools.stack.process import free_port
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A stack of the demo's own, on free ports, as on a fresh machine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOC_")}
    return env | {
        "IOC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port(2)}",
        "IOC_DATABASE__DSN": f"postgresql://ioc:demo@127.0.0.1:{free_port()}/ioc",
        "IOC_STACK__DIR": str(tmp_path / "stack"),
        "COLUMNS": "160",
    }


def stack_stopped(env: dict[str, str]) -> bool:
    status = subprocess.run(
        [sys.executable, "-m", "ioc", "stack", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return status.returncode == 1 and "stopped" in status.stdout


def test_demo_runs_end_to_end_twice_and_cleans_up(tmp_path: Path) -> None:
    """The second run restarts the stack on the first run's data: it must pass all the same."""
    env = demo_env(tmp_path)
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
    assert stack_stopped(env), "the demo stops the stack it started"


def test_demo_stopped_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "ioc", "demo", "--duration", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # running until the scenario is being published
        seen.append(line)
        if "publishing" in line:
            break
    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=180)
    assert demo.returncode == 128 + signal.SIGTERM, "".join(seen) + rest
    assert stack_stopped(env), "Kafka and PostgreSQL are not left running"
