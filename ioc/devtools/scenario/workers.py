"""Start the three `ioc` services as child processes and know when they are ready and caught up.

Readiness and drain are read from Kafka itself (consumer group state and committed offsets), so
the same checks work for any deployment, not only for these children.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ioc.config import Settings
from ioc.devtools.stack import ensure_pii_key
from ioc.devtools.stack.process import StackError, log_tail
from ioc.kafka import clients as kafka_clients
from ioc.kafka.lag import consumer_lag
from ioc.services import WorkerSpec, worker_specs


class Workers:
    """The children, their logs under `<stack dir>/logs`, and checks read from the broker."""

    def __init__(
        self,
        settings: Settings,
        specs: list[WorkerSpec] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.specs = specs or worker_specs(settings)
        self.env = env or {}
        self.log_dir = settings.stack.dir / "logs"
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        for spec in self.specs:
            self._start(spec)

    def _start(self, spec: WorkerSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"PYTHONUNBUFFERED": "1", "YOLO_OFFLINE": "1"} | self.env
        if not {"IOC_STREAMS__PII_KEY", "IOC_STREAMS__PII_KEY_FILE"} & env.keys():
            env["IOC_STREAMS__PII_KEY_FILE"] = str(ensure_pii_key(self.settings.stack.dir))
        with self.log_file(spec.name).open("ab") as log:
            self.children[spec.name] = subprocess.Popen(
                [sys.executable, "-m", "ioc", *spec.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def crash_and_restart(self, name: str) -> None:
        """SIGKILL one worker (no clean shutdown, nothing flushed) and start it again: what a
        power cut or an OOM kill does."""
        child = self.children[name]
        child.kill()
        child.wait()
        self._start(next(spec for spec in self.specs if spec.name == name))

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise StackError(
                    f"worker {name} exited with {child.returncode}. Log tail:\n"
                    f"{log_tail(self.log_file(name))}"
                )

    def wait_ready(self, timeout_s: float) -> None:
        """Every group is Stable with a member: the worker has loaded and owns its partitions."""
        from kafka.errors import KafkaError

        # kafka-python cannot decode Faust's member metadata and warns on every poll; harmless.
        logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)

        deadline = time.monotonic() + timeout_s
        admin = kafka_clients.admin(self.settings.kafka, "ioc-supervisor")
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    groups = admin.describe_groups(
                        [group for spec in self.specs for group in spec.groups()]
                    )
                except KafkaError:  # a fresh broker has no group coordinator for a moment
                    groups = {}
                if groups and all(
                    g["group_state"] == "Stable" and g["members"] for g in groups.values()
                ):
                    return
                time.sleep(0.5)
        finally:
            admin.close()
        raise StackError(f"workers not ready after {timeout_s:.0f}s; logs in {self.log_dir}")

    def lag(self) -> dict[str, int]:
        """Messages not yet committed by each group, over all its topics' partitions."""
        lags = consumer_lag(
            self.settings.kafka,
            {group: names for spec in self.specs for group, names in spec.groups().items()},
        )
        return {
            spec.name: sum(
                lags[(group, topic)] for group, names in spec.groups().items() for topic in names
            )
            for spec in self.specs
        }

    def wait_drained(self, timeout_s: float) -> dict[str, int]:
        """Wait until no group has lag twice in a row (outputs of one stage feed the next)."""
        deadline = time.monotonic() + timeout_s
        quiet = 0
        lags = self.lag()
        while time.monotonic() < deadline:
            self.check_alive()
            lags = self.lag()
            quiet = quiet + 1 if not any(lags.values()) else 0
            if quiet >= 2:
                break
            time.sleep(1.0)
        return lags

    def stop(self, timeout_s: float = 30.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
